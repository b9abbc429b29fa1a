package plan

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
)

// fleet is three hosts, one, two and three, each with blue r1 live, and a
// fleet push of r2 to them reporting to ev.
func fleet(t *testing.T) (*stack.Stack, []*hosttest.Host, *Fleet, *events) {
	t.Helper()
	s := deployStack(t)
	ev := &events{}
	f := &Fleet{}
	var hs []*hosttest.Host
	for _, name := range []string{"one", "two", "three"} {
		h := liveHost(t, name, s, "r1")
		hs = append(hs, h)
		// Each host has its own copy, as Environment.StackFor gives: Check
		// sets what its engine speaks.
		own := *s
		f.Hosts = append(f.Hosts, deployer(h, &own, "r2", ev))
	}
	return s, hs, f, ev
}

// begin is the start of a fleet push: every host locked, checked and prepared.
func begin(t *testing.T, f *Fleet, hs []*hosttest.Host, ev *events) {
	t.Helper()
	ctx := context.Background()
	if err := f.Begin(ctx, "taledeploy push demo", true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if errs := f.End(ctx); len(errs) > 0 {
			t.Errorf("end: %v", errs)
		}
	})
	for _, h := range hs {
		if got, want := ev.steps(h.Name()), []string{"lock ok", "check ok", "upload ok", "preflight ok"}; !slices.Equal(got, want) {
			t.Errorf("%s began with %q, want %q", h.Name(), got, want)
		}
		if got := changing(h); len(got) > 0 {
			t.Errorf("%s changed before the push: %q", h.Name(), got)
		}
		h.ResetCmds()
	}
	ev.reset()
}

// A fleet push goes host after host and stops at the first failure: the
// hosts after it are not touched, and the error names the hosts done.
func TestFleetPushStopsAtTheFirstFailure(t *testing.T) {
	s, hs, f, ev := fleet(t)
	begin(t, f, hs, ev)
	three := recordBytes(hs[2], s)
	hs[1].Docker.BuildFail = func(string) error { return errors.New("failed to solve: no space left on device") }
	err := f.Push(context.Background(), false)
	var fe *FleetError
	if !errors.As(err, &fe) || fe.Action != "push" || fe.Failed != "two" || !slices.Equal(fe.Done, []string{"one"}) || fe.RolledBack {
		t.Fatalf("fleet push: %#v, want a *FleetError failed on two after one", err)
	}
	if !fe.Changed() || !strings.HasPrefix(err.Error(), "push failed on two: ") || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("error %q (changed %v)", err, fe.Changed())
	}
	if st := record(t, hs[0], s); st.Active != stack.Green || st.Release != "r2" {
		t.Errorf("one: record %+v", st)
	}
	serves(t, hs[0], s, stack.Green)
	if got := last(ev.steps("two"), 1); !slices.Equal(got, []string{"build failed"}) {
		t.Errorf("two: steps %q", got)
	}
	if st := record(t, hs[1], s); st.Active != stack.Blue || st.Release != "r1" {
		t.Errorf("two: record %+v", st)
	}
	serves(t, hs[1], s, stack.Blue)
	if got := ev.steps("three"); len(got) > 0 {
		t.Errorf("three ran %q", got)
	}
	if got := hs[2].Commands(); len(got) > 0 {
		t.Errorf("three ran %q", got)
	}
	sameRecord(t, hs[2], s, three)
	serves(t, hs[2], s, stack.Blue)
}

