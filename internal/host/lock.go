package host

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"taledeploy/internal/stack"
	"time"
)

// A held lock is refreshed every heartbeatEvery; one not refreshed for
// lockStaleAfter belongs to a command that died (or lost its connection).
// Errors of the lock a caller can act on.
var (
	ErrLocked   = errors.New("host is locked")
	ErrLockLost = errors.New("this command no longer holds the host's lock")
)

// LockedError is a lock another command holds, or one whose record cannot be read.
type LockedError struct {
	Host       string
	Holder     *Lock // nil when Unreadable
	Unreadable error
	Releasing  bool // asked by a release without force
}

func (e *LockedError) Error() string {
	switch {
	case e.Unreadable != nil:
		return fmt.Sprintf("%v: %v", ErrLocked, e.Unreadable)
	case e.Releasing:
		return fmt.Sprintf("%v: %s holds it and may still be running: %s", ErrLocked, e.Host, e.Holder.Describe(time.Now()))
	}
	return fmt.Sprintf("%v: %s holds it: %s", ErrLocked, e.Host, e.Holder.Describe(time.Now()))
}

// Unwrap is ErrLocked, except for an unreadable record met by a release,
// which is no other command's.
func (e *LockedError) Unwrap() error {
	if e.Unreadable != nil && e.Releasing {
		return e.Unreadable
	}
	return ErrLocked
}

// LockLostError is a command whose lock another command took over or removed.
type LockLostError struct{ Host, Why string }

func (e *LockLostError) Error() string {
	return fmt.Sprintf("%v on %s: %s. Nothing more is done here", ErrLockLost, e.Host, e.Why)
}

func (e *LockLostError) Unwrap() error { return ErrLockLost }

const (
	heartbeatEvery = 3 * time.Second
	lockStaleAfter = 20 * time.Second
	// lockLostAfter: a holder whose heartbeat has not reached the host for
	// this long stops before its next step that changes the host, well
	// before others may judge its lock stale.
	lockLostAfter = 10 * time.Second
)

// Lock is the owner record of a host lock, lock/owner.json.
type Lock struct {
	Token   string `json:"token"`
	Who     string `json:"who"`
	Machine string `json:"machine"`
	// MachineID tells the holder's machine apart from another with the same
	// hostname (cloned CI machines, containers); see thisMachine.
	MachineID string    `json:"machine_id,omitempty"`
	PID       int       `json:"pid"`
	Command   string    `json:"command"`
	Since     time.Time `json:"since"`
	Heartbeat time.Time `json:"heartbeat"`
	Step      string    `json:"step,omitempty"`    // the step running or last finished
	Color     string    `json:"color,omitempty"`   // the color being started
	Release   string    `json:"release,omitempty"` // the release being deployed

	// age is how long ago the record was last written, by the host's clock;
	// ageKnown is false where the host could not say.
	age      time.Duration
	ageKnown bool
}

// Stale says why the lock's holder is gone, or "" when it may still run.
func (l *Lock) Stale(now time.Time) string {
	if l.MachineID != "" && l.MachineID == ThisMachine() && l.PID > 0 && !processAlive(l.PID) {
		return fmt.Sprintf("its process (pid %d on this machine) is gone", l.PID)
	}
	if age := l.lastSeen(now); age > lockStaleAfter {
		return fmt.Sprintf("its holder has not been seen for %s", age.Round(time.Second))
	}
	return ""
}

// lastSeen is how long ago the holder last wrote its record: by the host's
// clock when the host said, else by comparing ours with the recorded time.
func (l *Lock) lastSeen(now time.Time) time.Duration {
	if l.ageKnown {
		return l.age
	}
	return now.Sub(l.Heartbeat)
}

// ThisMachine identifies the kernel boot and process namespace this command
// runs in: Linux's boot id (random on every boot, so cloned machines with one
// hostname differ) and the pid namespace (containers on one host differ). A pid
// means the same process only where both match. "" where there is no such
// thing (then only the heartbeat counts).
func ThisMachine() string {
	boot, err1 := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, err2 := os.Readlink("/proc/self/ns/pid")
	if err1 != nil || err2 != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
}

// Describe says who holds the lock and what it was doing, for messages.
func (l *Lock) Describe(now time.Time) string {
	s := fmt.Sprintf("%q by %s (pid %d on %s) since %s", l.Command, cmp.Or(l.Who, "unknown"), l.PID, cmp.Or(l.Machine, "unknown"),
		l.Since.Local().Format(time.DateTime))
	if l.Step != "" {
		s += ", at step " + l.Step
	}
	return s + fmt.Sprintf(", last seen %s ago", l.lastSeen(now).Round(time.Second))
}

// ReadLock returns the host's lock, or nil when the stack is not locked. How
// long ago its holder last wrote it is asked of the host at the same time, so
// that staleness is judged by the host's clock alone: a laptop whose clock is
// off, or that slept, must not take a live lock.
func ReadLock(ctx context.Context, h Conn, s *stack.Stack) (*Lock, error) {
	q := &Facts{}
	owner := q.Cat(s.Paths().Lock() + "/owner.json")
	age := q.Age(s.Paths().Lock() + "/owner.json")
	as, err := q.Run(ctx, h)
	if err != nil {
		return nil, err
	}
	l, err := parseLock(s.Paths().Lock(), as[owner])
	if l != nil {
		l.age, l.ageKnown = parseAge(as[age])
	}
	return l, err
}

// parseAge reads the host's time and the file's modification time, as
// Facts.Age asks them; false when the host could not tell (no date -r).
func parseAge(a Answer) (time.Duration, bool) {
	f := strings.Fields(string(a.Out))
	if a.Code != 0 || len(f) != 2 {
		return 0, false
	}
	now, err1 := strconv.ParseInt(f[0], 10, 64)
	then, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(max(now-then, 0)) * time.Second, true
}

// parseLock reads the owner record of the lock folder dir, as Facts.Cat
// read it: nil when there is no lock.
func parseLock(dir string, a Answer) (*Lock, error) {
	if a.Code == CodeMissing {
		return nil, nil
	}
	if err := a.Err(dir + "/owner.json"); err != nil {
		return nil, err
	}
	var l Lock
	if err := json.Unmarshal(a.Out, &l); err != nil {
		return nil, fmt.Errorf("lock record %s/owner.json is corrupt: %v", dir, err)
	}
	return &l, nil
}

func readLockAt(ctx context.Context, h Conn, dir string) (*Lock, error) {
	data, err := h.ReadFile(ctx, dir+"/owner.json")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l Lock
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("lock record %s/owner.json is corrupt: %v", dir, err)
	}
	return &l, nil
}

// ReleaseLock removes the stack's lock. A lock whose holder may still run is
// removed only with force.
func ReleaseLock(ctx context.Context, h Conn, s *stack.Stack, force bool) (string, error) {
	l, err := ReadLock(ctx, h, s)
	if err != nil {
		if !force {
			return "", &LockedError{Host: h.Name(), Unreadable: err, Releasing: true}
		}
		return "removed a corrupt lock", h.Remove(ctx, s.Paths().Lock())
	}
	if l == nil {
		return "not locked", nil
	}
	why := l.Stale(time.Now())
	if why == "" && !force {
		return "", &LockedError{Host: h.Name(), Holder: l, Releasing: true}
	}
	if err := breakLock(ctx, h, s.Paths().Lock(), l.Token); err != nil {
		return "", err
	}
	if why == "" {
		why = "forced"
	}
	return fmt.Sprintf("released the lock of %s (%s)", l.Command, why), nil
}
