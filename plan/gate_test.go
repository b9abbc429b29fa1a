package plan

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"taledeploy/internal/caddyconf"
	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"taledeploy/internal/stack/stacktest"
	"testing"
)

// fakeCaddy answers the admin API with the config it runs (JSON), adapts the
// team's Caddyfile to a site proxying to platform:8080, and records the calls
// it gets.
type fakeCaddy struct {
	mu      sync.Mutex
	running string // config it runs
	calls   []string
	body    string // of the last /load
}

// teamConfig is what stacktest's Caddyfile adapts to.
const teamConfig = `{"apps":{"http":{"servers":{"srv0":{"listen":[":80"],"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"platform:8080"}]}]}]}}}}}`

// gatedConfig is the config taledeploy loads for stacktest's Caddyfile.
func gatedConfig(t *testing.T, s *stack.Stack) []byte {
	t.Helper()
	cfg, _, err := caddyconf.Gate([]byte(teamConfig), host.GateOptions(s))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (c *fakeCaddy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, r.Method+" "+r.URL.Path)
	switch r.URL.Path {
	case "/config/":
		io.WriteString(w, c.running)
	case "/load":
		b, _ := io.ReadAll(r.Body)
		c.body, c.running = string(b), string(b)
	case "/adapt":
		io.WriteString(w, `{"result":`+teamConfig+`}`)
	default:
		http.NotFound(w, r)
	}
}

func gateStack(t *testing.T) *stack.Stack {
	t.Helper()
	inv, err := stack.Load(stacktest.Write(t, stacktest.Inventory, stacktest.Compose))
	if err != nil {
		t.Fatal(err)
	}
	s := inv.Environments["demo"].Stack
	return &s
}

func noSettle(t *testing.T) {
	a, r := host.AdmitSettle, host.RetireSettle
	host.AdmitSettle, host.RetireSettle = 0, 0
	t.Cleanup(func() { host.AdmitSettle, host.RetireSettle = a, r })
}

func TestSwitchAdmitsTheNewColorBeforeItRetiresTheOld(t *testing.T) {
	noSettle(t)
	s := gateStack(t)
	cfg := gatedConfig(t, s)
	caddy := &fakeCaddy{running: string(cfg)}
	f := &hosttest.Fake{Caddy: caddy}
	f.WriteFile(context.Background(), s.Paths().CaddyConfig(), cfg, 0o644)
	f.WriteFile(context.Background(), s.Paths().Gate()+"/platform-blue:8080", nil, 0o644)
	f.Ops = nil
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, live: stack.Blue, caddyConfig: cfg, caddyCurrent: true}
	if err := d.switchTo(context.Background(), stack.Green, false); err != nil {
		t.Fatal(err)
	}
	want := []string{"write " + s.Paths().Gate() + "/platform-green:8080", "remove " + s.Paths().Gate() + "/platform-blue:8080"}
	if !slices.Equal(f.Ops, want) {
		t.Errorf("switch did %q, want %q: never a moment with no color admitted", f.Ops, want)
	}
	if slices.Contains(caddy.calls, "POST /load") {
		t.Errorf("a switch reloaded Caddy: %v", caddy.calls)
	}
	for color, want := range map[string]bool{stack.Green: true, stack.Blue: false} {
		if got, err := d.proxy().Admitted(context.Background(), color); err != nil || got != want {
			t.Errorf("%s admitted: %v, %v", color, got, err)
		}
	}
}

func TestSwitchLoadsTheGatedConfigOnceKeepingTrafficWhereItIs(t *testing.T) {
	noSettle(t)
	s := gateStack(t)
	cfg := gatedConfig(t, s)
	caddy := &fakeCaddy{running: teamConfig} // the team's config, not gated yet
	f := &hosttest.Fake{Caddy: caddy}
	// The file on the host is already the gated one (a proxy that was not
	// reloaded, say): what Caddy runs decides.
	f.WriteFile(context.Background(), s.Paths().CaddyConfig(), cfg, 0o644)
	f.Ops = nil
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, live: stack.Blue, caddyConfig: cfg}
	if err := d.switchTo(context.Background(), stack.Green, false); err != nil {
		t.Fatal(err)
	}
	blue, green := "write "+s.Paths().Gate()+"/platform-blue:8080", "write "+s.Paths().Gate()+"/platform-green:8080"
	if i, j := slices.Index(f.Ops, blue), slices.Index(f.Ops, green); i < 0 || j < i {
		t.Errorf("ops %q: the live color must be admitted before the gated config loads", f.Ops)
	}
	if caddy.body != string(cfg) || !strings.Contains(caddy.body, `"upstream": "127.0.0.1:2020"`) {
		t.Errorf("Caddy loaded %q", caddy.body)
	}
	caddy.calls = nil
	if err := d.switchTo(context.Background(), stack.Blue, false); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(caddy.calls, "POST /load") {
		t.Errorf("the second switch reloaded Caddy again: %v", caddy.calls)
	}
}