// With rollbackOnFailure, the hosts done before the failing one are rolled
// back: every host serves r1 again.
func TestFleetPushRollsBackOnFailure(t *testing.T) {
	s, hs, f, ev := fleet(t)
	begin(t, f, hs, ev)
	hs[1].Docker.Created = func(c *hosttest.Container) {
		if c.Color == stack.Green {
			c.State = "exited"
		}
	}
	err := f.Push(context.Background(), true)
	var fe *FleetError
	if !errors.As(err, &fe) || fe.Failed != "two" || !slices.Equal(fe.Done, []string{"one"}) || !fe.RolledBack || fe.RollbackErr != nil {
		t.Fatalf("fleet push: %#v", err)
	}
	if fe.Changed() || !errors.Is(err, ErrUnhealthy) {
		t.Errorf("error %v: changed %v", err, fe.Changed())
	}
	want := []string{"build ok", "stateful ok", "start ok", "verify ok", "switch ok", "drain ok", "stop ok", "record ok", "prune ok", // the push
		"start ok", "verify ok", "switch ok", "drain ok", "stop ok", "record ok"} // the rollback
	if got := ev.steps("one"); !slices.Equal(got, want) {
		t.Errorf("one: steps %q, want %q", got, want)
	}
	for _, h := range hs {
		st := record(t, h, s)
		if st.Active != stack.Blue || st.Release != "r1" {
			t.Errorf("%s: record %+v", h.Name(), st)
		}
		serves(t, h, s, stack.Blue)
	}
	if st := record(t, hs[0], s); slot(st) != (host.Slot{Color: stack.Green, Release: "r2"}) {
		t.Errorf("one: record %+v", st)
	}
	if e := lastHistory(t, hs[0], s); e.Action != "rollback" || e.Result != "ok" {
		t.Errorf("one: history %+v", e)
	}
	if got := hs[2].Commands(); len(got) > 0 {
		t.Errorf("three ran %q", got)
	}
}

// A fleet push that succeeds everywhere, then a fleet rollback.
func TestFleetPushThenRollback(t *testing.T) {
	s, hs, f, ev := fleet(t)
	begin(t, f, hs, ev)
	if err := f.Push(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		serves(t, h, s, stack.Green)
	}
	if got := f.Current(0).Live; got != stack.Blue {
		t.Errorf("Current(0) is what the check found: live %q", got)
	}
	if errs := f.End(context.Background()); len(errs) > 0 {
		t.Fatal(errs)
	}

	ev2 := &events{}
	r := &Fleet{}
	for _, h := range hs {
		own := *s
		r.Hosts = append(r.Hosts, deployer(h, &own, "", ev2))
	}
	ctx := context.Background()
	if err := r.Begin(ctx, "taledeploy rollback demo", false); err != nil {
		t.Fatal(err)
	}
	defer r.End(ctx)
	if err := r.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		serves(t, h, s, stack.Blue)
		if e := lastHistory(t, h, s); e.Action != "rollback" || e.Release != "r1" {
			t.Errorf("%s: history %+v", h.Name(), e)
		}
	}
}

// A fleet whose one host is locked by another command begins nowhere: no
// host changes what runs.
func TestFleetBeginFailsOnALockedHost(t *testing.T) {
	s, hs, f, ev := fleet(t)
	ctx := context.Background()
	now := time.Now().UTC()
	rec, _ := json.Marshal(host.Lock{Token: "theirs", Who: "bob@desk", Machine: "desk", PID: 77, Command: "taledeploy rollback demo", Since: now, Heartbeat: now})
	hs[1].Mkdir(ctx, s.Paths().Lock(), 0o700, false)
	hs[1].WriteFile(ctx, s.Paths().Lock()+"/owner.json", rec, 0o600)
	var before [][]byte
	for _, h := range hs {
		before = append(before, recordBytes(h, s))
	}
	err := f.Begin(ctx, "taledeploy push demo", true)
	if !errors.Is(err, host.ErrLocked) || !strings.Contains(err.Error(), "two") || !strings.Contains(err.Error(), "bob@desk") {
		t.Fatalf("begin: %v, want ErrLocked on two", err)
	}
	if errs := f.End(ctx); len(errs) > 0 {
		t.Errorf("end: %v", errs)
	}
	if got := ev.steps("two"); !slices.Equal(got, []string{"lock failed"}) {
		t.Errorf("two: steps %q", got)
	}
	for i, h := range hs {
		if got := changing(h); len(got) > 0 {
			t.Errorf("%s: ran %q", h.Name(), got)
		}
		sameRecord(t, h, s, before[i])
		serves(t, h, s, stack.Blue)
		data, _ := h.ReadFile(ctx, s.Paths().Lock()+"/owner.json")
		if i == 1 && !strings.Contains(string(data), `"token":"theirs"`) || i != 1 && data != nil {
			t.Errorf("%s: lock after the fleet ended: %s", h.Name(), data)
		}
	}
}
