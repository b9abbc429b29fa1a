// Package caddyconf turns the team's Caddyfile, as Caddy itself adapts it to
// JSON, into the config taledeploy loads: every line of the team's file is
// kept, and each reverse_proxy to a stateless service becomes the pool of both
// colors, health-checked against the gate so that a switch never reloads
// Caddy. It works on Caddy's structure, never on the Caddyfile's text.
package caddyconf

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"taledeploy/templates"
)

// Upstream is a stateless service and port the Caddyfile proxies to.
type Upstream struct {
	Service string
	Port    int
}

func (u Upstream) String() string { return net.JoinHostPort(u.Service, strconv.Itoa(u.Port)) }

// Options is what the gated config needs to know of the stack.
type Options struct {
	Stateless        []string
	Blue, Green      string        // the colors' names, as in <service>-<color>
	StreamCloseDelay time.Duration // the stack's drain timeout
	AdminSocket      string        // where Caddy's admin API listens, in the container
	GateRoot         string        // the gate's folder, in the container
}

// ErrConflict is a setting of the Caddyfile that would break the switch.
var ErrConflict = errors.New("the Caddyfile has a setting taledeploy cannot keep")

// Minimums below which a request that meets the switch could fail.
const (
	tryDuration = 5 * time.Second
	tryInterval = 100 * time.Millisecond
	failTime    = 5 * time.Second
)

// Bootstrap is the config a proxy starts with before taledeploy first loads
// one: the admin API only, so the first push can adapt and load the real one.
func Bootstrap(o Options) []byte {
	data, _ := json.MarshalIndent(map[string]any{"admin": admin(o)}, "", "  ")
	return append(data, '\n')
}

