package host

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"taledeploy/internal/stack"
	"taledeploy/remote"
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
	var (
		age   time.Duration
		known bool
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		age, known = recordAge(ctx, h, s.LockPath()+"/owner.json")
	}()
	l, err := readLockAt(ctx, h, s.LockPath())
	<-done
	if l != nil {
		l.age, l.ageKnown = age, known
	}
	return l, err
}

// recordAge asks the host, in one command, for its time and the file's
// modification time; false when it cannot tell (no such file, no date -r).
func recordAge(ctx context.Context, h Conn, file string) (time.Duration, bool) {
	out, err := h.Run(ctx, remote.Cmd{Argv: []string{"sh", "-c", `date +%s && date -r "$1" +%s`, "sh", file}})
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, false
	}
	now, err1 := strconv.ParseInt(f[0], 10, 64)
	then, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(max(now-then, 0)) * time.Second, true
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

// HeldLock is a lock this process holds, kept alive by a heartbeat.
type HeldLock struct {
	h    Conn
	path string

	mu     sync.Mutex
	rec    Lock
	lastOK time.Time // the last heartbeat that reached the host
	lost   string    // why the lock is not ours any more, "" while it is
	wake   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

// AcquireLock takes the stack's lock. A lock whose holder is gone is taken over
// and returned as stale, so the caller can clean up after it.
func AcquireLock(ctx context.Context, h Conn, s *stack.Stack, rec Lock) (held *HeldLock, stale *Lock, err error) {
	if err := h.Mkdir(ctx, s.MetaDir(), 0o700, false); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", s.MetaDir(), err)
	}
	for range 3 {
		rec.Token = newToken()
		rec.Since, rec.Heartbeat = time.Now().UTC(), time.Now().UTC()
		ok, err := tryLock(ctx, h, s.LockPath(), rec)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			l := &HeldLock{h: h, path: s.LockPath(), rec: rec, lastOK: time.Now(), wake: make(chan struct{}, 1), done: make(chan struct{})}
			l.wg.Add(1)
			go l.heartbeat()
			return l, stale, nil
		}
		cur, err := ReadLock(ctx, h, s)
		if err != nil {
			return nil, nil, &LockedError{Host: h.Name(), Unreadable: err}
		}
		if cur == nil {
			continue // released meanwhile
		}
		why := cur.Stale(time.Now())
		if why == "" {
			return nil, nil, &LockedError{Host: h.Name(), Holder: cur}
		}
		if err := breakLock(ctx, h, s.LockPath(), cur.Token); err != nil {
			return nil, nil, err
		}
		stale = cur
	}
	return nil, nil, fmt.Errorf("%w: %s: the lock changed hands several times while taking it; try again", ErrLocked, h.Name())
}

// tryLock creates the lock folder with its owner record in one rename, so no
// one ever sees a lock without an owner. It reports false when the lock is held.
func tryLock(ctx context.Context, h Conn, lockPath string, rec Lock) (bool, error) {
	tmp := lockPath + ".new-" + rec.Token
	if err := h.Mkdir(ctx, tmp, 0o700, true); err != nil {
		return false, fmt.Errorf("take lock: %w", err)
	}
	data, _ := json.Marshal(rec)
	if err := h.WriteFile(ctx, tmp+"/owner.json", data, 0o600); err != nil {
		h.Remove(context.WithoutCancel(ctx), tmp)
		return false, fmt.Errorf("take lock: %w", err)
	}
	// rename(2) onto a folder that is not empty fails: someone holds the lock.
	if err := h.Rename(ctx, tmp, lockPath); err != nil {
		h.Remove(context.WithoutCancel(ctx), tmp)
		if l, rerr := readLockAt(ctx, h, lockPath); l != nil || rerr != nil {
			return false, nil
		}
		return false, fmt.Errorf("take lock %s: %w", lockPath, err)
	}
	return true, nil
}

// breakLock removes the lock with the given token. It moves the lock aside first
// and puts it back if it turns out to be someone else's, newer one.
func breakLock(ctx context.Context, h Conn, lockPath, token string) error {
	aside := lockPath + ".stale-" + newToken()
	if err := h.Rename(ctx, lockPath, aside); err != nil {
		if l, _ := readLockAt(ctx, h, lockPath); l == nil {
			return nil // gone already
		}
		return fmt.Errorf("clear stale lock %s: %w", lockPath, err)
	}
	if l, _ := readLockAt(ctx, h, aside); l != nil && l.Token != token {
		_ = h.Rename(ctx, aside, lockPath)
		return nil
	}
	return h.Remove(ctx, aside)
}

