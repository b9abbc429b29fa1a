// Command registry serves an in-memory container registry that asks for a
// user and password (HTTP basic auth), with images from docker save archives
// pushed into it before it says ready. The end-to-end tests run it inside a
// sandbox host's network namespace, on its loopback, where Docker pulls
// without TLS:
//
//	registry -addr 127.0.0.1:5000 -user U -password P team/web:1=web.tar ...
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "address to listen on")
	user := flag.String("user", "", "user every request must give")
	password := flag.String("password", "", "its password")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	reg := registry.New(registry.Logger(log.New(nopWriter{}, "", 0)))
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != *user || p != *password {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	for _, arg := range flag.Args() {
		ref, file, ok := strings.Cut(arg, "=")
		if !ok {
			log.Fatalf("%s: want REPO:TAG=ARCHIVE", arg)
		}
		tag, err := name.NewTag(ln.Addr().String()+"/"+ref, name.Insecure)
		if err != nil {
			log.Fatal(err)
		}
		img, err := tarball.ImageFromPath(file, nil)
		if err != nil {
			log.Fatal(err)
		}
		if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: *user, Password: *password})); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("ready")
	select {}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
