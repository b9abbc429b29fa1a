package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"taledeploy/internal/stack"
	"taledeploy/remote"
	"testing"
	"time"
)

// lockedHost is a fake host holding rec as its lock, whose clock says the
// record was written age ago.
func lockedHost(t *testing.T, s *stack.Stack, rec Lock, age time.Duration) *fakeConn {
	t.Helper()
	data, _ := json.Marshal(rec)
	fc := &fakeConn{files: map[string][]byte{s.LockPath() + "/owner.json": data}}
	fc.reply = func(argv []string) ([]byte, error) {
		if argv[0] == "sh" && argv[len(argv)-1] == s.LockPath()+"/owner.json" {
			now := int64(1_800_000_000)
			return fmt.Appendf(nil, "%d\n%d\n", now, now-int64(age/time.Second)), nil
		}
		return nil, fmt.Errorf("unexpected %q", argv)
	}
	return fc
}

// deadPID is the pid of a process that has ended.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

// Staleness is judged by the host's clock and by which machine (not which
// hostname) holds the lock.
func TestLockStaleness(t *testing.T) {
	s := &stack.Stack{Project: "tale", RemoteDir: "/srv/tale"}
	host, _ := os.Hostname()
	now := time.Now()
	for _, tc := range []struct {
		name  string
		rec   Lock
		age   time.Duration // as the host sees it
		stale string        // "" when the holder may still run
	}{
		{"fresh on the host, though our clock runs an hour ahead",
			Lock{Machine: "laptop", PID: 1, Heartbeat: now.Add(-time.Hour)}, 2 * time.Second, ""},
		{"silent for 30 s on the host, though the holder's clock runs ahead",
			Lock{Machine: "laptop", PID: 1, Heartbeat: now.Add(time.Hour)}, 30 * time.Second, "not been seen for 30s"},
		{"same hostname, another machine: its pid means nothing here",
			Lock{Machine: host, MachineID: "other-clone", PID: deadPID(t), Heartbeat: now}, time.Second, ""},
		{"same hostname, record from before machine ids: its pid is not trusted",
			Lock{Machine: host, PID: deadPID(t), Heartbeat: now}, time.Second, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ReadLock(context.Background(), lockedHost(t, s, tc.rec, tc.age), s)
			if err != nil || l == nil {
				t.Fatalf("ReadLock: %v, %v", l, err)
			}
			got := l.Stale(now)
			if tc.stale == "" && got != "" || tc.stale != "" && !strings.Contains(got, tc.stale) {
				t.Errorf("Stale = %q, want %q", got, tc.stale)
			}
		})
	}
	if thisMachine() == "" {
		t.Skip("no machine id here: the dead-process check is off")
	}
	l, _ := ReadLock(context.Background(), lockedHost(t, s, Lock{Machine: host, MachineID: thisMachine(), PID: deadPID(t), Heartbeat: now}, time.Second), s)
	if got := l.Stale(now); !strings.Contains(got, "is gone") {
		t.Errorf("this machine's dead holder: Stale = %q, want its process gone", got)
	}
}

