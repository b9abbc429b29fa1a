// Command rag stands in for Tale's RAG service, and, built as crawler, for its
// crawler: platform calls each by its plain name over its color's network, and
// it says which color it is. It answers as what it was built as, on PORT.
package main

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	color := os.Getenv("TALEDEPLOY_COLOR")
	name := filepath.Base(os.Args[0])
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Color", color)
		w.Header().Set("X-Release", os.Getenv("TALEDEPLOY_RELEASE"))
		fmt.Fprintf(w, "%s %s\n", name, color)
	})
	srv := &http.Server{Addr: ":" + cmp.Or(os.Getenv("PORT"), "8000"), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}
