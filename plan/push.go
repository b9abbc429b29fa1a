package plan

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moby/moby/client"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// A push, read top to bottom:
//
//	upload     send the release's files the host does not have
//	preflight  refuse early: changed stateful services, a Caddyfile Caddy
//	           rejects, unsafe migrations, too little memory or disk
//	images     send the images built here: the layers the host lacks
//	build      build the new color's images on the host (when not sent)
//	stateful   start the network and the stateful services that are missing
//	migrate    apply pending expand migrations with the new images
//	start      start the new color beside the live one    (undo: remove-new)
//	verify     wait for health checks and every route's health path
//	switch     the gate admits the new color, then retires the old one
//	                                                      (undo: switch-back)
//	window     watch the new color through Caddy; a failure undoes the switch
//	drain      wait for the old color's requests in flight
//	stop       stop the old color, kept for rollback
//	record     write the record: what serves, and what to roll back to
//	prune      remove the images of releases older than keep_releases
//
// A rollback is the same from verify on, after starting the stopped color.
// Until the switch, any failure undoes what was done, last first, so the host
// is as it was; once traffic has moved, the new color is what serves.

// A step is one named part of a push or a rollback.
type step struct {
	name string
	// changes: the step changes what runs or what is recorded, so it first
	// makes sure this command still holds the lock.
	changes bool
	// when, if set, says whether the step applies to this stack and live color.
	when func(s *stack.Stack, live string) bool
	// skip, if set, says whether this command leaves the step out.
	skip func(r *run) bool
	do   func(ctx context.Context, r *run) (string, error)
	// undo, if set, puts back what do changed (failed tells whether do itself
	// failed part way), reported as the step undoName.
	undo     func(ctx context.Context, r *run, failed bool) (string, error)
	undoName string
	// undoWhen, if set, says whether there is anything to undo.
	undoWhen func(s *stack.Stack, live string) bool
	// switches: once done, traffic has moved; the rest runs even if the command
	// is interrupted, as cutting it short would leave the record wrong.
	switches bool
	// mayFail: a failure is reported and the next step runs.
	mayFail bool
	// describe says what the step would do, for `taledeploy plan`; "" leaves
	// the step out of the preview.
	describe func(v *view) string
}

func replacesLive(_ *stack.Stack, live string) bool { return live != "" }

// pushSteps is every step of a push. The first three get a push ready without
// touching what serves; a fleet push runs them on every host first.
func pushSteps() []step {
	return []step{
		{name: "upload", do: uploadFiles, describe: describeUpload},
		{name: "preflight", do: preflight, describe: describePreflight},
		{name: "images", skip: func(r *run) bool { return !tagsImages(r) }, do: prepareImages, describe: describeImages},
		{name: "build", skip: buildsNothing, do: build, describe: describeBuild},
		{name: "stateful", changes: true, do: stateful, describe: describeStateful},
		{name: "migrate", changes: true, when: hasMigrations, do: migrateExpand, describe: describeMigrate},
		{name: "start", changes: true, do: startNew, undo: removeNew, undoName: "remove-new", describe: describeStart},
		{name: "verify", do: verifyNew, describe: describeVerify},
		switchStep(),
		{name: "window", when: watched, do: watchWindow, describe: describeWindow},
		{name: "drain", mayFail: true, when: replacesLive, do: drainOld, describe: describeDrain},
		{name: "stop", changes: true, mayFail: true, when: replacesLive, do: stopOld, describe: describeStop},
		{name: "record", changes: true, do: writeRecord, describe: describeRecord},
		{name: "prune", mayFail: true, skip: func(r *run) bool { return !tagsReleases(r) }, do: pruneImages, describe: describePrune},
	}
}

// prepareSteps counts the steps Prepare runs.
const prepareSteps = 3

func switchStep() step {
	return step{name: "switch", changes: true, switches: true, do: switchNew,
		undo: switchBack, undoName: "switch-back", undoWhen: replacesLive, describe: describeSwitch}
}

