package plan

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"testing"
	"time"
)

// A command whose lock was taken over, or whose heartbeat no longer reaches
// the host, stops before its next step that changes the host, and says so.
func TestLostLockStopsTheDeploy(t *testing.T) {
	s := &stack.Stack{Project: "tale", RemoteDir: "/srv/tale"}
	fc := &hosttest.Fake{}
	ctx := context.Background()
	held, stale, err := host.AcquireLock(ctx, fc, s, host.Lock{Who: "a", Command: "taledeploy push prod"})
	if err != nil || stale != nil {
		t.Fatalf("acquireLock: %v, stale %v", err, stale)
	}
	ran := 0
	d := &Deployer{Host: fc, Stack: s, lock: held}
	step := func(name string) error { return d.step(name, true, func() (string, error) { ran++; return "", nil }) }
	if err := step("start"); err != nil || ran != 1 {
		t.Fatalf("start while holding the lock: %v (ran %d)", err, ran)
	}

	// Another command takes the lock over (it judged this one dead).
	other, _ := json.Marshal(host.Lock{Token: "other", Who: "b", Command: "taledeploy push prod", Since: time.Now()})
	fc.WriteFile(ctx, s.Paths().Lock()+"/owner.json", other, 0o600)
	deadline := time.Now().Add(5 * time.Second)
	for held.Owned() == nil && time.Now().Before(deadline) {
		held.SetStep("verify") // wakes the heartbeat
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range []string{"switch", "stop", "record"} {
		if err := step(name); !errors.Is(err, host.ErrLockLost) || !strings.Contains(err.Error(), "another command took it over") {
			t.Errorf("%s after the takeover: %v, want ErrLockLost", name, err)
		}
	}
	if ran != 1 {
		t.Errorf("steps ran after the lock was lost: %d", ran)
	}
	if got, _ := fc.ReadFile(ctx, s.Paths().Lock()+"/owner.json"); !strings.Contains(string(got), `"token":"other"`) {
		t.Errorf("the heartbeat wrote over the new holder's record: %s", got)
	}
	if err := held.Release(ctx); !errors.Is(err, host.ErrLockLost) {
		t.Errorf("release of a lock taken over: %v, want ErrLockLost", err)
	}
	if _, err := fc.ReadFile(ctx, s.Paths().Lock()+"/owner.json"); err != nil {
		t.Errorf("release removed the new holder's lock")
	}
}

// A push whose lock another command took over stops at its next step that
// changes the host and undoes nothing: the color it would remove may already
// be the new holder's.
func TestPushWithLostLockUndoesNothing(t *testing.T) {
	s := hosttest.RawStack(t.TempDir(), "tale", "/srv/tale", "compose.yml", "platform", "db", "x")
	os.WriteFile(filepath.Join(s.Root, "compose.yml"), []byte("services: {}\n"), 0o644)
	s.Build = stack.BuildLocal // built here (no images in this test): the fake has no engine to build on
	fc := &hosttest.Fake{Reply: func(argv []string) ([]byte, error) {
		if slices.Contains(argv, "--hash") {
			return []byte("proxy h1\ndb h2\n"), nil
		}
		return nil, nil
	}}
	ctx := context.Background()
	d := &Deployer{Host: fc, Stack: s, Opts: Options{Who: "a", Release: "r1", SkipPreflight: true}}
	if err := d.Lock(ctx, "taledeploy push prod"); err != nil {
		t.Fatal(err)
	}
	defer d.Unlock(ctx)
	// Another command takes the lock over once the stateful services are up,
	// just before this one would start its color.
	d.Report = func(e Event) {
		if e.Step == "stateful" && e.Status == "ok" {
			other, _ := json.Marshal(host.Lock{Token: "other", Command: "taledeploy push prod", Since: time.Now()})
			fc.WriteFile(ctx, s.Paths().Lock()+"/owner.json", other, 0o600)
			d.lock.Beat(ctx) // sees the takeover
			fc.ResetCmds()
		}
	}
	cur, err := d.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Push(ctx, cur)
	if !errors.Is(err, host.ErrLockLost) {
		t.Fatalf("push after the takeover: %v, want ErrLockLost", err)
	}
	for _, c := range fc.Ran() { // the heartbeat may run a command meanwhile
		if slices.Contains(c.Argv, "down") || slices.Contains(c.Argv, "up") || slices.Contains(c.Argv, "stop") {
			t.Errorf("a push that lost its lock ran %q", c.Argv)
		}
	}
}

// A push whose lock is taken over after the switch undoes nothing, and its
// error says traffic had moved: the host runs the new color, so the CLI must
// not report (nor exit as) "no host changed".
//
// Fails today: carryOut returns the bare ErrLockLost of the record step, and
// only a lost connection after the switch is marked ErrAfterSwitch.
func TestLockLostAfterTheSwitchSaysTrafficMoved(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	ctx := context.Background()
	ev := &events{}
	d := deployer(h, s, "r2", ev)
	ev.on = func(e Event) {
		if e.Step == "switch" && e.Status == "ok" {
			other, _ := json.Marshal(host.Lock{Token: "other", Who: "bob@desk", Command: "taledeploy push demo", Since: time.Now(), Heartbeat: time.Now()})
			h.WriteFile(ctx, s.Paths().Lock()+"/owner.json", other, 0o600)
			d.lock.Beat(ctx) // sees the takeover
		}
	}
	if err := d.Lock(ctx, "taledeploy push demo"); err != nil {
		t.Fatal(err)
	}
	cur, err := d.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Push(ctx, cur)
	if uerr := d.Unlock(ctx); !errors.Is(uerr, host.ErrLockLost) {
		t.Errorf("unlock after the takeover: %v", uerr)
	}
	if !errors.Is(err, host.ErrLockLost) {
		t.Fatalf("push: %v, want ErrLockLost", err)
	}
	if got := ev.steps("one"); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "switch-back") || strings.HasPrefix(s, "remove-new") }) {
		t.Errorf("a push that lost its lock undid: %q", got)
	}
	if got := h.Caddy.Admitted(); !slices.Equal(got, []string{stack.Green}) {
		t.Errorf("the gate admits %v", got)
	}
	if !errors.Is(err, ErrAfterSwitch) {
		t.Errorf("push: %v: traffic had moved to green, but the error does not wrap ErrAfterSwitch (the CLI exits 1, \"no host changed\")", err)
	}
}
