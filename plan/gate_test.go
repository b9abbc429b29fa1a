package plan

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"taledeploy/internal/stack/stacktest"
	"testing"
)

// fakeCaddy answers the admin API with a config that does or does not ask the
// gate, and records the calls it gets.
type fakeCaddy struct {
	mu    sync.Mutex
	gated bool
	calls []string
	body  string // of the last /load
}

func (c *fakeCaddy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, r.Method+" "+r.URL.Path)
	switch r.URL.Path {
	case "/config/apps/http/servers":
		rp := `{"handler":"reverse_proxy","upstreams":[{"dial":"platform-blue:8080"},{"dial":"platform-green:8080"}]}`
		if c.gated {
			rp = `{"handler":"reverse_proxy","health_checks":{"active":{"upstream":"127.0.0.1:2020"}},"upstreams":[{"dial":"platform-blue:8080"}]}`
		}
		io.WriteString(w, `{"srv0":{"routes":[{"handle":[`+rp+`]}]}}`)
	case "/load":
		b, _ := io.ReadAll(r.Body)
		c.body, c.gated = string(b), true
	case "/adapt":
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
	caddy := &fakeCaddy{gated: true}
	f := &hosttest.Fake{Caddy: caddy}
	f.WriteFile(context.Background(), s.Remote(s.Caddyfile), s.CaddyfileText(), 0o644)
	f.WriteFile(context.Background(), s.Paths().Gate()+"/platform-blue:8080", nil, 0o644)
	f.Ops = nil
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, live: stack.Blue}
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

func TestSwitchLoadsTheGatedCaddyfileOnceKeepingTrafficWhereItIs(t *testing.T) {
	noSettle(t)
	s := gateStack(t)
	caddy := &fakeCaddy{} // runs a Caddyfile from before the gate: blue listed first
	f := &hosttest.Fake{Caddy: caddy}
	// The file on the host is already the gated one (a proxy that was not
	// reloaded, say): what Caddy runs decides.
	f.WriteFile(context.Background(), s.Remote(s.Caddyfile), s.CaddyfileText(), 0o644)
	f.Ops = nil
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, live: stack.Blue, validated: true}
	if err := d.switchTo(context.Background(), stack.Green, false); err != nil {
		t.Fatal(err)
	}
	blue, green := "write "+s.Paths().Gate()+"/platform-blue:8080", "write "+s.Paths().Gate()+"/platform-green:8080"
	if i, j := slices.Index(f.Ops, blue), slices.Index(f.Ops, green); i < 0 || j < i {
		t.Errorf("ops %q: the live color must be admitted before the gated Caddyfile loads", f.Ops)
	}
	if caddy.body != string(s.CaddyfileText()) || !strings.Contains(caddy.body, "health_upstream 127.0.0.1:2020") {
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
	caddy := &fakeCaddy{gated: true}
	f := &hosttest.Fake{Caddy: caddy}
	// Gated, but from routes the inventory no longer has.
	f.WriteFile(context.Background(), s.Remote(s.Caddyfile), []byte("# older routes\n"), 0o644)
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, live: stack.Blue, validated: true}
	if err := d.switchTo(context.Background(), stack.Green, false); err != nil {
		t.Fatal(err)
	}
	if caddy.body != string(s.CaddyfileText()) {
		t.Errorf("the changed Caddyfile was not loaded: calls %v", caddy.calls)
	}
	if got, _ := f.ReadFile(context.Background(), s.Remote(s.Caddyfile)); string(got) != string(s.CaddyfileText()) {
		t.Errorf("the Caddyfile on the host is %q", got)
	}
}
