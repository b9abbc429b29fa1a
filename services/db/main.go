// Command db is the example stack's stateful service: a visit counter kept in a
// file on a named volume, so a test can see that data survives every deploy.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	file := filepath.Join(envOr("DATA_DIR", "/data"), "visits")
	var mu sync.Mutex
	count := 0
	if b, err := os.ReadFile(file); err == nil {
		count, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	save := func() error {
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(count)), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, file)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		count++
		err := save()
		n := count
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Count", strconv.Itoa(n))
		fmt.Fprintln(w, n)
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := count
		mu.Unlock()
		w.Header().Set("X-Count", strconv.Itoa(n))
		fmt.Fprintln(w, n)
	})
	srv := &http.Server{Addr: ":7000", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
