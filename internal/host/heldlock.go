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
	// state is the stack's record as read when the lock was taken; see Record.
	state      Answer
	stateKnown bool
	wake       chan struct{}
	done       chan struct{}
	wg         sync.WaitGroup
}

// AcquireLock takes the stack's lock. A lock whose holder is gone is taken over
// and returned as stale, so the caller can clean up after it.
//
// Each try is one command on the host: make the stack's folder, take the
// lock in one rename (so no one ever sees a lock without an owner), and read
// its owner (ours, or the holder's with its age by the host's clock) and the
// stack's record, which the caller reads next.
func AcquireLock(ctx context.Context, h Conn, s *stack.Stack, rec Lock) (held *HeldLock, stale *Lock, err error) {
	lockPath := s.Paths().Lock()
	for range 3 {
		rec.Token = newToken()
		rec.Since, rec.Heartbeat = time.Now().UTC(), time.Now().UTC()
		data, _ := json.Marshal(rec)
		q := &Facts{}
		mkdir := q.Mkdir(s.Paths().Meta(), 0o700)
		take := q.Lock(lockPath, rec.Token, data)
		owner := q.Cat(lockPath + "/owner.json")
		age := q.Age(lockPath + "/owner.json")
		state := q.Cat(s.Paths().State())
		as, err := q.Run(ctx, h)
		if err != nil {
			return nil, nil, fmt.Errorf("take lock: %w", err)
		}
		if err := as[mkdir].Err("mkdir " + s.Paths().Meta()); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", s.Paths().Meta(), err)
		}
		switch as[take].Code {
		case 0:
			l := &HeldLock{h: h, path: lockPath, rec: rec, lastOK: time.Now(), wake: make(chan struct{}, 1), done: make(chan struct{})}
			l.state, l.stateKnown = as[state], true
			l.wg.Add(1)
			go l.heartbeat()
			return l, stale, nil
		case CodeHeld:
		default:
			return nil, nil, fmt.Errorf("take lock %s: %w", lockPath, as[take].Err("take lock"))
		}
		cur, err := parseLock(lockPath, as[owner])
		if err != nil {
			return nil, nil, &LockedError{Host: h.Name(), Unreadable: err}
		}
		if cur == nil {
			continue // released meanwhile
		}
		cur.age, cur.ageKnown = parseAge(as[age])
		why := cur.Stale(time.Now())
		if why == "" {
			return nil, nil, &LockedError{Host: h.Name(), Holder: cur}
		}
		if err := breakLock(ctx, h, lockPath, cur.Token); err != nil {
			return nil, nil, err
		}
		stale = cur
	}
	return nil, nil, fmt.Errorf("%w: %s: the lock changed hands several times while taking it; try again", ErrLocked, h.Name())
}

// Record is the stack's record (state.json) as it was read while the lock was
// taken: nothing else changes it while the lock is held. It is given once; ok
// is false after that, or when it could not be read.
func (l *HeldLock) Record() (data []byte, missing, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, known := l.state, l.stateKnown
	l.state, l.stateKnown = Answer{}, false
	switch {
	case !known:
		return nil, false, false
	case a.Code == CodeMissing:
		return nil, true, true
	case a.Code != 0:
		return nil, false, false
	}
	return a.Out, false, true
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
// says so when it is not. The check and the removal are one command.
func (l *HeldLock) Release(ctx context.Context) error {
	close(l.done)
	l.wg.Wait()
	q := &Facts{}
	owner := q.Cat(l.path + "/owner.json")
	unlock := q.Unlock(l.path, `"token":"`+l.rec.Token+`"`)
	as, err := q.Run(ctx, l.h)
	if err != nil {
		return err
	}
	switch as[unlock].Code {
	case 0:
		return nil
	case CodeMissing:
		return fmt.Errorf("%w on %s: the lock was removed while this command ran", ErrLockLost, l.h.Name())
	case CodeHeld:
		cur, err := parseLock(l.path, as[owner])
		if err != nil {
			return err
		}
		if cur == nil || cur.Token == l.rec.Token {
			return fmt.Errorf("release the lock %s: it changed while being released", l.path)
		}
		return fmt.Errorf("%w on %s: another command took it over while this one ran: %s", ErrLockLost, l.h.Name(), cur.Describe(time.Now()))
	}
	return fmt.Errorf("release the lock %s: %w", l.path, as[unlock].Err("remove"))
}