// ReleaseLock removes the stack's lock. A lock whose holder may still run is
// removed only with force.
func ReleaseLock(ctx context.Context, h Conn, s *stack.Stack, force bool) (string, error) {
	l, err := ReadLock(ctx, h, s)
	if err != nil {
		if !force {
			return "", &LockedError{Host: h.Name(), Unreadable: err, Releasing: true}
		}
		return "removed a corrupt lock", h.Remove(ctx, s.LockPath())
	}
	if l == nil {
		return "not locked", nil
	}
	why := l.Stale(time.Now())
	if why == "" && !force {
		return "", &LockedError{Host: h.Name(), Holder: l, Releasing: true}
	}
	if err := breakLock(ctx, h, s.LockPath(), l.Token); err != nil {
		return "", err
	}
	if why == "" {
		why = "forced"
	}
	return fmt.Sprintf("released the lock of %s (%s)", l.Command, why), nil
}

func newToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// SetStep records the step in the lock, written by the heartbeat at once.
func (l *HeldLock) SetStep(step string) {
	l.mu.Lock()
	l.rec.Step = step
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *HeldLock) SetTarget(color, release string) {
	l.mu.Lock()
	l.rec.Color, l.rec.Release = color, release
	l.mu.Unlock()
}

// heartbeat rewrites the owner record until release, so others can tell a live
// lock from one left by a dead process.
func (l *HeldLock) heartbeat() {
	defer l.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		case <-l.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = l.Beat(ctx) // a beat that fails is seen by owned()
		cancel()
	}
}

// beatScript rewrites the owner record only while it still holds this lock's
// token ($2), checked and written on the host in one command: a beat that
// arrives late (a slow host, a timed-out call) never writes over another
// holder's record, nor recreates a lock removed with --force. Exit 3: not ours.
const beatScript = `umask 077 && { grep -qF "$2" "$1/owner.json" || exit 3; } && cat > "$1/owner.json.beat" && mv -f "$1/owner.json.beat" "$1/owner.json"`

// Beat writes the owner record with a fresh heartbeat time, if the lock is
// still ours; when it is not, it records why.
func (l *HeldLock) Beat(ctx context.Context) error {
	l.mu.Lock()
	l.rec.Heartbeat = time.Now().UTC()
	data, _ := json.Marshal(l.rec)
	token := l.rec.Token
	l.mu.Unlock()
	_, err := l.h.Run(ctx, remote.Cmd{Argv: []string{"sh", "-c", beatScript, "sh", l.path, `"token":"` + token + `"`}, Stdin: bytes.NewReader(data)})
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Code == 3 {
		cur, rerr := readLockAt(ctx, l.h, l.path)
		switch {
		case rerr != nil:
			return rerr
		case cur == nil:
			l.setLost("the lock was removed (released by force?)")
		case cur.Token != token:
			l.setLost("another command took it over: " + cur.Describe(time.Now()))
		}
		return ErrLockLost
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.lastOK = time.Now()
	l.mu.Unlock()
	return nil
}

func (l *HeldLock) setLost(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == "" {
		l.lost = why
	}
}

// Owned says why this command may not change the host any more: its lock was
// taken over or removed, or no heartbeat has reached the host for too long.
func (l *HeldLock) Owned() error {
	l.mu.Lock()
	silent := time.Since(l.lastOK) > lockLostAfter
	l.mu.Unlock()
	if silent {
		// A slow host is not a lost lock: try once more, and wait for it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = l.Beat(ctx)
		cancel()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.lost != "":
		return &LockLostError{Host: l.h.Name(), Why: l.lost}
	case time.Since(l.lastOK) > lockLostAfter:
		return fmt.Errorf("%w on %s: no heartbeat has reached the host for %s, so another command may judge this one dead and take over. Nothing more is done here; run the same command again, it picks up from what runs",
			ErrLockLost, l.h.Name(), time.Since(l.lastOK).Round(time.Second))
	}
	return nil
}

// Release stops the heartbeat and removes the lock if it is still ours; it
// says so when it is not.
func (l *HeldLock) Release(ctx context.Context) error {
	close(l.done)
	l.wg.Wait()
	cur, err := readLockAt(ctx, l.h, l.path)
	switch {
	case err != nil:
		return err
	case cur == nil:
		return fmt.Errorf("%w on %s: the lock was removed while this command ran", ErrLockLost, l.h.Name())
	case cur.Token != l.rec.Token:
		return fmt.Errorf("%w on %s: another command took it over while this one ran: %s", ErrLockLost, l.h.Name(), cur.Describe(time.Now()))
	}
	return l.h.Remove(ctx, l.path)
}
