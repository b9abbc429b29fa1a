package plan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"taledeploy/remote"
)

// Errors a caller can act on.
var (
	ErrLocked       = errors.New("host is locked")
	ErrInconsistent = errors.New("host state disagrees with its record")
	ErrUnhealthy    = errors.New("new color failed its health checks")
	ErrNoRollback   = errors.New("nothing to roll back to")
	ErrStateful     = errors.New("stateful service definition changed")
	ErrCaddyfile    = errors.New("caddy rejects the new Caddyfile")
	ErrPreflight    = errors.New("not enough room for a second color")
	ErrWindow       = errors.New("new release failed after the switch")
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

// logError is a failure that comes with the last log lines of the containers
// that failed; the step's event carries them, so --json output stays pure.
type logError struct {
	err error
	log string
}

func (e *logError) Error() string { return e.err.Error() }
func (e *logError) Unwrap() error { return e.err }

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
	Host   Conn
	Stack  *Stack
	Opts   Options
	Report func(Event)

	lock   *lockHolder
	stale  *Lock // a dead command's lock this deployer took over
	state  *State
	live   string // color serving traffic now, "" on an empty host
	before string // color that served when the command began
	cs     []Container

	target           *pushTarget
	changed, missing []string // stateful services to recreate or start
	validated        bool     // the running Caddy accepted this stack's Caddyfile
	composeSum       string   // see Stack.composeSum
	applied          []string // migrations this push applied, for the history
}

