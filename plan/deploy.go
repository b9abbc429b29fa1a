package plan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"taledeploy/internal/host"
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
}

// Options tune a push.
type Options struct {
	Who              string // user@machine, recorded
	GitRevision      string
	Release          string // release id; made from the time when empty
	RecreateStateful bool   // allow a changed stateful service to be recreated
	Repair           bool   // rebuild a record that disagrees with the host
	SkipPreflight    bool   // start the new color even if memory or disk look short
}

// Deployer carries out pushes and rollbacks on one host.
type Deployer struct {
	Host   host.Conn
	Stack  *stack.Stack
	Opts   Options
	Report func(Event)

	lock   *host.HeldLock
	stale  *host.Lock // a dead command's lock this deployer took over
	state  *host.State
	live   string // color serving traffic now, "" on an empty host
	before string // color that served when the command began
	cs     []host.Container

	target           *pushTarget
	changed, missing []string // stateful services to recreate or start
	validated        bool     // the running Caddy accepted this stack's Caddyfile
	composeSum       string   // see Stack.composeSum
	applied          []string // migrations this push applied, for the history
}

// lost asks the connection, once more, whether it is gone.
func lost(h host.Conn) bool {
	l, ok := h.(interface{ Lost() bool })
	return ok && l.Lost()
}

// changesHost are the steps that change what runs or what is recorded: each
// first makes sure this command still holds the lock.
var changesHost = map[string]bool{"stateful": true, "migrate": true, "start": true, "switch": true, "stop": true, "record": true}

