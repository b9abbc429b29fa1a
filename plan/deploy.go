// Package plan is the plan of a push and the algorithms that carry it out on
// one host or a fleet: lock, check, prepare, push, rollback, the migrate
// contract. It reaches hosts only through the host package's Conn, so tests
// give it an in-process fake (internal/host/hosttest).
package plan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/images"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// Errors a caller can act on.
var (
	ErrInconsistent = errors.New("host state disagrees with its record")
	ErrUnhealthy    = errors.New("new color failed its health checks")
	ErrNoRollback   = errors.New("nothing to roll back to")
	ErrStateful     = errors.New("stateful service definition changed")
	ErrCaddyfile    = errors.New("caddy rejects the new Caddyfile")
	ErrWindow       = errors.New("new release failed after the switch")
	// ErrAfterSwitch marks a failure once traffic had moved: the host changed.
	ErrAfterSwitch = errors.New("traffic had already moved to the new color")
)

// Event reports one finished step on one host.
type Event struct {
	Host     string        `json:"host"`
	Step     string        `json:"step"`
	Status   string        `json:"status"` // running, ok, failed
	Duration time.Duration `json:"duration_ns"`
	Message  string        `json:"message,omitempty"`
	// Log holds the last log lines of the containers a failed step is about.
	Log string `json:"log,omitempty"`
	// Sent and Total are a transfer's bytes so far and in all, on progress
	// events (Status "progress") of a step that sends images.
	Sent  int64 `json:"sent,omitempty"`
	Total int64 `json:"total,omitempty"`
}

// Options tune a push.
type Options struct {
	Who              string // user@machine, recorded
	GitRevision      string
	Release          string // release id; made from the time when empty
	RollbackTo       string // the release a rollback starts; "" for the previous one
	RecreateStateful bool   // allow a changed stateful service to be recreated
	Repair           bool   // rebuild a record that disagrees with the host
	SkipPreflight    bool   // start the new color even if memory or disk look short
}

// Deployer carries out commands on one host: Lock, then Check, whose result
// every later command takes.
type Deployer struct {
	Host   host.Conn
	Stack  *stack.Stack
	Opts   Options
	Report func(Event)
	// Images are the release's images, built here once for every host; nil
	// when the host builds them (or pulls them) itself.
	Images *images.Release

	lock  *host.HeldLock
	stale *host.Lock // a dead command's lock this deployer took over
}

// Current is what Check found on the host: the record, the color that serves
// and the containers. Push, rollback and the migrate contract start from it.
type Current struct {
	State      *host.State // nil on an empty host
	Live       string      // color serving traffic, "" on an empty host
	Containers []host.Container
}

// OlderReleases lists the containers on the host that do not belong to the live
// color: stopped ones kept for rollback included.
func (c *Current) OlderReleases() []host.Container {
	var out []host.Container
	for _, ctr := range c.Containers {
		if ctr.Color != "" && ctr.Color != c.Live {
			out = append(out, ctr)
		}
	}
	return out
}

// lost asks the connection, once more, whether it is gone.
func lost(h host.Conn) bool {
	l, ok := h.(interface{ Lost() bool })
	return ok && l.Lost()
}

// step runs fn as the named step and reports it. A step that changes what runs
// or what is recorded first makes sure this command still holds the lock.
func (d *Deployer) step(name string, changes bool, fn func() (string, error)) error {
	start := time.Now()
	if d.lock != nil {
		d.lock.SetStep(name)
	}
	if d.Report != nil {
		d.Report(Event{Host: d.Host.Name(), Step: name, Status: "running"})
	}
	var (
		msg string
		err error
	)
	if d.lock != nil && changes {
		// Another command may have taken the lock over (it judged this one
		// dead): then this one must not touch the host any more.
		err = d.lock.Owned()
	}
	if err == nil {
		msg, err = fn()
	}
	if err != nil && !errors.Is(err, remote.ErrDisconnected) {
		// Whatever failed, a dead connection is the reason to report: the
		// command stops and the next one picks up from what runs.
		if lost(d.Host) {
			err = fmt.Errorf("%s: %w (%v); nothing more was done on the host: run the same command again, it picks up from what runs", d.Host.Name(), remote.ErrDisconnected, err)
		}
	}
	ev := Event{Host: d.Host.Name(), Step: name, Status: "ok", Duration: time.Since(start), Message: msg}
	if err != nil {
		ev.Status, ev.Message = "failed", err.Error()
		if le := (*logError)(nil); errors.As(err, &le) {
			ev.Log = le.log
		}
	}
	if d.Report != nil {
		d.Report(ev)
	}
	return err
}