func (d *Deployer) step(name string, fn func() (string, error)) error {
	start := time.Now()
	if d.lock != nil {
		d.lock.setStep(name)
	}
	if d.Report != nil {
		d.Report(Event{Host: d.Host.Name(), Step: name, Status: "running"})
	}
	msg, err := fn()
	if err != nil && !errors.Is(err, remote.ErrDisconnected) {
		// Whatever failed, a dead connection is the reason to report: the
		// command stops and the next one picks up from what runs.
		if l, ok := d.Host.(interface{ Lost() bool }); ok && l.Lost() {
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
		host, _ := os.Hostname()
		l, stale, err := acquireLock(ctx, d.Host, d.Stack, Lock{Who: d.Opts.Who, Machine: host, PID: os.Getpid(), Command: command})
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
	err := d.lock.release(context.WithoutCancel(ctx))
	d.lock = nil
	return err
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
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
		st, stErr := ReadState(ctx, d.Host, s)
		o, err := d.observe(ctx)
		if err != nil {
			return "", err
		}
		d.cs = o.cs
		probs := o.disagreements(s, st, stErr)
		if len(probs) == 0 {
			d.state, d.live, d.before = st, o.live, o.live
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
		nst := o.rebuild(s, st, d.Opts.Who)
		if nst == nil {
			if err := d.Host.Remove(ctx, s.statePath()); err != nil {
				return "", err
			}
		} else {
			if err := writeState(ctx, d.Host, s, nst); err != nil {
				return "", err
			}
			// The gate admits the color that serves and only that one: an
			// interrupted switch may have left both admitted, or none.
			if err := d.admit(ctx, nst.Active); err != nil {
				return "", err
			}
			if err := d.retire(ctx, Other(nst.Active)); err != nil {
				return "", err
			}
		}
		d.state, d.live, d.before = nst, o.live, o.live
		why := "repaired the record"
		if d.stale != nil {
			why = fmt.Sprintf("a %s was interrupted (at step %s); converged", d.stale.Command, orUnknown(d.stale.Step))
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
	t := &pushTarget{color: Blue, release: d.Opts.Release, start: time.Now()}
	if d.live != "" {
		t.color = Other(d.live)
	}
	if t.release == "" {
		t.release = NewRelease(t.start, d.Opts.GitRevision)
	}
	if d.lock != nil {
		d.lock.setTarget(t.color, t.release)
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
	env := d.composeEnv(newColor, release)
	started := false
	switched := false
	defer func() {
		if err != nil && !switched && started {
			// Traffic never moved: remove the new color, so the host is as it was.
			cctx := context.WithoutCancel(ctx)
			_ = d.step("remove-new", func() (string, error) {
				_, rerr := d.compose(cctx, newColor, env, "down", "--remove-orphans")
				return s.ColorProject(newColor) + " serves nothing and was removed", rerr
			})
		}
		d.history(context.WithoutCancel(ctx), "push", release, newColor, start, err)
	}()

	if err := d.step("build", func() (string, error) {
		_, err := d.compose(ctx, newColor, env, append([]string{"build"}, s.Stateless...)...)
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
			if err := writeState(ctx, d.Host, s, d.state); err != nil {
				return "", err
			}
		}
		_, err := d.compose(ctx, newColor, env, append([]string{"up", "-d", "--no-deps", "--remove-orphans"}, s.Stateless...)...)
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
		if log, err := ReadMigrations(ctx, d.Host, s); err == nil && log.Contract != nil && d.state != nil && log.Contract.Release == d.state.Release {
			return fmt.Errorf("%w on %s: contract migrations (%s) ran with release %s at %s and the older release was removed: its code would not work with the database any more. Push a fix forward instead",
				ErrNoRollback, d.Host.Name(), strings.Join(log.Contract.Files, ", "), log.Contract.Release, log.Contract.At.Format(time.RFC3339))
		}
		return fmt.Errorf("%w on %s: no previous color is recorded (the first push, or a failed push replaced it)", ErrNoRollback, d.Host.Name())
	}
	prev := *d.state.Previous
	var old []Container
	for _, c := range d.cs {
		if c.Project == s.ColorProject(prev.Color) {
			old = append(old, c)
		}
	}
	if got := services(old); !slices.Equal(got, sorted(s.Stateless)) {
		return fmt.Errorf("%w on %s: the containers of %s are gone (have %v); push instead", ErrNoRollback, d.Host.Name(), s.ColorProject(prev.Color), got)
	}
	switched := false
	defer func() {
		if err != nil && !switched {
			// Put the previous color back to sleep: it was stopped before we began.
			_, _ = d.Host.Run(context.WithoutCancel(ctx), remote.Cmd{Argv: append([]string{"docker", "stop"}, ids(old)...)})
		}
		d.history(context.WithoutCancel(ctx), "rollback", prev.Release, prev.Color, start, err)
	}()
	if err := d.step("start", func() (string, error) {
		_, err := d.Host.Run(ctx, remote.Cmd{Argv: append([]string{"docker", "start"}, ids(old)...)})
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
		if d.live != "" {
			// Keep traffic where it was: the new color may have been admitted.
			_ = d.retire(context.WithoutCancel(ctx), newColor)
		}
		return err
	}
	*switched = true
	old := Other(newColor)
	if d.live != "" && s.VerifyWindow.Duration > 0 {
		if err := d.step("window", func() (string, error) {
			msg, err := d.watch(ctx, newColor)
			if err != nil && !errors.Is(err, remote.ErrDisconnected) {
				// Read while the failing color still runs.
				err = d.withLogs(context.WithoutCancel(ctx), newColor, err)
			}
			return msg, err
		}); err != nil {
			if errors.Is(err, remote.ErrDisconnected) {
				return err
			}
			// The old color still runs: give it the traffic back.
			cctx := context.WithoutCancel(ctx)
			if berr := d.step("switch-back", func() (string, error) {
				if err := d.switchTo(cctx, old, true); err != nil {
					return "", err
				}
				// The failing color is removed next: let it finish what it has.
				msg, err := d.drain(cctx, newColor)
				return "traffic back to " + old + "; " + msg, err
			}); berr != nil {
				return errors.Join(err, berr)
			}
			*switched = false
			return fmt.Errorf("%w; traffic is back on %s (release %s)", err, old, d.state.Release)
		}
	}
	if d.live != "" {
		// From here on the new color serves; a failure still records it as live.
		_ = d.step("drain", func() (string, error) { return d.drain(ctx, old) })
		_ = d.step("stop", func() (string, error) {
			// Ask again: this command may have started the old color's containers
			// (a rollback right after a push).
			cs, err := inspect(context.WithoutCancel(ctx), d.Host, s.Project, s.ColorProject(old))
			if err != nil {
				return "", err
			}
			var olds []Container
			for _, c := range cs {
				if c.Running() {
					olds = append(olds, c)
				}
			}
			if len(olds) == 0 {
				return "nothing running", nil
			}
			// docker stop honours each container's stop_grace_period; they are kept for rollback.
			_, err = d.Host.Run(context.WithoutCancel(ctx), remote.Cmd{Argv: append([]string{"docker", "stop"}, ids(olds)...)})
			return fmt.Sprintf("%s stopped and kept for rollback", s.ColorProject(old)), err
		})
	}
	return d.step("record", func() (string, error) {
		cs, err := inspectStack(ctx, d.Host, s)
		if err != nil {
			return "", err
		}
		d.cs = cs
		st := &State{Project: s.Project, Active: newColor, Release: release, Images: map[string]string{},
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
			st.Previous = &Slot{Color: d.live, Release: d.state.Release}
		}
		if err := writeState(ctx, d.Host, s, st); err != nil {
			return "", err
		}
		d.state, d.live = st, newColor
		return fmt.Sprintf("%s live with release %s in %.1fs", newColor, release, time.Since(start).Seconds()), nil
	})
}

// recordInterrupted adds the command whose stale lock this one took over to the
// history: it died before it could, and what it did (a migration, say) stays on
// the host.
func (d *Deployer) recordInterrupted(ctx context.Context) {
	l := d.stale
	action := l.Command
	if f := strings.Fields(l.Command); len(f) > 1 {
		action = f[1]
	}
	e := HistoryEntry{Time: l.Heartbeat, Action: action, Release: l.Release, Color: l.Color, By: l.Who, Result: "interrupted",
		Error: fmt.Sprintf("interrupted at step %s (its process died or lost its connection)", orUnknown(l.Step)), Seconds: l.Heartbeat.Sub(l.Since).Seconds()}
	if log, err := ReadMigrations(ctx, d.Host, d.Stack); err == nil {
		for _, a := range log.Applied {
			if a.Release == l.Release && !a.At.Before(l.Since) {
				e.Migrations = append(e.Migrations, a.File)
			}
		}
	}
	_ = appendHistory(ctx, d.Host, d.Stack, e)
}

func (d *Deployer) history(ctx context.Context, action, release, color string, start time.Time, err error) {
	e := HistoryEntry{Time: time.Now().UTC(), Action: action, Release: release, Color: color, From: d.before,
		By: d.Opts.Who, GitRevision: d.Opts.GitRevision, Result: "ok", Seconds: time.Since(start).Seconds(), Migrations: d.applied}
	if err != nil {
		e.Result, e.Error = "failed", err.Error()
	}
	_ = appendHistory(ctx, d.Host, d.Stack, e)
}

// NewRelease makes a release id from the time and the git revision.
func NewRelease(t time.Time, rev string) string {
	id := t.UTC().Format("20060102-150405")
	if rev != "" {
		id += "-" + rev
	}
	return id
}

func (d *Deployer) composeEnv(color, release string) []string {
	return []string{"TALEDEPLOY_PROJECT=" + d.Stack.Project, "TALEDEPLOY_COLOR=" + color, "TALEDEPLOY_RELEASE=" + release}
}

// compose runs docker compose for the stateful project (color "") or a color.
func (d *Deployer) compose(ctx context.Context, color string, env []string, args ...string) ([]byte, error) {
	out, err := d.Host.Run(ctx, remote.Cmd{Argv: append(d.composeArgv(color), args...), Env: env})
	var ee *remote.ExitError
	if errors.As(err, &ee) && strings.Contains(ee.Stderr, "is not a docker command") {
		return out, fmt.Errorf("docker compose v2 is not installed on %s; install the Compose plugin (`taledeploy doctor` checks it): %w", d.Host.Name(), err)
	}
	return out, err
}

// lowPriority runs a command on the host below the containers that serve: the
// compose client parses, hashes and tars build contexts, and on a small VPS the
// live color must win the CPU. nice is POSIX (coreutils, busybox).
func lowPriority() []string { return []string{"nice", "-n", "10"} }

// composeArgv is docker compose with the files and project of the stateful
// project (color "") or a color.
func (d *Deployer) composeArgv(color string) []string {
	s := d.Stack
	project := s.Project
	argv := append(lowPriority(), "docker", "compose", "--project-directory", s.RemoteDir, "--env-file", s.envPath(),
		"-f", s.remote(s.ComposeFile))
	if color != "" {
		project = s.ColorProject(color)
		argv = append(argv, "-f", s.remote(s.OverlayFile(color)))
	}
	return append(argv, "-p", project)
}

// stateful makes sure the network and the stateful services run. Compose leaves a
// service alone when its definition did not change; a changed one is refused
// unless allowed, since recreating it interrupts what it serves.
func (d *Deployer) stateful(ctx context.Context, newColor, release string) (string, error) {
	s := d.Stack
	if code, err := dockerGet(ctx, d.Host, "/networks/"+s.Project, nil); code == http.StatusNotFound {
		if _, err := d.Host.Run(ctx, remote.Cmd{Argv: []string{"docker", "network", "create", "--label", "taledeploy.project=" + s.Project, s.Project}}); err != nil {
			return "", fmt.Errorf("create network %s: %w", s.Project, err)
		}
	} else if err != nil {
		return "", err
	}
	env := d.composeEnv("", release)
	changed, missing := d.changed, d.missing
	proxyRunning := slices.ContainsFunc(d.cs, func(c Container) bool {
		return c.Project == s.Project && c.Service == s.Proxy && c.Running()
	})
	if !proxyRunning {
		// The proxy starts with the current Caddyfile; the gate keeps traffic on
		// the admitted color, if any.
		p, err := s.remotePath(s.Caddyfile)
		if err != nil {
			return "", err
		}
		if err := d.Host.WriteFile(ctx, p, s.CaddyfileText(), 0o644); err != nil {
			return "", err
		}
	}
	if len(changed)+len(missing) == 0 {
		return "unchanged: " + strings.Join(s.Stateful, ", "), nil
	}
	if _, err := d.compose(ctx, "", env, append([]string{"up", "-d", "--no-deps", "--wait"}, append(changed, missing...)...)...); err != nil {
		return "", err
	}
	cs, err := inspectStack(ctx, d.Host, s)
	if err != nil {
		return "", err
	}
	d.cs = cs
	return "started " + strings.Join(append(changed, missing...), ", "), nil
}

// verify waits until every container of the color is healthy and every routed
// service answers its health path, probed from the host through the SSH connection.
func (d *Deployer) verify(ctx context.Context, color string) (string, error) {
	s := d.Stack
	ctx, cancel := context.WithTimeout(ctx, s.HealthTimeout.Duration)
	defer cancel()
	client := &http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return d.Host.Dial(ctx, "tcp", addr) },
			DisableKeepAlives: true,
		},
	}
	project := s.ColorProject(color)
	var why string
	for {
		cs, err := inspect(ctx, d.Host, s.Project, project)
		if errors.Is(err, remote.ErrDisconnected) {
			return "", err
		}
		if err == nil {
			why = d.notReady(ctx, client, cs)
			if why == "" {
				return fmt.Sprintf("%d containers healthy, %d routes answer", len(cs), len(s.Routes)), nil
			}
			if strings.HasPrefix(why, "failed:") {
				return "", d.withLogs(ctx, color, fmt.Errorf("%w: %s", ErrUnhealthy, strings.TrimPrefix(why, "failed: ")))
			}
		} else {
			why = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", d.withLogs(context.WithoutCancel(ctx), color, fmt.Errorf("%w within %s: %s", ErrUnhealthy, s.HealthTimeout.Duration, why))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// notReady says what is not ready yet ("" when all is), prefixed "failed:" when
// waiting longer cannot help.
func (d *Deployer) notReady(ctx context.Context, client *http.Client, cs []Container) string {
	s := d.Stack
	if why := d.containersNotReady(cs); why != "" {
		return why
	}
	for _, r := range s.Routes {
		i := slices.IndexFunc(cs, func(c Container) bool { return c.Service == r.Service })
		c := cs[i]
		if c.IP == "" {
			return c.Name + " has no address on network " + s.Project
		}
		url := fmt.Sprintf("http://%s%s", net.JoinHostPort(c.IP, fmt.Sprint(r.Port)), r.HealthPath)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Sprintf("%s%s: %v", c.Name, r.HealthPath, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Sprintf("%s%s answers %d", c.Name, r.HealthPath, resp.StatusCode)
		}
	}
	return ""
}

// containersNotReady says which stateless container is not ready ("" when all
// are), prefixed "failed:" when waiting longer cannot help.
func (d *Deployer) containersNotReady(cs []Container) string {
	for _, svc := range d.Stack.Stateless {
		i := slices.IndexFunc(cs, func(c Container) bool { return c.Service == svc })
		if i < 0 {
			return svc + " has no container"
		}
		c := cs[i]
		switch {
		case c.State == "exited" || c.State == "dead":
			return fmt.Sprintf("failed: %s exited", c.Name)
		case c.Health == "unhealthy":
			return fmt.Sprintf("failed: %s is unhealthy", c.Name)
		case !c.Ready():
			return fmt.Sprintf("%s is %s %s", c.Name, c.State, c.Health)
		}
	}
	return ""
}

// withLogs attaches the color's last log lines to err.
func (d *Deployer) withLogs(ctx context.Context, color string, err error) error {
	out, _ := d.compose(ctx, color, d.composeEnv(color, ""), "logs", "--no-color", "--tail", "20")
	if len(out) == 0 {
		return err
	}
	return &logError{err: err, log: fmt.Sprintf("last log lines of %s:\n%s", d.Stack.ColorProject(color), out)}
}

// admin calls Caddy's admin API on its unix socket, through the SSH connection.
func (d *Deployer) admin(ctx context.Context, method, urlPath, contentType string, body []byte) ([]byte, error) {
	sock := d.Stack.adminDir() + "/admin.sock"
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var err error
				// The socket appears a moment after Caddy starts.
				for range 50 {
					var c net.Conn
					if c, err = d.Host.Dial(ctx, "unix", sock); err == nil {
						return c, nil
					}
					select {
					case <-ctx.Done():
						return nil, ctx.Err()
					case <-time.After(100 * time.Millisecond):
					}
				}
				return nil, err
			},
			DisableKeepAlives: true,
		},
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://caddy-admin"+urlPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return data, fmt.Errorf("caddy admin %s %s: %s: %s", method, urlPath, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

// drain waits until Caddy has no request in flight to the old color, bounded by
// the drain timeout.
func (d *Deployer) drain(ctx context.Context, old string) (string, error) {
	s := d.Stack
	deadline := time.Now().Add(s.DrainTimeout.Duration)
	// Until Caddy's checks have seen the color retired it may still be chosen.
	if err := sleep(ctx, retireSettle); err != nil {
		return "", err
	}
	var olds []string
	for _, r := range s.Routes {
		olds = append(olds, fmt.Sprintf("%s-%s:%d", r.Service, old, r.Port))
	}
	for {
		data, err := d.admin(ctx, http.MethodGet, "/reverse_proxy/upstreams", "", nil)
		if err != nil {
			return "", err
		}
		var ups []struct {
			Address     string `json:"address"`
			NumRequests int    `json:"num_requests"`
		}
		if err := json.Unmarshal(data, &ups); err != nil {
			return "", fmt.Errorf("caddy upstreams: %w", err)
		}
		inflight := 0
		for _, u := range ups {
			if slices.Contains(olds, u.Address) {
				inflight += u.NumRequests
			}
		}
		if inflight == 0 {
			return "no request in flight on " + old, nil
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("drain timeout %s reached with %d requests in flight on %s; stopping it gracefully anyway", s.DrainTimeout.Duration, inflight, old), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func sorted(in []string) []string {
	out := slices.Clone(in)
	sort.Strings(out)
	return out
}
