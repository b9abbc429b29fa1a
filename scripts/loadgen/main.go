// Command loadgen sends steady load to a stack on loopback with vegeta and prints
// how many requests were sent and how many failed. Used by scripts/demo.sh.
//
//	go run ./scripts/loadgen -url https://10.231.0.1:8443/ -servername localhost -cacert root.crt -rate 100 -stop-file /tmp/stop
//
// Fresh connections make a new TLS handshake each.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func main() {
	target := flag.String("url", "http://10.231.0.1:8088/", "URL to load (loopback or a sandbox host only)")
	rate := flag.Int("rate", 100, "requests per second")
	stopFile := flag.String("stop-file", "", "stop when this file appears")
	maxDur := flag.Duration("max", 15*time.Minute, "stop after this long in any case")
	serverName := flag.String("servername", "", "the site's name (TLS server name and Host), when the URL names an address")
	caCert := flag.String("cacert", "", "PEM file of a CA to trust besides the system's (Caddy's own, for tls internal)")
	flag.Parse()
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if *caCert != "" {
		pem, err := os.ReadFile(*caCert)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "loadgen: -cacert %s: no certificate read (%v)\n", *caCert, err)
			os.Exit(2)
		}
	}
	tlsConfig := &tls.Config{ServerName: *serverName, RootCAs: roots}
	u, err := url.Parse(*target)
	if err != nil || !sandboxTarget(u.Hostname()) {
		fmt.Fprintln(os.Stderr, "loadgen: only loopback and the sandbox hosts (10.231.0.0/24) are allowed targets")
		os.Exit(2)
	}
	var n atomic.Uint64
	tr := func(t *vegeta.Target) error {
		t.Method, t.URL = http.MethodGet, *target
		if *serverName != "" {
			t.Header = http.Header{"Host": {*serverName}} // the site Caddy serves
		}
		if n.Add(1)%50 == 0 {
			t.URL = strings.TrimSuffix(*target, "/") + "/slow?ms=2000"
		}
		return nil
	}
	var mu sync.Mutex
	sent, failed := 0, 0
	served := map[string]int{}
	var wg sync.WaitGroup
	var attackers []*vegeta.Attacker
	for i, r := range []int{*rate * 4 / 5, *rate / 5} {
		a := vegeta.NewAttacker(vegeta.KeepAlive(i == 0), vegeta.Timeout(30*time.Second), vegeta.TLSConfig(tlsConfig))
		attackers = append(attackers, a)
		res := a.Attack(tr, vegeta.Rate{Freq: r, Per: time.Second}, *maxDur, "demo")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range res {
				mu.Lock()
				sent++
				if r.Code != http.StatusOK || r.Error != "" {
					failed++
					if failed <= 10 { // what failed, and when
						fmt.Fprintf(os.Stderr, "loadgen: failed %s %d %s %q\n", r.Timestamp.Format("15:04:05.000"), r.Code, r.Error, strings.TrimSpace(string(r.Body)))
					}
				} else {
					served[r.Headers.Get("X-Color")+" "+r.Headers.Get("X-Release")]++
				}
				mu.Unlock()
			}
		}()
	}
	for *stopFile != "" {
		if _, err := os.Stat(*stopFile); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, a := range attackers {
		a.Stop()
	}
	wg.Wait()
	var keys []string
	for k := range served {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("loadgen: served by %-32s %6d\n", k, served[k])
	}
	fmt.Printf("loadgen: %d requests sent, %d failed\n", sent, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// sandboxTarget says whether host is one this project may load: loopback or
// a host of scripts/sandbox.sh, whose network stays on this machine.
func sandboxTarget(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || sandboxNet.Contains(ip))
}

var _, sandboxNet, _ = net.ParseCIDR("10.231.0.0/24")
