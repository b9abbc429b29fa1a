package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// The example serves https://localhost with a certificate of its proxy's own
// CA (tls internal); each stack publishes HTTP on its port and HTTPS on the
// port 1000 above it, as HTTP_PORT and HTTPS_PORT of its env.
const httpsOffset = 1000

var (
	sitesMu sync.Mutex
	sites   = map[int]site{}           // HTTP port -> the proxy that serves it
	roots   = map[int]*x509.CertPool{} // HTTP port -> its proxy's CA
)

// site is a stack's proxy: its project, on a sandbox host.
type site struct {
	project string
	host    sandboxHost
}

// registerSite says which stack's proxy serves port, on which host,
// forgetting any CA an earlier stack on that port had.
func registerSite(port int, project string, host sandboxHost) {
	sitesMu.Lock()
	defer sitesMu.Unlock()
	sites[port] = site{project, host}
	delete(roots, port)
}

// siteAddr is the address of the host whose proxy serves port.
func siteAddr(port int) string {
	sitesMu.Lock()
	defer sitesMu.Unlock()
	return sites[port].host.addr
}

// siteURL is the site of the stack on port, over HTTPS, dialled at its host.
func siteURL(port int) string { return fmt.Sprintf("https://%s:%d", siteAddr(port), port+httpsOffset) }

// siteTLS trusts what a visitor of the sandbox's site would: the proxy's own
// CA (read from its data volume once it runs), for the name localhost.
func siteTLS(t testing.TB, port int) *tls.Config {
	t.Helper()
	sitesMu.Lock()
	defer sitesMu.Unlock()
	pool := roots[port]
	if pool == nil {
		project := sites[port].project
		// The image may have no shell or cat: docker cp writes a tar stream.
		out, err := sites[port].host.docker("cp", project+"-proxy:/data/caddy/pki/authorities/local/root.crt", "-").Output()
		var pem []byte
		if err == nil {
			tr := tar.NewReader(bytes.NewReader(out))
			if _, err = tr.Next(); err == nil {
				pem, err = io.ReadAll(tr)
			}
		}
		pool = x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("the root of %s's Caddy CA: %v", project, err)
		}
		roots[port] = pool
	}
	return &tls.Config{ServerName: "localhost", RootCAs: pool}
}

// siteGet GETs path of the site on port as a visitor of https://localhost
// would, on a fresh TLS connection.
func siteGet(t testing.TB, port int, path string) (*http.Response, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: siteTLS(t, port), DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, siteURL(port)+path, nil)
	if err != nil {
		return nil, err
	}
	req.Host = "localhost"
	return client.Do(req)
}