// proxy is the stack's Caddy on this deployer's host.
func (d *Deployer) proxy() *host.Caddy { return host.NewCaddy(d.Host, d.Stack) }

// Lock takes the host lock. A lock left by a command that died is taken over, and
// Check then brings the host's record back in line with what runs.
func (d *Deployer) Lock(ctx context.Context, command string) error {
	return d.step("lock", false, func() (string, error) {
		machine, _ := os.Hostname()
		l, stale, err := host.AcquireLock(ctx, d.Host, d.Stack, host.Lock{Who: d.Opts.Who, Machine: machine, MachineID: host.ThisMachine(), PID: os.Getpid(), Command: command})
		if err != nil {
			return "", err
		}
		d.lock, d.stale = l, stale
		if stale != nil {
			return fmt.Sprintf("took over the lock of an interrupted %s (%s)", stale.Command, stale.Stale(time.Now())), nil
		}
		return "", nil
	})
}

// Unlock releases the lock if this deployer holds it.
func (d *Deployer) Unlock(ctx context.Context) error {
	if d.lock == nil {
		return nil
	}
	// Unlock must happen even when the command's context was cancelled.
	err := d.lock.Release(context.WithoutCancel(ctx))
	d.lock = nil
	return err
}

// Check reads the recorded state and compares it with what runs. Where they
// disagree it refuses, unless a deploy was interrupted here (its stale lock was
// taken over) or Repair is set: then the record is rebuilt from what runs.
func (d *Deployer) Check(ctx context.Context) (*Current, error) {
	var cur *Current
	err := d.step("check", false, func() (string, error) {
		s := d.Stack
		if d.stale != nil {
			d.recordInterrupted(ctx)
		}
		st, stErr := d.readState(ctx)
		o, err := host.Observe(ctx, d.Host, s)
		if err != nil {
			return "", err
		}
		// Negotiated with the engine by Observe's first request: no round trip.
		s.EngineAPI = host.Engine(d.Host).ClientVersion()
		probs := o.Disagreements(s, st, stErr)
		if len(probs) == 0 {
			cur = &Current{State: st, Live: o.Live, Containers: o.Containers}
			if st == nil {
				return "empty host: first push", nil
			}
			return fmt.Sprintf("live: %s, release %s", st.Active, st.Release), nil
		}
		if d.stale == nil && !d.Opts.Repair {
			return "", &InconsistentError{Host: d.Host.Name(), Problems: probs}
		}
		if stErr != nil {
			st = nil
		}
		nst := o.Rebuild(s, st, d.Opts.Who)
		if nst == nil {
			if err := d.Host.Remove(ctx, s.Paths().State()); err != nil {
				return "", err
			}
		} else {
			if err := host.WriteState(ctx, d.Host, s, nst); err != nil {
				return "", err
			}
			// The gate admits the color that serves and only that one: an
			// interrupted switch may have left both admitted, or none.
			if err := d.proxy().Admit(ctx, nst.Active); err != nil {
				return "", err
			}
			if err := d.proxy().Retire(ctx, stack.Other(nst.Active)); err != nil {
				return "", err
			}
		}
		cur = &Current{State: nst, Live: o.Live, Containers: o.Containers}
		why := "repaired the record"
		if d.stale != nil {
			why = fmt.Sprintf("a %s was interrupted (at step %s); converged", d.stale.Command, cmp.Or(d.stale.Step, "unknown"))
		}
		now := "nothing serves"
		if nst != nil {
			now = fmt.Sprintf("%s serves release %s", nst.Active, nst.Release)
			if nst.Previous != nil {
				now += fmt.Sprintf(", rollback to %s release %s", nst.Previous.Color, nst.Previous.Release)
			}
		}
		return fmt.Sprintf("%s: %s (was: %s)", why, now, strings.Join(probs, "; ")), nil
	})
	return cur, err
}

// readState is the host's record: as the lock read it, when it did.
func (d *Deployer) readState(ctx context.Context) (*host.State, error) {
	if d.lock != nil {
		if data, missing, ok := d.lock.Record(); ok && missing {
			return nil, nil
		} else if ok {
			return host.ParseState(d.Stack, data)
		}
	}
	return host.ReadState(ctx, d.Host, d.Stack)
}

// InconsistentError is a host whose record disagrees with what runs there.
type InconsistentError struct {
	Host     string
	Problems []string
}

func (e *InconsistentError) Error() string {
	return fmt.Sprintf("%v on %s: %s", ErrInconsistent, e.Host, strings.Join(e.Problems, "; "))
}

func (e *InconsistentError) Unwrap() error { return ErrInconsistent }