func (d *Deployer) step(name string, fn func() (string, error)) error {
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
	if d.lock != nil && changesHost[name] {
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

// Lock takes the host lock. A lock left by a command that died is taken over, and
// Check then brings the host's record back in line with what runs.
func (d *Deployer) Lock(ctx context.Context, command string) error {
	return d.step("lock", func() (string, error) {
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
func (d *Deployer) Check(ctx context.Context) error {
	return d.step("check", func() (string, error) {
		s := d.Stack
		if d.stale != nil {
			d.recordInterrupted(ctx)
		}
		st, stErr := host.ReadState(ctx, d.Host, s)
		o, err := host.Observe(ctx, d.Host, d.Stack)
		if err != nil {
			return "", err
		}
		d.cs = o.Containers
		probs := o.Disagreements(s, st, stErr)
		if len(probs) == 0 {
			d.state, d.live, d.before = st, o.Live, o.Live
			if st == nil {
				return "empty host: first push", nil
			}
			return fmt.Sprintf("live: %s, release %s", st.Active, st.Release), nil
		}
		if d.stale == nil && !d.Opts.Repair {
			return "", fmt.Errorf("%w on %s: %s. Run `taledeploy status ENV` to see what runs; `taledeploy push ENV --repair` rebuilds the record from what runs, then pushes",
				ErrInconsistent, d.Host.Name(), strings.Join(probs, "; "))
		}
		if stErr != nil {
			st = nil
		}
		nst := o.Rebuild(s, st, d.Opts.Who)
		if nst == nil {
			if err := d.Host.Remove(ctx, s.StatePath()); err != nil {
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
		d.state, d.live, d.before = nst, o.Live, o.Live
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
}

// pushTarget is what a push deploys: decided by Prepare, carried out by Push.
type pushTarget struct {
	color, release string
	start          time.Time
}

// Prepare gets a push ready without touching what serves: it uploads the
// release's files and runs the preflight checks. A fleet push prepares every
// host before it deploys the first. Lock and Check must have succeeded.
func (d *Deployer) Prepare(ctx context.Context) (err error) {
	t := &pushTarget{color: stack.Blue, release: d.Opts.Release, start: time.Now()}
	if d.live != "" {
		t.color = stack.Other(d.live)
	}
	if t.release == "" {
		t.release = NewRelease(t.start, d.Opts.GitRevision)
	}
	if d.lock != nil {
		d.lock.SetTarget(t.color, t.release)
	}
	defer func() {
		if err != nil {
			d.history(context.WithoutCancel(ctx), "push", t.release, t.color, t.start, err)
		}
	}()
	if err := d.step("upload", func() (string, error) { return d.upload(ctx) }); err != nil {
		return err
	}
	if err := d.step("preflight", func() (string, error) { return d.preflight(ctx, t.color, t.release) }); err != nil {
		return err
	}
	d.target = t
	return nil
}

// Push deploys the stack's working tree as a new release on the idle color:
// build, start, verify, switch, drain, stop, record. It prepares first unless
// Prepare already ran.
func (d *Deployer) Push(ctx context.Context) (err error) {
	if d.target == nil {
		if err := d.Prepare(ctx); err != nil {
			return err
		}
	}
	s := d.Stack
	newColor, release, start := d.target.color, d.target.release, d.target.start
	env := host.ComposeEnv(d.Stack, newColor, release)
	started := false
	switched := false
	defer func() {
		// Another command that took the lock over owns the host now: undo nothing.
		if err != nil && !switched && started && !errors.Is(err, host.ErrLockLost) {
			// Traffic never moved: remove the new color, so the host is as it was.
			cctx := context.WithoutCancel(ctx)
			_ = d.step("remove-new", func() (string, error) {
				_, rerr := host.RunCompose(cctx, d.Host, d.Stack, newColor, env, "down", "--remove-orphans")
				return s.ColorProject(newColor) + " serves nothing and was removed", rerr
			})
		}
		d.history(context.WithoutCancel(ctx), "push", release, newColor, start, err)
	}()

	if err := d.step("build", func() (string, error) {
		_, err := host.RunCompose(ctx, d.Host, d.Stack, newColor, env, append([]string{"build"}, s.Stateless...)...)
		return s.ColorProject(newColor), err
	}); err != nil {
		return err
	}
	if err := d.step("stateful", func() (string, error) { return d.stateful(ctx, newColor, release) }); err != nil {
		return err
	}
	if len(s.Migrations) > 0 {
		if err := d.step("migrate", func() (string, error) { return d.migrateExpand(ctx, newColor, release) }); err != nil {
			return err
		}
	}
	started = true
	if err := d.step("start", func() (string, error) {
		if d.state != nil && d.state.Previous != nil && d.state.Previous.Color == newColor {
			// The color kept for rollback is about to be replaced: the record must
			// not offer it any more, even if this push never finishes.
			d.state.Previous = nil
			if err := host.WriteState(ctx, d.Host, s, d.state); err != nil {
				return "", err
			}
		}
		_, err := host.RunCompose(ctx, d.Host, d.Stack, newColor, env, append([]string{"up", "-d", "--no-deps", "--remove-orphans"}, s.Stateless...)...)
		return s.ColorProject(newColor), err
	}); err != nil {
		return err
	}
	return d.finish(ctx, "push", newColor, release, start, &switched)
}

// Rollback brings back the previous color, whose containers were kept stopped.
func (d *Deployer) Rollback(ctx context.Context) (err error) {
	s := d.Stack
	start := time.Now()
	if d.state == nil || d.state.Previous == nil {
		if log, err := host.ReadMigrations(ctx, d.Host, s); err == nil && log.Contract != nil && d.state != nil && log.Contract.Release == d.state.Release {
			return fmt.Errorf("%w on %s: contract migrations (%s) ran with release %s at %s and the older release was removed: its code would not work with the database any more. Push a fix forward instead",
				ErrNoRollback, d.Host.Name(), strings.Join(log.Contract.Files, ", "), log.Contract.Release, log.Contract.At.Format(time.RFC3339))
		}
		return fmt.Errorf("%w on %s: no previous color is recorded (the first push, or a failed push replaced it)", ErrNoRollback, d.Host.Name())
	}
	prev := *d.state.Previous
	var old []host.Container
	for _, c := range d.cs {
		if c.Project == s.ColorProject(prev.Color) {
			old = append(old, c)
		}
	}
	if got := host.Services(old); !slices.Equal(got, slices.Sorted(slices.Values(s.Stateless))) {
		return fmt.Errorf("%w on %s: the containers of %s are gone (have %v); push instead", ErrNoRollback, d.Host.Name(), s.ColorProject(prev.Color), got)
	}
	switched := false
	defer func() {
		if err != nil && !switched && !errors.Is(err, host.ErrLockLost) {
			// Put the previous color back to sleep: it was stopped before we began.
			_, _ = d.Host.Run(context.WithoutCancel(ctx), remote.Cmd{Argv: append([]string{"docker", "stop"}, host.IDs(old)...)})
		}
		d.history(context.WithoutCancel(ctx), "rollback", prev.Release, prev.Color, start, err)
	}()
	if err := d.step("start", func() (string, error) {
		_, err := d.Host.Run(ctx, remote.Cmd{Argv: append([]string{"docker", "start"}, host.IDs(old)...)})
		return fmt.Sprintf("%s (release %s)", s.ColorProject(prev.Color), prev.Release), err
	}); err != nil {
		return err
	}
	return d.finish(ctx, "rollback", prev.Color, prev.Release, start, &switched)
}

// finish verifies the new color, switches traffic to it, drains and stops the old
// color, and records the result: the part push and rollback share.
func (d *Deployer) finish(ctx context.Context, action, newColor, release string, start time.Time, switched *bool) error {
	s := d.Stack
	if err := d.step("verify", func() (string, error) { return d.verify(ctx, newColor) }); err != nil {
		return err
	}
	if err := d.step("switch", func() (string, error) {
		return "traffic to " + newColor, d.switchTo(ctx, newColor, false)
	}); err != nil {
		if d.live != "" && !errors.Is(err, host.ErrLockLost) {
			// Keep traffic where it was: the new color may have been admitted.
			_ = d.proxy().Retire(context.WithoutCancel(ctx), newColor)
		}
		return err
	}
	*switched = true
	// Traffic has moved: from here on an interrupt (Ctrl-C) no longer stops
	// the command. Cutting the drain short, or stopping the old color without
	// recording the new one, would leave the record naming a color the gate no
	// longer admits. Every remaining step is bounded by its own timeout.
	ctx = context.WithoutCancel(ctx)
	old := stack.Other(newColor)
	if d.live != "" && s.VerifyWindow.Duration > 0 {
		if err := d.step("window", func() (string, error) {
			msg, err := d.watch(ctx, newColor)
			if err != nil && !errors.Is(err, remote.ErrDisconnected) {
				// Read while the failing color still runs.
				err = d.withLogs(context.WithoutCancel(ctx), newColor, err)
			}
			return msg, err
		}); err != nil {
			if errors.Is(err, remote.ErrDisconnected) && lost(d.Host) {
				// Traffic had moved: the host changed, whatever the connection did.
				return fmt.Errorf("%w: %w", ErrAfterSwitch, err)
			}
			// The old color still runs: give it the traffic back. A host that
			// only answered slowly is asked again, never left on a failing release.
			cctx := context.WithoutCancel(ctx)
			if berr := d.step("switch-back", func() (string, error) {
				if err := d.switchTo(cctx, old, true); err != nil {
					return "", err
				}
				// The failing color is removed next: let it finish what it has.
				msg, err := d.proxy().Drain(cctx, newColor)
				return "traffic back to " + old + "; " + msg, err
			}); berr != nil {
				return fmt.Errorf("%w: %w", ErrAfterSwitch, errors.Join(err, berr))
			}
			*switched = false
			return fmt.Errorf("%w; traffic is back on %s (release %s)", err, old, d.state.Release)
		}
	}
	if d.live != "" {
		// From here on the new color serves; a failure still records it as live.
		_ = d.step("drain", func() (string, error) { return d.proxy().Drain(ctx, old) })
		_ = d.step("stop", func() (string, error) {
			// Ask again: this command may have started the old color's containers
			// (a rollback right after a push).
			cs, err := host.Inspect(context.WithoutCancel(ctx), d.Host, s.Project, s.ColorProject(old))
			if err != nil {
				return "", err
			}
			var olds []host.Container
			for _, c := range cs {
				if c.Running() {
					olds = append(olds, c)
				}
			}
			if len(olds) == 0 {
				return "nothing running", nil
			}
			// docker stop honours each container's stop_grace_period; they are kept for rollback.
			_, err = d.Host.Run(context.WithoutCancel(ctx), remote.Cmd{Argv: append([]string{"docker", "stop"}, host.IDs(olds)...)})
			return fmt.Sprintf("%s stopped and kept for rollback", s.ColorProject(old)), err
		})
	}
	err := d.step("record", func() (string, error) {
		cs, err := host.InspectStack(ctx, d.Host, s)
		if err != nil {
			return "", err
		}
		d.cs = cs
		st := &host.State{Project: s.Project, Active: newColor, Release: release, Images: map[string]string{},
			DeployedBy: d.Opts.Who, DeployedAt: time.Now().UTC(), GitRevision: d.Opts.GitRevision}
		if action == "rollback" && d.state != nil {
			st.GitRevision = ""
		}
		for _, c := range cs {
			if c.Project == s.ColorProject(newColor) {
				st.Images[c.Service] = c.Image
			}
		}
		switch {
		case d.composeSum != "":
			st.ComposeSum, st.Stateful = d.composeSum, map[string]string{}
			for _, c := range cs {
				if c.Project == s.Project && slices.Contains(s.Stateful, c.Service) {
					st.Stateful[c.Service] = c.ConfigHash
				}
			}
		case d.state != nil:
			st.ComposeSum, st.Stateful = d.state.ComposeSum, d.state.Stateful
		}
		if d.live != "" && d.state != nil {
			st.Previous = &host.Slot{Color: d.live, Release: d.state.Release}
		}
		if err := host.WriteState(ctx, d.Host, s, st); err != nil {
			return "", err
		}
		d.state, d.live = st, newColor
		return fmt.Sprintf("%s live with release %s in %.1fs", newColor, release, time.Since(start).Seconds()), nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s serves release %s, but the record was not written; `taledeploy status ENV` shows it and `taledeploy push ENV --repair` rebuilds it): %w",
			ErrAfterSwitch, newColor, release, err)
	}
	return nil
}

// proxy is the stack's Caddy on this deployer's host.
func (d *Deployer) proxy() *host.Caddy { return host.NewCaddy(d.Host, d.Stack) }
