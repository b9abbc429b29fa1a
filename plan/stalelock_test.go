package plan

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
)

// die runs a push of release on h that dies (its process killed) as step
// begins: what it did stays on the host, and its lock is left behind, last
// written a minute ago.
func die(t *testing.T, h *hosttest.Host, s *stack.Stack, release, step string) {
	t.Helper()
	ctx := context.Background()
	d := deployer(h, s, release, &events{on: func(e Event) {
		if e.Step == step && e.Status == "running" {
			panic("killed")
		}
	}})
	cur, err := d.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatalf("the push did not die at %s", step)
			}
		}()
		d.Push(ctx, cur)
	}()
	now := time.Now().UTC()
	rec, _ := json.Marshal(host.Lock{Token: "dead", Who: "ci@runner", Machine: "runner-7", PID: 4242, Command: "taledeploy push demo",
		Since: now.Add(-2 * time.Minute), Heartbeat: now.Add(-time.Minute), Step: step, Color: stack.Other(cur.Live), Release: release})
	h.Mkdir(ctx, s.Paths().Lock(), 0o700, false)
	h.WriteFile(ctx, s.Paths().Lock()+"/owner.json", rec, 0o600)
}

// A lock left by a push that died after the switch is taken over; the check
// then rebuilds the record from what runs and writes the dead push into the
// history.
func TestStaleLockTakeoverConverges(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	die(t, h, s, "r2", "record")
	if st := record(t, h, s); st.Active != stack.Blue {
		t.Fatalf("the dead push wrote its record: %+v", st)
	}
	ev := &events{}
	d := deployer(h, s, "r3", ev)
	cur, err := lockCheck(t, d, "taledeploy push demo")
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.get(t, "lock").Message; got != "took over the lock of an interrupted taledeploy push demo (its holder has not been seen for 1m0s)" {
		t.Errorf("lock: %q", got)
	}
	want := "a taledeploy push demo was interrupted (at step record); converged: green serves release r2, rollback to blue release r1 " +
		"(was: the record says blue (release r1) is live, but traffic goes to green (release r2))"
	if got := ev.get(t, "check").Message; got != want {
		t.Errorf("check: %q\nwant %q", got, want)
	}
	st := record(t, h, s)
	if st.Active != stack.Green || st.Release != "r2" || slot(st) != (host.Slot{Color: stack.Blue, Release: "r1"}) ||
		!strings.Contains(st.DeployedBy, "record rebuilt from the host") {
		t.Errorf("record %+v", st)
	}
	if cur.Live != stack.Green || cur.State.Active != stack.Green {
		t.Errorf("current %+v", cur)
	}
	e := lastHistory(t, h, s)
	if e.Action != "push" || e.Result != "interrupted" || e.Release != "r2" || e.Color != stack.Green || e.By != "ci@runner" ||
		e.Error != "interrupted at step record (its process died or lost its connection)" {
		t.Errorf("history %+v", e)
	}
	serves(t, h, s, stack.Green)
	var l host.Lock
	data, _ := h.ReadFile(context.Background(), s.Paths().Lock()+"/owner.json")
	if json.Unmarshal(data, &l); l.Token == "dead" || l.Who != "alice@laptop" {
		t.Errorf("the lock is %s", data)
	}

	// The push goes on from there: blue is replaced.
	if err := d.Push(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	if st := record(t, h, s); st.Active != stack.Blue || st.Release != "r3" || slot(st) != (host.Slot{Color: stack.Green, Release: "r2"}) {
		t.Errorf("record after the next push: %+v", st)
	}
}

// A push killed mid-switch, with both colors admitted: the check admits only
// the color that serves.
func TestStaleLockTakeoverMidSwitch(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	die(t, h, s, "r2", "switch")
	// It had admitted green and not yet retired blue.
	h.WriteFile(context.Background(), s.Paths().Gate()+"/platform-green:8080", nil, 0o644)
	before := recordBytes(h, s)
	ev := &events{}
	if _, err := lockCheck(t, deployer(h, s, "r3", ev), "taledeploy push demo"); err != nil {
		t.Fatal(err)
	}
	if got := ev.get(t, "check").Message; !strings.Contains(got, "a taledeploy push demo was interrupted (at step switch); converged: blue serves release r1") ||
		!strings.Contains(got, "the gate admits both colors") {
		t.Errorf("check: %q", got)
	}
	if st := record(t, h, s); st.Active != stack.Blue || st.Release != "r1" || st.Previous != nil {
		t.Errorf("record %+v (was %s)", st, before)
	}
	serves(t, h, s, stack.Blue)
}

// A lock whose holder is alive is not taken over.
func TestLiveLockRefuses(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	other := deployer(h, s, "r2", &events{})
	if err := other.Lock(context.Background(), "taledeploy push demo"); err != nil {
		t.Fatal(err)
	}
	defer other.Unlock(context.Background())
	ev := &events{}
	_, err := lockCheck(t, deployer(h, s, "r3", ev), "taledeploy push demo")
	if !errors.Is(err, host.ErrLocked) || !strings.Contains(err.Error(), "taledeploy push demo") {
		t.Fatalf("lock: %v, want ErrLocked naming the holder", err)
	}
	if got := ev.steps("one"); len(got) != 1 || got[0] != "lock failed" {
		t.Errorf("steps %q", got)
	}
}
