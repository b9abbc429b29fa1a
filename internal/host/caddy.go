package host

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"taledeploy/internal/caddyconf"
	"taledeploy/internal/stack"
	"taledeploy/remote"
	"taledeploy/templates"
	"time"
)

// Caddy is the stack's proxy on one host, reached through its admin socket
// over the SSH connection, and the gate that decides which color it sends
// traffic to.
//
// The gate: the Caddyfile lists both colors in a fixed order and
// health-checks each upstream against a small site inside the proxy that
// answers 200 while a file named after the upstream exists in run/caddy/live
// (the proxy sees it as /run/caddy/live). Writing and removing those files
// switches traffic with no Caddy reload, so Caddy's listener never closes
// under load; and an upstream leaves rotation while it is still running, so it
// drains before it is asked to stop.
type Caddy struct {
	host  Conn
	stack *stack.Stack
}

// NewCaddy is the proxy of s on h.
func NewCaddy(h Conn, s *stack.Stack) *Caddy { return &Caddy{host: h, stack: s} }

// Time for Caddy to see a gate change: the next check, plus one interval of slack
// for a busy host. A switch that misjudges it only delays requests: a request
// that finds no admitted upstream waits (lb_try_duration) instead of failing.
var (
	AdmitSettle  = 2 * templates.GateInterval
	RetireSettle = (templates.GateFails + 1) * templates.GateInterval
)

// gateScript changes the gate in one command, so a switch costs one round
// trip to the host however many upstreams it moves: $1 is the gate's folder,
// then +NAME admits an upstream and -NAME retires one, in order. It prints
// what the gate admits afterwards. Only a change makes the folder: a read
// (status, or a check on a host with nothing deployed) changes nothing.
const gateScript = `# taledeploy gate
d=$1; shift; umask 022
[ $# -eq 0 ] || mkdir -p "$d" || exit 1
for a; do
	case $a in
	+*) : >"$d/${a#+}" || exit 1 ;;
	-*) rm -f "$d/${a#-}" || exit 1 ;;
	esac
done
[ ! -d "$d" ] || ls -A "$d"`

// gate runs gateScript with changes and returns what the gate admits.
func (c *Caddy) gate(ctx context.Context, changes ...string) ([]string, error) {
	out, err := c.host.Run(ctx, remote.Cmd{Argv: append([]string{"sh", "-c", gateScript, "sh", c.stack.Paths().Gate()}, changes...)})
	if err != nil {
		return nil, fmt.Errorf("the gate in %s: %w", c.stack.Paths().Gate(), err)
	}
	return strings.Fields(string(out)), nil
}

// Admit lets every routed service of color take traffic.
func (c *Caddy) Admit(ctx context.Context, color string) error {
	var changes []string
	for _, u := range c.stack.Upstreams(color) {
		changes = append(changes, "+"+u)
	}
	if _, err := c.gate(ctx, changes...); err != nil {
		return fmt.Errorf("admit %s: %w", strings.Join(c.stack.Upstreams(color), ", "), err)
	}
	return nil
}

// Retire takes color out of rotation; requests it is serving go on.
func (c *Caddy) Retire(ctx context.Context, color string) error {
	var changes []string
	for _, u := range c.stack.Upstreams(color) {
		changes = append(changes, "-"+u)
	}
	if _, err := c.gate(ctx, changes...); err != nil {
		return fmt.Errorf("retire %s: %w", strings.Join(c.stack.Upstreams(color), ", "), err)
	}
	return nil
}

// Swap admits color and retires the other in one command, for taking
// traffic off a failing color: requests that meet neither admitted wait for a
// moment rather than fail.
func (c *Caddy) Swap(ctx context.Context, color string) error {
	var changes []string
	for _, u := range c.stack.Upstreams(color) {
		changes = append(changes, "+"+u)
	}
	for _, u := range c.stack.Upstreams(stack.Other(color)) {
		changes = append(changes, "-"+u)
	}
	if _, err := c.gate(ctx, changes...); err != nil {
		return fmt.Errorf("admit %s and retire %s: %w", strings.Join(c.stack.Upstreams(color), ", "), strings.Join(c.stack.Upstreams(stack.Other(color)), ", "), err)
	}
	return nil
}

