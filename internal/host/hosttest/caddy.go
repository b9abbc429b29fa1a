package hosttest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"taledeploy/internal/caddyconf"
	"taledeploy/internal/stack"
)

// Caddy is the stack's proxy on a fake Host: the admin API on its socket, and
// its sites, which send each request to the first upstream, in the order the
// Caddyfile lists them (blue, then green), that the gate admits and that runs.
type Caddy struct {
	mu     sync.Mutex
	host   *Host
	config []byte // the JSON config it runs; nil until the proxy starts
	run    string // the proxy container's run it started with
	calls  []string

	// Reject, when set, makes /adapt and /load refuse every config with it.
	Reject string
	// Warn, when set, is a warning /adapt gives (on line 3).
	Warn string
	// InFlight, when set, is the number of requests in flight to an upstream
	// ("platform-blue:8080"), asked on every GET /reverse_proxy/upstreams.
	InFlight func(upstream string) int
	// Fail, when set, makes the admin API answer 500 to the requests it names.
	Fail func(method, path string) bool
}

// Calls lists the admin requests so far, "METHOD PATH".
func (c *Caddy) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// Running is the config Caddy runs, nil when it never started.
func (c *Caddy) Running() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.config
}

// started loads the config on the host when the proxy container started
// (again) since Caddy last looked: Caddy reads its file when it starts.
func (c *Caddy) started(run string, config []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if run != c.run {
		c.run, c.config = run, config
	}
}

// gated tells whether the running config takes upstreams' health from the
// gate, by taledeploy's own rule.
func gated(config []byte, s *stack.Stack) bool {
	var cfg any
	if json.Unmarshal(config, &cfg) != nil {
		return false
	}
	return caddyconf.Gated(cfg, caddyconf.Options{Stateless: s.Stateless, Blue: stack.Blue, Green: stack.Green})
}

// adapted is what the team's Caddyfile adapts to, as far as the fake knows it:
// a site that proxies each route's path to its service by name.
func (c *Caddy) adapted() map[string]any {
	var routes []any
	for _, r := range c.stack().Routes {
		routes = append(routes, map[string]any{
			"match":  []any{map[string]any{"path": []any{r.Path}}},
			"handle": []any{map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": fmt.Sprintf("%s:%d", r.Service, r.Port)}}}},
		})
	}
	return map[string]any{"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"srv0": map[string]any{"listen": []any{":80"}, "routes": routes}}}}}
}

func (c *Caddy) stack() *stack.Stack { return c.host.stack }

// ServeHTTP is the admin API.
func (c *Caddy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, r.Method+" "+r.URL.Path)
	if c.Fail != nil && c.Fail(r.Method, r.URL.Path) {
		http.Error(w, `{"error":"fake failure"}`, http.StatusInternalServerError)
		return
	}
	s := c.stack()
	switch {
	case r.Method == http.MethodPost && (r.URL.Path == "/load" || r.URL.Path == "/adapt"):
		if c.Reject != "" {
			http.Error(w, fmt.Sprintf(`{"error":%q}`, c.Reject), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/load" {
			if !json.Valid(body) {
				http.Error(w, `{"error":"not JSON"}`, http.StatusBadRequest)
				return
			}
			c.config = body
			return
		}
		res := map[string]any{"result": c.adapted()}
		if c.Warn != "" {
			res["warnings"] = []any{map[string]any{"file": "Caddyfile", "line": 3, "message": c.Warn}}
		}
		json.NewEncoder(w).Encode(res)
	case r.Method == http.MethodGet && (r.URL.Path == "/config/apps/http/servers" || r.URL.Path == "/config/"):
		var cfg map[string]any
		json.Unmarshal(c.config, &cfg)
		if r.URL.Path == "/config/" {
			json.NewEncoder(w).Encode(cfg)
			return
		}
		apps, _ := cfg["apps"].(map[string]any)
		h, _ := apps["http"].(map[string]any)
		json.NewEncoder(w).Encode(h["servers"])
	case r.Method == http.MethodGet && r.URL.Path == "/reverse_proxy/upstreams":
		out := []map[string]any{}
		for _, route := range s.Routes {
			for _, color := range []string{stack.Blue, stack.Green} {
				u, n := upstream(route, color), 0
				if c.InFlight != nil {
					n = c.InFlight(u)
				}
				out = append(out, map[string]any{"address": u, "num_requests": n, "fails": 0})
			}
		}
		json.NewEncoder(w).Encode(out)
	default:
		http.NotFound(w, r)
	}
}

func upstream(r *stack.Route, color string) string {
	return fmt.Sprintf("%s-%s:%d", r.Service, color, r.Port)
}

// admits tells whether the gate admits upstream: its file exists in the gate folder.
func (c *Caddy) admits(upstream string) bool {
	_, err := c.host.Fake.Peek(c.stack().Paths().Gate() + "/" + upstream)
	return err == nil
}

// Admitted lists the colors whose every upstream the gate admits.
func (c *Caddy) Admitted() []string {
	var out []string
	for _, color := range []string{stack.Blue, stack.Green} {
		all := len(c.stack().Routes) > 0
		for _, r := range c.stack().Routes {
			all = all && c.admits(upstream(r, color))
		}
		if all {
			out = append(out, color)
		}
	}
	return out
}

// site serves the stack's sites as the running Caddyfile routes them.
func (c *Caddy) site(w http.ResponseWriter, r *http.Request) {
	s := c.stack()
	isGated := gated(c.Running(), s)
	for _, route := range s.Routes {
		if !pathMatches(route.Path, r.URL.Path) {
			continue
		}
		for _, color := range []string{stack.Blue, stack.Green} {
			if isGated && !c.admits(upstream(route, color)) {
				continue
			}
			for _, ctr := range c.host.Docker.Containers(s.ColorProject(color)) {
				if ctr.Service == route.Service && ctr.Running() {
					app(ctr).ServeHTTP(w, r)
					return
				}
			}
		}
		http.Error(w, "no upstreams available", http.StatusBadGateway)
		return
	}
	http.NotFound(w, r)
}

// Get sends a request for path to the stack's site, as a visitor would, and
// returns the status and the name of the container that answered ("" for
// none).
func (c *Caddy) Get(path string) (int, string) {
	rec := httptest.NewRecorder()
	c.site(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Header().Get("X-Container")
}

func pathMatches(pattern, p string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(p, prefix)
	}
	return pattern == "" || pattern == p
}