// rollbackSteps brings back the previous color, whose containers were kept stopped.
func rollbackSteps() []step {
	steps := []step{{name: "start", changes: true, do: startPrevious, undo: stopPrevious, undoName: "stop-previous"}}
	for _, st := range pushSteps() {
		if i := slices.Index([]string{"verify", "switch", "window", "drain", "stop", "record"}, st.name); i >= 0 {
			steps = append(steps, st)
		}
	}
	return steps
}

func hasMigrations(s *stack.Stack, _ string) bool { return len(s.Migrations) > 0 }

func watched(s *stack.Stack, live string) bool { return live != "" && s.VerifyWindow.Duration > 0 }

// A run is one command on one host: what Check found, what the command
// deploys, and what its steps learn on the way.
type run struct {
	*Deployer
	state  *host.State // the record; replaced by the record step
	live   string      // color serving traffic, "" on an empty host
	before string      // color that served when the command began
	cs     []host.Container

	action         string // push, rollback, contract
	color, release string // what the command deploys
	began          time.Time
	switched       bool // traffic has moved to color
	historyDone    bool // the record step wrote the command's line in the history

	changed, missing []string       // stateful services to recreate or start
	caddyConfig      []byte         // the Caddyfile as the running Caddy adapted it, gated; nil until then
	caddyCurrent     bool           // Caddy runs caddyConfig, and starts with it again
	roots            *x509.CertPool // trusted for the sites' certificates: the system's and Caddy's own CA
	composeSum       string         // see Stack.ComposeSum
	applied          []string       // migrations this command applied, for the history
	previous         []host.Container
	// fromImages: a rollback that starts its release from these images (per
	// service), its containers being gone.
	fromImages map[string]string
	// shipped: the host's IDs of the images this push sent it, per service.
	shipped map[string]string
	// migrationLog is the host's migration log as the preflight read it;
	// nil when not read.
	migrationLog *host.MigrationLog
	// hist is the history as the record step left it, for prune; nil when
	// not read.
	hist []host.HistoryEntry
	// imageList answers the host's image list, asked during the record step
	// for prune; nil when not asked.
	imageList func() (client.ImageListResult, error)
}

func (d *Deployer) newRun(cur *Current, action string) *run {
	r := &run{Deployer: d, action: action, began: time.Now()}
	if cur != nil {
		r.state, r.live, r.before, r.cs = cur.State, cur.Live, cur.Live, cur.Containers
	}
	return r
}

// Prepare gets a push ready without touching what serves: it uploads the
// release's files and runs the preflight checks. A fleet push prepares every
// host before it deploys the first.
func (d *Deployer) Prepare(ctx context.Context, cur *Current) (*Push, error) {
	if cur == nil {
		return nil, errors.New("prepare before check") // a programming error
	}
	r := d.newRun(cur, "push")
	r.color, r.release = stack.Blue, d.Opts.Release
	if r.live != "" {
		r.color = stack.Other(r.live)
	}
	if r.release == "" {
		r.release = NewRelease(r.began, d.Opts.GitRevision)
	}
	if d.lock != nil {
		d.lock.SetTarget(r.color, r.release)
	}
	if err := r.carryOut(ctx, pushSteps()[:prepareSteps]); err != nil {
		r.history(context.WithoutCancel(ctx), err)
		return nil, err
	}
	return &Push{r: r}, nil
}

// Push is a push prepared on one host.
type Push struct{ r *run }

// Color and Release say what the push deploys.
func (p *Push) Color() string   { return p.r.color }
func (p *Push) Release() string { return p.r.release }

// After is the host as the push left it: what a rollback starts from.
func (p *Push) After() *Current {
	return &Current{State: p.r.state, Live: p.r.live, Containers: p.r.cs}
}

// Deploy carries out the rest of the push: build, start, verify, switch,
// drain, stop, record.
func (p *Push) Deploy(ctx context.Context) error {
	err := p.r.carryOut(ctx, pushSteps()[prepareSteps:])
	p.r.history(context.WithoutCancel(ctx), err)
	return err
}