func TestSwitchLoadsAChangedCaddyfile(t *testing.T) {
	noSettle(t)
	s := gateStack(t)
	cfg := gatedConfig(t, s)
	// Gated, but from a Caddyfile the team has changed since.
	older := strings.Replace(string(cfg), `":80"`, `":81"`, 1)
	caddy := &fakeCaddy{running: older}
	f := &hosttest.Fake{Caddy: caddy}
	f.WriteFile(context.Background(), s.Paths().CaddyConfig(), []byte(older), 0o644)
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, live: stack.Blue, caddyConfig: cfg}
	if err := d.switchTo(context.Background(), stack.Green, false); err != nil {
		t.Fatal(err)
	}
	if caddy.body != string(cfg) {
		t.Errorf("the changed config was not loaded: calls %v", caddy.calls)
	}
	if got, _ := f.ReadFile(context.Background(), s.Paths().CaddyConfig()); string(got) != string(cfg) {
		t.Errorf("the config on the host is %q", got)
	}
}

// The window probes a site the way Caddy serves it: HTTPS for any host name
// (localhost and addresses too, with Caddy's own CA) unless told otherwise.
func TestSiteParts(t *testing.T) {
	for site, want := range map[string][3]string{
		":80":                {"http", "", "80"},
		":8080":              {"http", "", "8080"},
		"localhost":          {"https", "localhost", "443"},
		"example.com":        {"https", "example.com", "443"},
		"example.com:8443":   {"https", "example.com", "8443"},
		"example.com:80":     {"http", "example.com", "80"},
		"http://example.com": {"http", "example.com", "80"},
		"https://10.0.0.1":   {"https", "10.0.0.1", "443"},
	} {
		scheme, host, port := siteParts(site)
		if got := [3]string{scheme, host, port}; got != want {
			t.Errorf("%s: %q, want %q", site, got, want)
		}
	}
}

// The Caddy config plan prints has the inventory's env values hidden: Caddy
// fills {$VAR} in from an environment the inventory feeds.
func TestMaskValues(t *testing.T) {
	got := maskValues(`"X-Api-Key": ["s3cr3t-token"], "q": "a\"b-secret", "short": "ab"`, map[string]string{"API_KEY": "s3cr3t-token", "Q": `a"b-secret`, "S": "ab"})
	if strings.Contains(got, "s3cr3t") || strings.Contains(got, "b-secret") || !strings.Contains(got, `"short": "ab"`) {
		t.Errorf("masked: %s", got)
	}
}

// What Caddy warns of when it adapts the Caddyfile (an import that matched
// nothing, say) is in the preflight's message, with the line.
func TestPreflightShowsCaddyWarnings(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	h.Caddy.Warn = "File to import not found: sites/*.caddy"
	ev := &events{}
	if err := push(t, deployer(h, s, "r2", ev)); err != nil {
		t.Fatal(err)
	}
	if got := ev.get(t, "preflight").Message; !strings.Contains(got, "caddy warns: services/proxy/Caddyfile:3: File to import not found: sites/*.caddy") {
		t.Errorf("preflight says %q", got)
	}
}

// A push whose Caddyfile did not change never reloads Caddy: the preflight
// found Caddy already runs its config.
func TestPushDoesNotReloadCaddy(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	before := len(h.Caddy.Calls())
	if err := push(t, deployer(h, s, "r2", &events{})); err != nil {
		t.Fatal(err)
	}
	calls := h.Caddy.Calls()[before:]
	if slices.Contains(calls, "POST /load") || !slices.Contains(calls, "GET /config/") {
		t.Errorf("admin calls of the second push: %q", calls)
	}
	serves(t, h, s, stack.Green)
}