// A command whose lock was taken over, or whose heartbeat no longer reaches
// the host, stops before its next step that changes the host, and says so.
func TestLostLockStopsTheDeploy(t *testing.T) {
	s := &stack.Stack{Project: "tale", RemoteDir: "/srv/tale"}
	fc := &fakeConn{}
	ctx := context.Background()
	held, stale, err := acquireLock(ctx, fc, s, Lock{Who: "a", Command: "taledeploy push prod"})
	if err != nil || stale != nil {
		t.Fatalf("acquireLock: %v, stale %v", err, stale)
	}
	ran := 0
	d := &Deployer{Host: fc, Stack: s, lock: held}
	step := func(name string) error { return d.step(name, func() (string, error) { ran++; return "", nil }) }
	if err := step("start"); err != nil || ran != 1 {
		t.Fatalf("start while holding the lock: %v (ran %d)", err, ran)
	}

	// Another command takes the lock over (it judged this one dead).
	other, _ := json.Marshal(Lock{Token: "other", Who: "b", Command: "taledeploy push prod", Since: time.Now()})
	fc.WriteFile(ctx, s.LockPath()+"/owner.json", other, 0o600)
	deadline := time.Now().Add(5 * time.Second)
	for held.owned() == nil && time.Now().Before(deadline) {
		held.setStep("verify") // wakes the heartbeat
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range []string{"switch", "stop", "record"} {
		if err := step(name); !errors.Is(err, ErrLockLost) || !strings.Contains(err.Error(), "another command took it over") {
			t.Errorf("%s after the takeover: %v, want ErrLockLost", name, err)
		}
	}
	if ran != 1 {
		t.Errorf("steps ran after the lock was lost: %d", ran)
	}
	if got, _ := fc.ReadFile(ctx, s.LockPath()+"/owner.json"); !strings.Contains(string(got), `"token":"other"`) {
		t.Errorf("the heartbeat wrote over the new holder's record: %s", got)
	}
	if err := held.release(ctx); !errors.Is(err, ErrLockLost) {
		t.Errorf("release of a lock taken over: %v, want ErrLockLost", err)
	}
	if _, err := fc.ReadFile(ctx, s.LockPath()+"/owner.json"); err != nil {
		t.Errorf("release removed the new holder's lock")
	}
}

// silentConn is a host that answers no command (a stalled connection).
type silentConn struct{ fakeConn }

func (*silentConn) Run(context.Context, remote.Cmd) ([]byte, error) {
	return nil, errors.New("i/o timeout")
}

// A holder whose heartbeat cannot reach the host for lockLostAfter stops; one
// that only answered slowly is asked once more and goes on.
func TestSilentHeartbeatStopsTheDeploy(t *testing.T) {
	long := time.Now().Add(-lockLostAfter - time.Second)
	l := &lockHolder{h: &silentConn{}, path: "/srv/tale/.taledeploy/lock", lastOK: long}
	if err := l.owned(); !errors.Is(err, ErrLockLost) || !strings.Contains(err.Error(), "no heartbeat has reached the host") {
		t.Errorf("owned after %s of silence: %v", lockLostAfter, err)
	}
	rec := Lock{Token: "mine", Command: "taledeploy push prod"}
	data, _ := json.Marshal(rec)
	slow := &fakeConn{files: map[string][]byte{"/srv/tale/.taledeploy/lock/owner.json": data}}
	l = &lockHolder{h: slow, path: "/srv/tale/.taledeploy/lock", rec: rec, lastOK: long}
	if err := l.owned(); err != nil {
		t.Errorf("owned on a host that answers again: %v", err)
	}
}

// A push whose lock another command took over stops at its next step that
// changes the host and undoes nothing: the color it would remove may already
// be the new holder's.
func TestPushWithLostLockUndoesNothing(t *testing.T) {
	s := fuzzStack(t.TempDir(), "tale", "/srv/tale", "compose.yml", "platform", "db", "x")
	os.WriteFile(filepath.Join(s.Root, "compose.yml"), []byte("services: {}\n"), 0o644)
	fc := &fakeConn{reply: func(argv []string) ([]byte, error) {
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
			other, _ := json.Marshal(Lock{Token: "other", Command: "taledeploy push prod", Since: time.Now()})
			fc.WriteFile(ctx, s.LockPath()+"/owner.json", other, 0o600)
			d.lock.beat(ctx) // sees the takeover
			fc.mu.Lock()
			fc.cmds = nil
			fc.mu.Unlock()
		}
	}
	err := d.Push(ctx)
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("push after the takeover: %v, want ErrLockLost", err)
	}
	for _, c := range fc.cmds {
		if slices.Contains(c.Argv, "down") || slices.Contains(c.Argv, "up") || slices.Contains(c.Argv, "stop") {
			t.Errorf("a push that lost its lock ran %q", c.Argv)
		}
	}
}
