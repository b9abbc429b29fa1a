package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"taledeploy/internal/stack"
	"taledeploy/remote"
	"time"
)

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
	if err := h.Mkdir(ctx, s.Paths().Meta(), 0o700, false); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", s.Paths().Meta(), err)
	}
	for range 3 {
		rec.Token = newToken()
		rec.Since, rec.Heartbeat = time.Now().UTC(), time.Now().UTC()
		ok, err := tryLock(ctx, h, s.Paths().Lock(), rec)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			l := &HeldLock{h: h, path: s.Paths().Lock(), rec: rec, lastOK: time.Now(), wake: make(chan struct{}, 1), done: make(chan struct{})}
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
		if err := breakLock(ctx, h, s.Paths().Lock(), cur.Token); err != nil {
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
// holder's record, nor recreates a lock removed with --force. The new record
// replaces the old only once all of it ($3 bytes) has arrived: a connection
// cut mid-beat leaves the old record, never an empty one. Exit 3: not ours.
const beatScript = `umask 077 && { grep -qF "$2" "$1/owner.json" || exit 3; } && cat > "$1/owner.json.beat" && n=$(wc -c < "$1/owner.json.beat") && [ $n -eq "$3" ] && mv -f "$1/owner.json.beat" "$1/owner.json"`

// Beat writes the owner record with a fresh heartbeat time, if the lock is
// still ours; when it is not, it records why.
func (l *HeldLock) Beat(ctx context.Context) error {
	l.mu.Lock()
	l.rec.Heartbeat = time.Now().UTC()
	data, _ := json.Marshal(l.rec)
	token := l.rec.Token
	l.mu.Unlock()
	_, err := l.h.Run(ctx, remote.Cmd{Argv: []string{"sh", "-c", beatScript, "sh", l.path, `"token":"` + token + `"`, strconv.Itoa(len(data))}, Stdin: bytes.NewReader(data)})
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
