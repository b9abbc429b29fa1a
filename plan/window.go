package plan

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// The verification window probes this often, and gives up on a release after
// this many failed probes in a row (one slow answer is not a broken release).
const (
	windowProbeEvery = 200 * time.Millisecond
	windowFailures   = 2
)

// watch probes the new color through Caddy for the stack's verify_window, while
// the old color still runs. It returns an error as soon as the release fails.
func (r *run) watch(ctx context.Context, color string) (string, error) {
	s := r.Stack
	proxy, ok := host.RunningProxy(s, r.cs)
	if !ok || proxy.IP == "" {
		return "", fmt.Errorf("the proxy service %s is not running or has no address", s.Proxy)
	}
	var probes []*probeTarget
	roots := r.roots // asked with the preflight
	for _, route := range s.Routes {
		if !caddyPathMatches(route.Path, route.HealthPath) {
			continue // the health path is not reachable through this route
		}
		if roots == nil && siteScheme(route.Site) == "https" {
			// A site with tls internal has a certificate of Caddy's own CA.
			var err error
			if roots, err = r.proxy().Roots(ctx); err != nil {
				return "", err
			}
		}
		p, err := newProbe(ctx, r.Host, proxy.IP, route, roots)
		if err != nil {
			return "", err
		}
		probes = append(probes, p)
	}
	end := time.Now().Add(s.VerifyWindow.Duration)
	// A round every windowProbeEvery, whatever its answers took: the probes
	// and the containers' check go out together, so at a VPS's round trip a
	// failing release is caught as soon as on loopback, give or take one.
	tick := time.NewTicker(windowProbeEvery)
	defer tick.Stop()
	n, failures, lastInspect := 0, 0, time.Time{}
	for time.Now().Before(end) {
		var (
			wg         sync.WaitGroup
			errs       = make([]error, len(probes))
			cs         []host.Container
			inspectErr error
		)
		for i, p := range probes {
			wg.Go(func() { errs[i] = p.probe() })
		}
		inspect := time.Since(lastInspect) > time.Second
		if inspect {
			// Containers that exit or turn unhealthy fail the window even when
			// Caddy's fallback hides it.
			lastInspect = time.Now()
			wg.Go(func() { cs, inspectErr = host.Inspect(ctx, r.Host, s.Project, s.ColorProject(color)) })
		}
		wg.Wait()
		why := ""
		for _, err := range errs {
			if errors.Is(err, remote.ErrDisconnected) {
				return "", err
			}
			if err != nil && why == "" {
				why = err.Error()
			}
		}
		if inspect {
			if inspectErr != nil {
				return "", inspectErr
			}
			if w := containersNotReady(r.Stack, cs); strings.HasPrefix(w, "failed:") {
				return "", fmt.Errorf("%w: %s", ErrWindow, strings.TrimPrefix(w, "failed: "))
			}
		}
		n++
		if why != "" {
			failures++
			if failures >= windowFailures {
				return "", fmt.Errorf("%w: %s", ErrWindow, why)
			}
		} else {
			failures = 0
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
	return fmt.Sprintf("%d probes through caddy in %s, all answered", n*len(probes), s.VerifyWindow.Duration), nil
}

// probeTarget is a GET of a route's health path sent to the proxy container the
// way a visitor's request reaches it: same site name and scheme.
type probeTarget struct {
	client *http.Client
	req    *http.Request
}

// siteScheme is how Caddy serves a site address: over HTTPS when it names a
// host (localhost and addresses too, with its own CA) unless it says http://
// or port 80.
func siteScheme(site string) string {
	scheme, _, _ := siteParts(site)
	return scheme
}

func siteParts(site string) (scheme, hostname, port string) {
	switch {
	case strings.HasPrefix(site, "https://"):
		scheme, site = "https", strings.TrimPrefix(site, "https://")
	case strings.HasPrefix(site, "http://"):
		scheme, site = "http", strings.TrimPrefix(site, "http://")
	}
	hostname, port, err := net.SplitHostPort(site)
	if err != nil {
		hostname, port = site, ""
	}
	if scheme == "" {
		scheme = "https"
		if hostname == "" || port == "80" {
			scheme = "http"
		}
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return scheme, hostname, port
}

func newProbe(ctx context.Context, h host.Conn, proxyIP string, r *stack.Route, roots *x509.CertPool) (*probeTarget, error) {
	scheme, hostname, port := siteParts(r.Site)
	if hostname == "" {
		hostname = "localhost"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(proxyIP, port), Path: r.HealthPath}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Host = hostname
	client := host.HTTPClient(h, 2*time.Second)
	// The certificate is checked against the site's name, not the address dialled.
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{ServerName: hostname, RootCAs: roots}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &probeTarget{req: req, client: client}, nil
}

// probe returns why the probe failed, or nil.
func (p *probeTarget) probe() error {
	resp, err := p.client.Do(p.req.Clone(p.req.Context()))
	if err != nil {
		return fmt.Errorf("%s through caddy: %w", p.req.URL.Path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s through caddy answers %d", p.req.URL.Path, resp.StatusCode)
	}
	return nil
}

// caddyPathMatches tells whether Caddy's path matcher pattern (as in `handle
// /api/*`) matches p: an exact path, or a prefix ending in *.
func caddyPathMatches(pattern, p string) bool {
	if pattern == "" || pattern == "*" || pattern == "/*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(p, prefix)
	}
	return pattern == p
}
