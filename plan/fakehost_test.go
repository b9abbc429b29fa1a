package plan

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
)

// Helpers of the tests that drive whole commands against hosttest.Host, a
// fake host with Docker, Compose and the stack's Caddy.

// deployStack is the demo stack of stacktest (stateless platform and rag,
// platform routed at :80 with health path /api/health; stateful proxy and
// db), with its build contexts and timeouts short enough for tests. The
// switch and drain do not wait for Caddy's checks.
func deployStack(t *testing.T) *stack.Stack {
	t.Helper()
	return readyStack(t, gateStack(t))
}

// readyStack gives s its build contexts and short timeouts.
func readyStack(t *testing.T, s *stack.Stack) *stack.Stack {
	t.Helper()
	noSettle(t)
	for _, svc := range []string{"db", "platform", "rag"} {
		dir := filepath.Join(s.Root, "services", svc)
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.HealthTimeout = stack.Duration{Duration: 2 * time.Second}
	s.DrainTimeout = stack.Duration{Duration: 200 * time.Millisecond}
	s.VerifyWindow = stack.Duration{}
	return s
}

// events collects what deployers report, from any number of goroutines.
type events struct {
	mu  sync.Mutex
	all []Event
	on  func(Event) // called with each event, after it is kept
}

func (e *events) report(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	on := e.on
	e.mu.Unlock()
	if on != nil {
		on(ev)
	}
}

// steps lists "step status" for every finished step of host ("" for any), in order.
func (e *events) steps(hostName string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		if ev.Status != "running" && (hostName == "" || ev.Host == hostName) {
			out = append(out, ev.Step+" "+ev.Status)
		}
	}
	return out
}

// get returns the last finished event of step on any host.
func (e *events) get(t *testing.T, step string) Event {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if ev := e.all[i]; ev.Step == step && ev.Status != "running" {
			return ev
		}
	}
	t.Fatalf("no %s step was reported: %v", step, e.all)
	return Event{}
}

func (e *events) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = nil
}

// deployer is a deployer of release on h, reporting to ev.
func deployer(h *hosttest.Host, s *stack.Stack, release string, ev *events) *Deployer {
	return &Deployer{Host: h, Stack: s, Opts: Options{Who: "alice@laptop", Release: release, GitRevision: "abc123"}, Report: ev.report}
}

// lockCheck is what every command starts with: the lock, then the check.
func lockCheck(t *testing.T, d *Deployer, command string) (*Current, error) {
	t.Helper()
	ctx := context.Background()
	if err := d.Lock(ctx, command); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := d.Unlock(ctx); err != nil {
			t.Errorf("unlock %s: %v", d.Host.Name(), err)
		}
	})
	return d.Check(ctx)
}

// push is `taledeploy push`: lock, check, push, unlock.
func push(t *testing.T, d *Deployer) error {
	t.Helper()
	cur, err := lockCheck(t, d, "taledeploy push demo")
	if err != nil {
		return err
	}
	err = d.Push(context.Background(), cur)
	if uerr := d.Unlock(context.Background()); uerr != nil {
		t.Errorf("unlock: %v", uerr)
	}
	return err
}

// liveHost is a host named name where releases were pushed one after the
// other (r1 to blue, r2 to green, ...), with the commands forgotten.
func liveHost(t *testing.T, name string, s *stack.Stack, releases ...string) *hosttest.Host {
	t.Helper()
	h := hosttest.NewHost(name, s)
	for _, rel := range releases {
		if err := push(t, deployer(h, s, rel, &events{})); err != nil {
			t.Fatalf("push %s to %s: %v", rel, name, err)
		}
	}
	h.ResetCmds()
	return h
}

// record reads the host's state.json.
func record(t *testing.T, h *hosttest.Host, s *stack.Stack) *host.State {
	t.Helper()
	st, err := host.ReadState(context.Background(), h, s)
	if err != nil || st == nil {
		t.Fatalf("%s: record %v, %v", h.Name(), st, err)
	}
	return st
}

func recordBytes(h *hosttest.Host, s *stack.Stack) []byte {
	data, _ := h.ReadFile(context.Background(), s.Paths().State())
	return data
}

// lastHistory is the last entry of the host's history.
func lastHistory(t *testing.T, h *hosttest.Host, s *stack.Stack) host.HistoryEntry {
	t.Helper()
	hist, err := host.ReadHistory(context.Background(), h, s)
	if err != nil || len(hist) == 0 {
		t.Fatalf("history: %v, %v", hist, err)
	}
	return hist[len(hist)-1]
}

// states lists "SERVICE STATE release RELEASE" of the containers of a color.
func states(h *hosttest.Host, s *stack.Stack, color string) []string {
	var out []string
	for _, c := range h.Docker.Containers(s.ColorProject(color)) {
		out = append(out, fmt.Sprintf("%s %s %s", c.Service, c.State, c.Release))
	}
	slices.Sort(out)
	return out
}

func ids(h *hosttest.Host, project string) string {
	var out []string
	for _, c := range h.Docker.Containers(project) {
		out = append(out, c.ID)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// changing lists the commands that change what runs (compose build, up,
// down, run; docker start, stop), in order.
func changing(h *hosttest.Host) []string {
	var out []string
	for _, c := range h.Commands() {
		f := strings.Fields(c)
		switch {
		case len(f) > 4 && f[1] == "compose" && slices.Contains([]string{"build", "up", "down", "run"}, f[4]),
			len(f) > 1 && f[0] == "docker" && (f[1] == "start" || f[1] == "stop"):
			out = append(out, c)
		}
	}
	return out
}

// serves checks where a visitor's request lands: on the platform container
// of color, through Caddy and its gate.
func serves(t *testing.T, h *hosttest.Host, s *stack.Stack, color string) {
	t.Helper()
	if got := h.Caddy.Admitted(); !slices.Equal(got, []string{color}) {
		t.Errorf("%s: the gate admits %v, want only %s", h.Name(), got, color)
	}
	code, by := h.Caddy.Get("/api/health")
	if want := s.ColorProject(color) + "-platform-1"; code != 200 || by != want {
		t.Errorf("%s: a request through Caddy got %d from %q, want 200 from %s", h.Name(), code, by, want)
	}
}

func sameRecord(t *testing.T, h *hosttest.Host, s *stack.Stack, before []byte) {
	t.Helper()
	if after := recordBytes(h, s); !bytes.Equal(after, before) {
		t.Errorf("%s: the record changed:\n%s\nwas:\n%s", h.Name(), after, before)
	}
}

// slot is the record's rollback target, the zero Slot when there is none.
func slot(st *host.State) host.Slot {
	if st == nil || st.Previous == nil {
		return host.Slot{}
	}
	return *st.Previous
}

// last is the last n of xs, or all of them.
func last(xs []string, n int) []string { return xs[max(len(xs)-n, 0):] }