// Gate returns the config to load from adapted, the Caddyfile as Caddy adapts
// it, with the upstreams it gated, in the order found.
func Gate(adapted []byte, o Options) ([]byte, []Upstream, error) {
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		return nil, nil, fmt.Errorf("adapted Caddyfile: %w", err)
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	var (
		found []Upstream
		errs  []error
	)
	walk(cfg, func(h map[string]any) {
		if h["handler"] != "reverse_proxy" {
			return
		}
		u, err := gate(h, o)
		if err != nil {
			errs = append(errs, err)
		} else if u != nil && !slices.Contains(found, *u) {
			found = append(found, *u)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if len(found) == 0 {
		return nil, nil, fmt.Errorf("%w: no reverse_proxy in it sends traffic to a stateless service (%s); proxy to one by its compose name, as in reverse_proxy %s:8080",
			ErrConflict, strings.Join(o.Stateless, ", "), first(o.Stateless))
	}
	// The admin API listens where taledeploy reaches it over SSH, and the
	// config lives in the file taledeploy writes, not in Caddy's autosave.
	cfg["admin"] = admin(o)
	quietGate(cfg)
	apps := object(cfg, "apps")
	servers := object(object(apps, "http"), "servers")
	if _, taken := servers[gateServer]; taken {
		return nil, nil, fmt.Errorf("%w: a server is named %s, which taledeploy uses for its gate", ErrConflict, gateServer)
	}
	servers[gateServer] = gateSite(o)
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return append(data, '\n'), found, nil
}

// gateServer names the gate's server in Caddy's config.
const gateServer = "taledeploy_gate"

func admin(o Options) map[string]any {
	return map[string]any{"listen": "unix/" + o.AdminSocket, "config": map[string]any{"persist": false}}
}

// gateSite answers 200 for an upstream whose file exists in the gate's folder,
// else 503, on the container's loopback only.
func gateSite(o Options) map[string]any {
	return map[string]any{
		"listen":          []any{fmt.Sprintf("127.0.0.1:%d", templates.GatePort)},
		"automatic_https": map[string]any{"disable": true},
		"routes": []any{
			map[string]any{"handle": []any{map[string]any{"handler": "vars", "root": o.GateRoot}}},
			map[string]any{
				"match":  []any{map[string]any{"file": map[string]any{"try_files": []any{"/{http.request.header." + templates.GateHeader + "}"}}}},
				"handle": []any{map[string]any{"handler": "static_response", "status_code": 200}},
			},
			map[string]any{"handle": []any{map[string]any{"handler": "static_response", "status_code": 503}}},
		},
	}
}

// quietGate keeps the gate's checks, several a second, out of the default log.
func quietGate(cfg map[string]any) {
	const checker = "http.handlers.reverse_proxy.health_checker.active"
	def := object(object(object(cfg, "logging"), "logs"), "default")
	if _, ok := def["include"]; ok {
		return // a log that names what it includes leaves the checker out already
	}
	ex, _ := def["exclude"].([]any)
	if !slices.Contains(ex, any(checker)) {
		def["exclude"] = append(ex, checker)
	}
}

// gate turns one reverse_proxy handler to a stateless service into the gated
// pool of both colors. It returns nil for one that proxies elsewhere.
func gate(h map[string]any, o Options) (*Upstream, error) {
	ups, _ := h["upstreams"].([]any)
	var (
		target *Upstream
		others []string
	)
	for _, u := range ups {
		m, _ := u.(map[string]any)
		dial, _ := m["dial"].(string)
		host, port, err := net.SplitHostPort(dial)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil || !slices.Contains(o.Stateless, host) {
			others = append(others, dial)
			continue
		}
		if target != nil && (target.Service != host || target.Port != p) {
			return nil, fmt.Errorf("%w: a reverse_proxy lists %s and %s:%d; proxy to one stateless service per reverse_proxy (each is switched between colors on its own)", ErrConflict, target, host, p)
		}
		target = &Upstream{Service: host, Port: p}
	}
	if target == nil {
		return nil, nil // the team's own upstreams: left as they are
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("%w: the reverse_proxy to %s also lists %s; a stateless service's reverse_proxy must name it alone, since taledeploy replaces its upstreams with the two colors", ErrConflict, target, strings.Join(others, ", "))
	}
	if _, ok := h["dynamic_upstreams"]; ok {
		return nil, fmt.Errorf("%w: the reverse_proxy to %s also has dynamic upstreams; remove them", ErrConflict, target)
	}
	hc := object(h, "health_checks")
	if active, ok := hc["active"].(map[string]any); ok {
		uri, _ := active["uri"].(string)
		return nil, fmt.Errorf("%w: the reverse_proxy to %s has its own active health check (health_uri %s); remove it and give the route health_path: %s in the inventory: taledeploy probes that path itself before a switch, and the active check is how Caddy asks the gate which color takes traffic",
			ErrConflict, target, cmp.Or(uri, "/"), cmp.Or(uri, "/"))
	}
	// The switch: both colors in a fixed order; an upstream takes traffic
	// only while the gate admits it. The check asks the gate, never the app,
	// so a busy app cannot flap.
	h["upstreams"] = []any{
		map[string]any{"dial": net.JoinHostPort(target.Service+"-"+o.Blue, strconv.Itoa(target.Port))},
		map[string]any{"dial": net.JoinHostPort(target.Service+"-"+o.Green, strconv.Itoa(target.Port))},
	}
	hc["active"] = map[string]any{
		"upstream": fmt.Sprintf("127.0.0.1:%d", templates.GatePort),
		"uri":      "/",
		"headers":  map[string]any{templates.GateHeader: []any{"{http.reverse_proxy.active.target_upstream}"}},
		"interval": templates.GateInterval.Nanoseconds(),
		"timeout":  (2 * time.Second).Nanoseconds(),
		"fails":    templates.GateFails,
		"passes":   1,
	}
	// Caddy sends the active check through the handler's transport: one that
	// speaks TLS to the app must not speak it to the gate (plain HTTP).
	if tr, ok := h["transport"].(map[string]any); ok {
		if tlsCfg, ok := tr["tls"].(map[string]any); ok {
			ports, _ := tlsCfg["except_ports"].([]any)
			gatePort := strconv.Itoa(templates.GatePort)
			if !slices.Contains(ports, any(gatePort)) {
				tlsCfg["except_ports"] = append(ports, gatePort)
			}
		}
	}
	passive := object(hc, "passive")
	atLeast(passive, "fail_duration", failTime)
	// A request that finds no admitted upstream (a moment during a switch)
	// or cannot reach one waits and tries again instead of failing.
	lb := object(h, "load_balancing")
	if _, ok := lb["selection_policy"]; !ok {
		lb["selection_policy"] = map[string]any{"policy": "first"}
	}
	atLeast(lb, "try_duration", tryDuration)
	if _, ok := lb["try_interval"]; !ok {
		lb["try_interval"] = tryInterval.Nanoseconds()
	}
	// Long-lived streams (WebSockets) survive a switch for as long as a drain
	// may take, unless the team chose otherwise.
	if _, ok := h["stream_close_delay"]; !ok && o.StreamCloseDelay > 0 {
		h["stream_close_delay"] = o.StreamCloseDelay.Nanoseconds()
	}
	return target, nil
}

// atLeast raises a duration setting (nanoseconds, or a string such as "10s")
// to min; a longer one of the team's stays.
func atLeast(m map[string]any, key string, min time.Duration) {
	switch v := m[key].(type) {
	case float64:
		if time.Duration(v) >= min {
			return
		}
	case string:
		if d, err := time.ParseDuration(v); err == nil && d >= min {
			return
		}
	}
	m[key] = min.Nanoseconds()
}

// object returns m[key] as an object, making it when missing.
func object(m map[string]any, key string) map[string]any {
	o, ok := m[key].(map[string]any)
	if !ok {
		o = map[string]any{}
		m[key] = o
	}
	return o
}

// walk calls fn on every object of a decoded JSON document.
func walk(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(v)
		for _, e := range v {
			walk(e, fn)
		}
	case []any:
		for _, e := range v {
			walk(e, fn)
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return "web"
	}
	return s[0]
}

// Gated tells whether a running config (decoded) takes the health of every
// upstream that is a color of a stateless service (<service>-<color>:port)
// from the gate; the team's other proxies (to a stateful service, elsewhere)
// are theirs and do not count.
func Gated(cfg any, o Options) bool {
	proxies, gated := 0, 0
	gate := fmt.Sprintf("127.0.0.1:%d", templates.GatePort)
	walk(cfg, func(m map[string]any) {
		if m["handler"] != "reverse_proxy" || !colorUpstreams(m, o) {
			return
		}
		proxies++
		hc, _ := m["health_checks"].(map[string]any)
		active, _ := hc["active"].(map[string]any)
		if active["upstream"] == gate {
			gated++
		}
	})
	return proxies > 0 && gated == proxies
}

// colorUpstreams tells whether a reverse_proxy handler sends to a color of a
// stateless service.
func colorUpstreams(h map[string]any, o Options) bool {
	ups, _ := h["upstreams"].([]any)
	for _, u := range ups {
		m, _ := u.(map[string]any)
		dial, _ := m["dial"].(string)
		host, _, _ := strings.Cut(dial, ":")
		for _, svc := range o.Stateless {
			if c, ok := strings.CutPrefix(host, svc+"-"); ok && (c == o.Blue || c == o.Green) {
				return true
			}
		}
	}
	return false
}
