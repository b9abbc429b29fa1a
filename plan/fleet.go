package plan

import (
	"context"
	"errors"
	"slices"
	"sync"

	"taledeploy/internal/host"
)

// A Fleet is one command on every host of an environment: each host is
// locked, checked and (for a push) prepared before any host changes; then the
// hosts go one after another, in inventory order, stopping at the first
// failure.
type Fleet struct {
	Hosts []*Deployer
	cur   []*Current
	ready []*Push
}

// Begin locks and checks every host in parallel, and prepares each when
// prepare is set. Hosts that share one Docker engine (staging beside prod on
// one VPS) are one machine: they prepare one after another, so the work a push
// does there never piles up against the color that serves.
func (f *Fleet) Begin(ctx context.Context, command string, prepare bool) error {
	n := len(f.Hosts)
	f.cur, f.ready = make([]*Current, n), make([]*Push, n)
	errs := make(HostErrors, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		machines = map[string]*sync.Mutex{}
	)
	machine := func(id string) *sync.Mutex {
		mu.Lock()
		defer mu.Unlock()
		if machines[id] == nil {
			machines[id] = &sync.Mutex{}
		}
		return machines[id]
	}
	for i, d := range f.Hosts {
		wg.Go(func() {
			if errs[i] = d.Lock(ctx, command); errs[i] != nil {
				return
			}
			if f.cur[i], errs[i] = d.Check(ctx); errs[i] != nil || !prepare {
				return
			}
			m := machine(host.EngineID(ctx, d.Host))
			m.Lock()
			defer m.Unlock()
			f.ready[i], errs[i] = d.Prepare(ctx, f.cur[i])
		})
	}
	wg.Wait()
	return errs.err()
}

// End releases every lock this fleet holds, on every host at once. A lock that another command took
// over is not released; its error says so.
func (f *Fleet) End(ctx context.Context) []error {
	errs := make([]error, len(f.Hosts))
	var wg sync.WaitGroup
	for i, d := range f.Hosts {
		wg.Go(func() { errs[i] = d.Unlock(ctx) })
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

// Current is what Check found on host i.
func (f *Fleet) Current(i int) *Current { return f.cur[i] }

// Push deploys the prepared release host after host. When a host fails after
// others changed, the error is a *FleetError; with rollbackOnFailure the hosts
// already done are rolled back first.
func (f *Fleet) Push(ctx context.Context, rollbackOnFailure bool) error {
	return f.each(ctx, "push", rollbackOnFailure, func(i int) error { return f.ready[i].Deploy(ctx) })
}

// Rollback brings back the previous color on every host, one after another.
func (f *Fleet) Rollback(ctx context.Context) error {
	return f.each(ctx, "rollback", false, func(i int) error { return f.Hosts[i].Rollback(ctx, f.cur[i]) })
}

func (f *Fleet) each(ctx context.Context, action string, rollbackOnFailure bool, act func(i int) error) error {
	for i, d := range f.Hosts {
		err := act(i)
		if err == nil {
			continue
		}
		fe := &FleetError{Action: action, Failed: d.Host.Name(), Err: err}
		for _, done := range f.Hosts[:i] {
			fe.Done = append(fe.Done, done.Host.Name())
		}
		if i == 0 || !rollbackOnFailure {
			return fe
		}
		fe.RolledBack = true
		var rerrs HostErrors
		for j, done := range f.Hosts[:i] {
			if rerr := done.Rollback(ctx, f.ready[j].After()); rerr != nil {
				rerrs = append(rerrs, &HostError{Host: done.Host.Name(), Action: "rollback", Err: rerr})
			}
		}
		fe.RollbackErr = rerrs.err()
		return fe
	}
	return nil
}

// FleetError is a fleet command that failed on one host.
type FleetError struct {
	Action string
	Failed string   // the host that failed
	Done   []string // the hosts before it, which had run the command
	// RolledBack: Done were rolled back (--rollback-on-failure); RollbackErr
	// says which of those rollbacks failed.
	RolledBack  bool
	RollbackErr error
	Err         error
}

func (e *FleetError) Error() string {
	return e.Action + " failed on " + e.Failed + ": " + e.Err.Error()
}

func (e *FleetError) Unwrap() error { return e.Err }

// Changed tells whether some host runs something other than before the command.
func (e *FleetError) Changed() bool {
	return errors.Is(e.Err, ErrAfterSwitch) || len(e.Done) > 0 && (!e.RolledBack || e.RollbackErr != nil)
}

// HostError is a failure of an action on one named host.
type HostError struct {
	Host, Action string
	Err          error
}

func (e *HostError) Error() string { return e.Action + " of " + e.Host + ": " + e.Err.Error() }
func (e *HostError) Unwrap() error { return e.Err }

// HostErrors are the failures of one step of a fleet command, one per host
// that failed.
type HostErrors []error

func (e HostErrors) Error() string   { return errors.Join(e...).Error() }
func (e HostErrors) Unwrap() []error { return e }

// err is nil when no host failed.
func (e HostErrors) err() error {
	e = slices.DeleteFunc(e, func(err error) bool { return err == nil })
	if len(e) == 0 {
		return nil
	}
	return e
}

// Contract removes the older releases left on the hosts (the caller has made
// sure that is wanted), then applies the contract migrations host after host.
func (f *Fleet) Contract(ctx context.Context) error {
	for i, d := range f.Hosts {
		if len(f.cur[i].OlderReleases()) == 0 {
			continue
		}
		if err := d.RemoveOlder(ctx, f.cur[i]); err != nil {
			return &FleetError{Action: "removing the older release", Failed: d.Host.Name(), Err: err}
		}
	}
	return f.each(ctx, "contract migrations", false, func(i int) error { return f.Hosts[i].MigrateContract(ctx, f.cur[i]) })
}