// Admitted tells whether the gate admits every routed service of color.
func (c *Caddy) Admitted(ctx context.Context, color string) (bool, error) {
	colors, err := c.AdmittedColors(ctx)
	return slices.Contains(colors, color), err
}

// AdmittedColors lists the colors the gate admits every routed service of,
// asked in one command.
func (c *Caddy) AdmittedColors(ctx context.Context) ([]string, error) {
	admitted, err := c.gate(ctx)
	if err != nil {
		return nil, err
	}
	var colors []string
	for _, color := range []string{stack.Blue, stack.Green} {
		all := true
		for _, u := range c.stack.Upstreams(color) {
			all = all && slices.Contains(admitted, u)
		}
		if all {
			colors = append(colors, color)
		}
	}
	return colors, nil
}

// Load writes cfg (Config's result) where the proxy reads its config when it
// starts, and loads it into Caddy through the admin socket. Caddy keeps its
// running config when /load fails; the file is put back then, so a proxy
// restart runs what ran before.
func (c *Caddy) Load(ctx context.Context, cfg []byte) error {
	p := c.stack.Paths().CaddyConfig()
	old, _ := c.host.ReadFile(ctx, p)
	if err := c.host.WriteFile(ctx, p, cfg, 0o600); err != nil {
		return err
	}
	if _, err := c.admin(ctx, http.MethodPost, "/load", "application/json", cfg); err != nil {
		if old != nil {
			_ = c.host.WriteFile(context.WithoutCancel(ctx), p, old, 0o600)
		}
		return fmt.Errorf("caddy reload: %w", err)
	}
	return nil
}

// WriteConfig writes cfg where the proxy reads its config when it starts,
// readable by its owner only: the team's {$ENV} placeholders are filled in.
func (c *Caddy) WriteConfig(ctx context.Context, cfg []byte) error {
	if err := c.host.Mkdir(ctx, c.stack.Paths().Admin(), 0o755, false); err != nil {
		return err
	}
	return c.host.WriteFile(ctx, c.stack.Paths().CaddyConfig(), cfg, 0o600)
}

// Bootstrap makes sure the proxy finds a config when it starts: before the
// first push loads the real one, the admin API alone.
func (c *Caddy) Bootstrap(ctx context.Context) error {
	p := c.stack.Paths().CaddyConfig()
	if _, err := c.host.ReadFile(ctx, p); err == nil || !IsNotExist(err) {
		return err
	}
	if err := c.host.Mkdir(ctx, c.stack.Paths().Admin(), 0o755, false); err != nil {
		return err
	}
	return c.host.WriteFile(ctx, p, caddyconf.Bootstrap(GateOptions(c.stack)), 0o600)
}

// Loaded reads the config the proxy would start from (caddy.json; nil when
// there is none) and the one Caddy runs, to compare with a new config
// (RunsConfig): asked beside the Caddyfile's check, not after it.
func (c *Caddy) Loaded(ctx context.Context) (file, running []byte, err error) {
	var wg sync.WaitGroup
	wg.Go(func() { file, _ = c.host.ReadFile(ctx, c.stack.Paths().CaddyConfig()) })
	running, err = c.Config(ctx)
	wg.Wait()
	return file, running, err
}

// RunsConfig tells whether Caddy runs cfg and would start from it again: then
// the switch need not load it.
func RunsConfig(file, running, cfg []byte) bool {
	return file != nil && sameJSON(file, cfg) && sameJSON(running, cfg)
}

