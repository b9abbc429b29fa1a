// Command httpprobe GETs a URL and exits 0 when anything answers (a redirect
// too: it is not followed), 1 otherwise.
// The admin API test runs it inside a container on the stack's network (a
// static Go binary needs nothing from the image).
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	client := &http.Client{Timeout: 3 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
}