// Push deploys the stack's working tree as a new release on the idle color.
func (d *Deployer) Push(ctx context.Context, cur *Current) error {
	p, err := d.Prepare(ctx, cur)
	if err != nil {
		return err
	}
	return p.Deploy(ctx)
}

// Rollback brings back the previous color, whose containers were kept stopped.
func (d *Deployer) Rollback(ctx context.Context, cur *Current) error {
	if cur == nil {
		return errors.New("rollback before check") // a programming error
	}
	r := d.newRun(cur, "rollback")
	if err := r.canRollBack(ctx); err != nil {
		return err
	}
	err := r.carryOut(ctx, rollbackSteps())
	r.history(context.WithoutCancel(ctx), err)
	return err
}

// carryOut runs the steps in order. When one fails before traffic has moved
// for good, the steps done so far (the failed one included) are undone, last
// first, so the host is as it was. A command that lost its lock undoes
// nothing: another command owns the host now.
func (r *run) carryOut(ctx context.Context, steps []step) error {
	var done []step
	for _, st := range steps {
		if st.when != nil && !st.when(r.Stack, r.before) || st.skip != nil && st.skip(r) {
			continue
		}
		if r.switched {
			// Traffic has moved: from here on an interrupt (Ctrl-C) no longer
			// stops the command. Cutting the drain short, or stopping the old
			// color without recording the new one, would leave the record naming
			// a color the gate no longer admits. Every remaining step is bounded
			// by its own timeout.
			ctx = context.WithoutCancel(ctx)
		}
		err := r.step(st.name, st.changes, func() (string, error) { return st.do(ctx, r) })
		switch {
		case err == nil:
			done = append(done, st)
			r.switched = r.switched || st.switches
			continue
		case st.mayFail:
			continue
		case st.name == "record":
			return &RecordError{Color: r.color, Release: r.release, Err: err}
		case errors.Is(err, host.ErrLockLost) && r.switched:
			// Another command owns the host now, but traffic had moved.
			return fmt.Errorf("%w: %w", ErrAfterSwitch, err)
		case errors.Is(err, host.ErrLockLost):
			return err
		case r.switched && errors.Is(err, remote.ErrDisconnected) && lost(r.Host):
			// Traffic had moved: the host changed, whatever the connection did.
			return fmt.Errorf("%w: %w", ErrAfterSwitch, err)
		}
		return r.undo(ctx, append(done, st), err)
	}
	return nil
}

// undo puts back what the steps done changed, last first, after err.
func (r *run) undo(ctx context.Context, done []step, err error) error {
	ctx = context.WithoutCancel(ctx)
	wasSwitched := r.switched
	for i := len(done) - 1; i >= 0; i-- {
		st := done[i]
		if st.undo == nil || st.undoWhen != nil && !st.undoWhen(r.Stack, r.before) {
			continue
		}
		failed := i == len(done)-1
		uerr := r.step(st.undoName, false, func() (string, error) { return st.undo(ctx, r, failed) })
		if uerr != nil && st.switches && wasSwitched {
			// Traffic may still be on the failing color: nothing more is undone.
			return fmt.Errorf("%w: %w", ErrAfterSwitch, errors.Join(err, uerr))
		}
		if st.switches {
			r.switched = false
		}
	}
	if wasSwitched && r.state != nil {
		return fmt.Errorf("%w; traffic is back on %s (release %s)", err, r.before, r.state.Release)
	}
	return err
}

// RecordError is a command whose color serves but whose record was not written.
type RecordError struct {
	Color, Release string
	Err            error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("%v (%s serves release %s, but the record was not written): %v", ErrAfterSwitch, e.Color, e.Release, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// Is makes a RecordError an ErrAfterSwitch: the host changed.
func (e *RecordError) Is(target error) bool { return target == ErrAfterSwitch }