// Running reads the config Caddy runs, indented as Config writes it.
func (c *Caddy) Running(ctx context.Context) ([]byte, error) {
	data, err := c.Config(ctx)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("caddy config: %w", err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	return append(out, '\n'), err
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// GateOptions is what the gated config needs of the stack: paths as the proxy
// container sees them (the host's run/caddy is its /run/caddy).
func GateOptions(s *stack.Stack) caddyconf.Options {
	return caddyconf.Options{
		Stateless: s.Stateless, Blue: stack.Blue, Green: stack.Green,
		StreamCloseDelay: s.DrainTimeout.Duration,
		AdminSocket:      stack.ProxyAdminDir + "/admin.sock",
		GateRoot:         stack.ProxyAdminDir + "/live",
	}
}

// Prepare adapts the team's Caddyfile with the running Caddy (POST /adapt,
// which changes nothing) and gates it: the config a switch loads, and what
// Caddy warned of (an import that matched no file, say). Every stateless
// upstream it proxies to needs a route in the inventory (its health path), and
// every route an upstream in the Caddyfile.
func (c *Caddy) Prepare(ctx context.Context, caddyfile []byte) ([]byte, []string, error) {
	adapted, err := c.admin(ctx, http.MethodPost, "/adapt", "text/caddyfile", caddyfile)
	if err != nil {
		return nil, nil, err
	}
	var res struct {
		Result   json.RawMessage `json:"result"`
		Warnings []struct {
			File    string `json:"file"`
			Line    int    `json:"line"`
			Message string `json:"message"`
		} `json:"warnings"`
	}
	if err := json.Unmarshal(adapted, &res); err != nil {
		return nil, nil, fmt.Errorf("caddy /adapt: %w", err)
	}
	var warnings []string
	for _, w := range res.Warnings {
		where := c.stack.Caddyfile
		if w.Line > 0 {
			where = fmt.Sprintf("%s:%d", where, w.Line)
		}
		warnings = append(warnings, where+": "+w.Message)
	}
	cfg, found, err := caddyconf.Gate(res.Result, GateOptions(c.stack))
	if err != nil {
		return nil, warnings, err
	}
	var errs []error
	for _, u := range found {
		if !slices.ContainsFunc(c.stack.Routes, func(r *stack.Route) bool { return r.Service == u.Service && r.Port == u.Port }) {
			errs = append(errs, fmt.Errorf("%w: it proxies to %s, which no route of the inventory names; add one: {site: ..., path: ..., service: %s, port: %d, health_path: /health}", caddyconf.ErrConflict, u, u.Service, u.Port))
		}
	}
	for _, r := range c.stack.Routes {
		if !slices.Contains(found, caddyconf.Upstream{Service: r.Service, Port: r.Port}) {
			errs = append(errs, fmt.Errorf("%w: the inventory routes to %s:%d, which no reverse_proxy of the Caddyfile names; proxy to it (reverse_proxy %s:%d) or remove the route", caddyconf.ErrConflict, r.Service, r.Port, r.Service, r.Port))
		}
	}
	return cfg, warnings, errors.Join(errs...)
}

// Gated tells whether Caddy's running config takes the health of every
// upstream that is a color of a stateless service (<service>-<color>:port)
// from the gate; the team's other proxies (to a stateful service, elsewhere)
// are theirs.
func (c *Caddy) Gated(ctx context.Context) (bool, error) {
	data, err := c.admin(ctx, http.MethodGet, "/config/apps/http/servers", "", nil)
	if err != nil {
		return false, err
	}
	var cfg any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return false, fmt.Errorf("caddy config: %w", err)
	}
	return caddyconf.Gated(cfg, GateOptions(c.stack)), nil
}

func Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// admin calls Caddy's admin API on its unix socket, through the SSH connection.
func (c *Caddy) admin(ctx context.Context, method, urlPath, contentType string, body []byte) ([]byte, error) {
	sock := c.stack.Paths().Admin() + "/admin.sock"
	// One bound for the dial and the request: a tunnel that never opens
	// must not hang the command.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The socket appears a moment after Caddy starts.
	req, err := http.NewRequestWithContext(ctx, method, "http://caddy-admin"+urlPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	client, done, err := socketClient(ctx, c.host, sock, 30*time.Second, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer done()
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return data, fmt.Errorf("caddy admin %s %s: %s: %s", method, urlPath, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

// Drain waits until Caddy has no request in flight to the old color, bounded by
// the drain timeout.
func (c *Caddy) Drain(ctx context.Context, old string) (string, error) {
	s := c.stack
	deadline := time.Now().Add(s.DrainTimeout.Duration)
	// Until Caddy's checks have seen the color retired it may still be chosen.
	if err := Sleep(ctx, RetireSettle); err != nil {
		return "", err
	}
	var olds []string
	for _, r := range s.Routes {
		olds = append(olds, fmt.Sprintf("%s-%s:%d", r.Service, old, r.Port))
	}
	for {
		data, err := c.admin(ctx, http.MethodGet, "/reverse_proxy/upstreams", "", nil)
		if err != nil {
			return "", err
		}
		var ups []struct {
			Address     string `json:"address"`
			NumRequests int    `json:"num_requests"`
		}
		if err := json.Unmarshal(data, &ups); err != nil {
			return "", fmt.Errorf("caddy upstreams: %w", err)
		}
		inflight := 0
		for _, u := range ups {
			if slices.Contains(olds, u.Address) {
				inflight += u.NumRequests
			}
		}
		if inflight == 0 {
			return "no request in flight on " + old, nil
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("drain timeout %s reached with %d requests in flight on %s; stopping it gracefully anyway", s.DrainTimeout.Duration, inflight, old), nil
		}
		if err := Sleep(ctx, 20*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// ConfigColor reads the running config of a Caddy that an older taledeploy set
// up, which switched by reloading, and returns the color its reverse proxies try first.
func (c *Caddy) ConfigColor(ctx context.Context) (string, error) {
	data, err := c.admin(ctx, http.MethodGet, "/config/apps/http/servers", "", nil)
	if err != nil {
		return "", err
	}
	var cfg any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("caddy config: %w", err)
	}
	colors := map[string]bool{}
	walkJSON(cfg, func(m map[string]any) {
		if m["handler"] != "reverse_proxy" {
			return
		}
		ups, _ := m["upstreams"].([]any)
		if len(ups) == 0 {
			return
		}
		first, _ := ups[0].(map[string]any)
		dial, _ := first["dial"].(string)
		host, _, _ := strings.Cut(dial, ":")
		for _, svc := range c.stack.Stateless {
			if c, ok := strings.CutPrefix(host, svc+"-"); ok && (c == stack.Blue || c == stack.Green) {
				colors[c] = true
			}
		}
	})
	if len(colors) != 1 {
		return "", nil
	}
	for c := range colors {
		return c, nil
	}
	return "", nil
}

// walkJSON calls fn on every object in a decoded JSON document.
func walkJSON(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(v)
		for _, e := range v {
			walkJSON(e, fn)
		}
	case []any:
		for _, e := range v {
			walkJSON(e, fn)
		}
	}
}

// Roots is the system's trusted roots with the root of Caddy's own CA added
// (the one `tls internal` issues from), for reaching its sites as a visitor
// who trusts it.
func (c *Caddy) Roots(ctx context.Context) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	data, err := c.admin(ctx, http.MethodGet, "/pki/ca/local", "", nil)
	if errors.Is(err, remote.ErrDisconnected) {
		return nil, err
	} else if err != nil {
		return pool, nil // no local CA: the system's roots are all there is
	}
	var ca struct {
		Root string `json:"root_certificate"`
	}
	if err := json.Unmarshal(data, &ca); err == nil {
		pool.AppendCertsFromPEM([]byte(ca.Root))
	}
	return pool, nil
}

// Config reads Caddy's running config (JSON).
func (c *Caddy) Config(ctx context.Context) ([]byte, error) {
	return c.admin(ctx, http.MethodGet, "/config/", "", nil)
}
