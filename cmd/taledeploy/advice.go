package main

import (
	"errors"
	"fmt"
	"strings"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/plan"
)

// advice adds to an error of the deploy packages the command or flag that
// helps. Those packages say what happened, with the facts; only the CLI knows
// its own commands and flags.
func advice(env *stack.Environment, err error) error {
	var (
		inconsistent *plan.InconsistentError
		record       *plan.RecordError
		stateful     *plan.StatefulError
		unsafe       *plan.UnsafeMigrationError
		contracted   *plan.ContractedError
		locked       *host.LockedError
		lockLost     *host.LockLostError
		resources    *host.ResourceError
	)
	if hosts, ok := err.(plan.HostErrors); ok {
		// One advice per host.
		var errs []error
		for _, e := range hosts {
			errs = append(errs, advice(env, e))
		}
		return errors.Join(errs...)
	}
	name := env.Name
	switch {
	case errors.As(err, &inconsistent):
		return fmt.Errorf("%w. Run `taledeploy status %s` to see what runs; `taledeploy push %s --repair` rebuilds the record from what runs, then pushes", err, name, name)
	case errors.As(err, &record):
		return fmt.Errorf("%w; `taledeploy status %s` shows it and `taledeploy push %s --repair` rebuilds the record", err, name, name)
	case errors.As(err, &stateful):
		return fmt.Errorf("%w. Pass --recreate-stateful to allow it: %s. Or undo the change in %s", err, strings.Join(stateful.Costs(), "; "), stateful.ComposeFile)
	case errors.As(err, &unsafe):
		return fmt.Errorf("%w; `taledeploy migrations check` lists the same", err)
	case errors.As(err, &contracted):
		return err // the message says what to do: push a fix forward
	case errors.As(err, &locked) && locked.Unreadable != nil && locked.Releasing:
		return fmt.Errorf("%w; pass --force to remove it", err)
	case errors.As(err, &locked) && locked.Unreadable != nil:
		return fmt.Errorf("%w; if no deploy is running, clear it with `taledeploy lock release %s --force`", err, name)
	case errors.As(err, &locked) && locked.Releasing:
		return fmt.Errorf("%w. Pass --force only if you are sure it is not", err)
	case errors.As(err, &locked):
		return fmt.Errorf("%w. Wait for it to finish; if it is not running any more, `taledeploy lock release %s` clears it (add --force if it still looks alive)", err, name)
	case errors.As(err, &lockLost):
		return fmt.Errorf("%w; `taledeploy status %s` shows where the host stands", err, name)
	case errors.As(err, &resources) && resources.Unread != nil:
		return fmt.Errorf("%w; pass --skip-preflight to push without this check", err)
	case errors.As(err, &resources):
		return fmt.Errorf("%w, or pass --skip-preflight", err)
	}
	return err
}
