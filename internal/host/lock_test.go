package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"taledeploy/remote"
	"testing"
	"time"
)

// lockedHost is a fake host holding rec as its lock, whose clock says the
// record was written age ago.
func lockedHost(t *testing.T, s *stack.Stack, rec Lock, age time.Duration) *hosttest.Fake {
	t.Helper()
	data, _ := json.Marshal(rec)
	fc := &hosttest.Fake{Files: map[string][]byte{s.Paths().Lock() + "/owner.json": data}}
	fc.Reply = func(argv []string) ([]byte, error) {
		if argv[0] == "sh" && argv[len(argv)-1] == s.Paths().Lock()+"/owner.json" {
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
	if ThisMachine() == "" {
		t.Skip("no machine id here: the dead-process check is off")
	}
	l, _ := ReadLock(context.Background(), lockedHost(t, s, Lock{Machine: host, MachineID: ThisMachine(), PID: deadPID(t), Heartbeat: now}, time.Second), s)
	if got := l.Stale(now); !strings.Contains(got, "is gone") {
		t.Errorf("this machine's dead holder: Stale = %q, want its process gone", got)
	}
}

// silentConn is a host that answers no command (a stalled connection).
type silentConn struct{ hosttest.Fake }

func (*silentConn) Run(context.Context, remote.Cmd) ([]byte, error) {
	return nil, errors.New("i/o timeout")
}

// A holder whose heartbeat cannot reach the host for lockLostAfter stops; one
// that only answered slowly is asked once more and goes on.
func TestSilentHeartbeatStopsTheDeploy(t *testing.T) {
	long := time.Now().Add(-lockLostAfter - time.Second)
	l := &HeldLock{h: &silentConn{}, path: "/srv/tale/.taledeploy/lock", lastOK: long}
	if err := l.Owned(); !errors.Is(err, ErrLockLost) || !strings.Contains(err.Error(), "no heartbeat has reached the host") {
		t.Errorf("owned after %s of silence: %v", lockLostAfter, err)
	}
	rec := Lock{Token: "mine", Command: "taledeploy push prod"}
	data, _ := json.Marshal(rec)
	slow := &hosttest.Fake{Files: map[string][]byte{"/srv/tale/.taledeploy/lock/owner.json": data}}
	l = &HeldLock{h: slow, path: "/srv/tale/.taledeploy/lock", rec: rec, lastOK: long}
	if err := l.Owned(); err != nil {
		t.Errorf("owned on a host that answers again: %v", err)
	}
}
