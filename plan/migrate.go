package plan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/migcheck"
	"taledeploy/remote"
)

// Both colors share the database during a push, so a push applies only expand
// migrations (which the old code survives), after the new images are built and
// before the new color starts. Contract migrations (drop, rename, type change)
// wait for `taledeploy migrate contract`, which runs them once no older release
// is left on any host; rollback past that point is refused.

var (
	// ErrUnsafeMigration is a pending expand migration the checker flags.
	ErrUnsafeMigration = errors.New("unsafe migration")
	// ErrMigration is a migration that failed to apply.
	ErrMigration = errors.New("migration failed")
	// ErrOlderRelease is an older release's container still on a host, which
	// contract migrations would break.
	ErrOlderRelease = errors.New("an older release is still on the host")
)

// pendingMigrations splits the migrations the host has not applied into expand
// and contract ones.
func pendingMigrations(ctx context.Context, h host.Conn, s *stack.Stack) (expand, contract []stack.MigrationFile, log *host.MigrationLog, err error) {
	log, err = host.ReadMigrations(ctx, h, s)
	if err != nil {
		return nil, nil, nil, err
	}
	expand, contract, err = splitPending(s, log)
	return expand, contract, log, err
}

// splitPending splits the stack's migrations that log does not list into
// expand and contract ones.
func splitPending(s *stack.Stack, log *host.MigrationLog) (expand, contract []stack.MigrationFile, err error) {
	files, err := s.MigrationFiles()
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		switch {
		case log.Has(f.Migration.Service, f.Name):
		case f.Contract:
			contract = append(contract, f)
		default:
			expand = append(expand, f)
		}
	}
	return expand, contract, nil
}

// checkMigrations refuses migrations the checker flags: in an expand migration
// anything that breaks the old color or locks a table; in a contract migration
// only what is unsafe even then (a lock without lock_timeout, say).
func checkMigrations(files []stack.MigrationFile) error {
	if len(files) == 0 {
		return nil
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	findings, err := migcheck.Check(paths)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsafeMigration, err)
	}
	if len(findings) == 0 {
		return nil
	}
	var lines []string
	for _, f := range findings {
		fix := f.Fix
		if f.Contract {
			fix += " (or, once no code uses it, mark the file contract: NAME.contract.sql, run by `taledeploy migrate contract`)"
		}
		lines = append(lines, fmt.Sprintf("%s:%d: %s: %s; fix: %s", f.File, f.Line, f.Rule, f.Message, fix))
	}
	return &UnsafeMigrationError{Findings: lines}
}

// checkPendingMigrations is the preflight's part: the expand migrations a push
// would apply must pass the checker before anything is built on any host.
func (r *run) checkPendingMigrations(ctx context.Context) (string, error) {
	if len(r.Stack.Migrations) == 0 {
		return "", nil
	}
	expand, _, log, err := pendingMigrations(ctx, r.Host, r.Stack)
	if err != nil {
		return "", err
	}
	// The migrate step reads it here: this command holds the lock, so no
	// one else changed it meanwhile.
	r.migrationLog = log
	if err := checkMigrations(expand); err != nil {
		return "", err
	}
	if len(expand) == 0 {
		return "no migration pending", nil
	}
	return fmt.Sprintf("%d migration(s) pending, checked", len(expand)), nil
}

// applyMigrations runs each file in a one-off container of color's image of its
// service, on the stack's network (`docker compose run --rm --no-deps`), and
// records each as it succeeds. A failure stops at that file with its output.
func applyMigrations(ctx context.Context, h host.Conn, s *stack.Stack, color, release, kind string, files []stack.MigrationFile, log *host.MigrationLog) ([]string, error) {
	var done []string
	env := host.ComposeEnv(s, color, release)
	for _, f := range files {
		argv := []string{"run", "--rm", "--no-deps", "-T", "--entrypoint", f.Migration.Command[0], f.Migration.Service}
		argv = append(append(argv, f.Migration.Command[1:]...), f.Name)
		out, err := host.RunCompose(ctx, h, s, color, env, argv...)
		if err != nil {
			// The command's own output says what went wrong; the compose command
			// line does not.
			why := strings.TrimSpace(string(out))
			var ee *remote.ExitError
			if errors.As(err, &ee) {
				why = strings.TrimSpace(why + "\n" + ee.Stderr)
			}
			if why == "" {
				why = err.Error()
			}
			return done, fmt.Errorf("%w: %s of %s (nothing after it was applied; traffic is untouched): %s", ErrMigration, f.Name, f.Migration.Service, why)
		}
		log.Applied = append(log.Applied, host.AppliedMigration{Service: f.Migration.Service, File: f.Name, Kind: kind, Release: release, At: time.Now().UTC()})
		if err := host.WriteMigrations(ctx, h, s, log); err != nil {
			return done, err
		}
		done = append(done, f.Name)
	}
	return done, nil
}

// migrateExpand is the push's migrate step.
func migrateExpand(ctx context.Context, r *run) (string, error) {
	var (
		expand, contract []stack.MigrationFile
		log              = r.migrationLog
		err              error
	)
	if log != nil {
		expand, contract, err = splitPending(r.Stack, log)
	} else {
		expand, contract, log, err = pendingMigrations(ctx, r.Host, r.Stack)
	}
	if err != nil {
		return "", err
	}
	if err := checkMigrations(expand); err != nil {
		return "", err
	}
	done, err := applyMigrations(ctx, r.Host, r.Stack, r.color, r.release, "expand", expand, log)
	r.applied = done
	if err != nil {
		return "", err
	}
	msg := "none pending"
	if len(done) > 0 {
		msg = "applied " + strings.Join(done, ", ")
	}
	if len(contract) > 0 {
		msg += fmt.Sprintf("; %d contract migration(s) wait for `taledeploy migrate contract`: %s", len(contract), names(contract))
	}
	return msg, nil
}

func names(files []stack.MigrationFile) string {
	var out []string
	for _, f := range files {
		out = append(out, f.Name)
	}
	return strings.Join(out, ", ")
}

// RemoveOlder removes the color that is not live, so no older release is left;
// rollback to it is then impossible, and the record says so.
func (d *Deployer) RemoveOlder(ctx context.Context, cur *Current) error {
	r := d.newRun(cur, "remove-old")
	return r.step("remove-old", true, func() (string, error) {
		old := stack.Other(r.live)
		if _, err := host.RunCompose(ctx, r.Host, r.Stack, old, host.ComposeEnv(r.Stack, old, ""), "down", "--remove-orphans"); err != nil {
			return "", err
		}
		if r.state != nil && r.state.Previous != nil {
			r.state.Previous = nil
			if err := host.WriteState(ctx, r.Host, r.Stack, r.state); err != nil {
				return "", err
			}
		}
		cs, err := host.InspectStack(ctx, r.Host, r.Stack)
		if err != nil {
			return "", err
		}
		cur.Containers = cs
		return r.Stack.ColorProject(old) + " removed; no rollback to it", nil
	})
}

// MigrateContract applies the pending contract migrations with the live
// release's image. The caller has made sure no older release is left on any host.
func (d *Deployer) MigrateContract(ctx context.Context, cur *Current) error {
	r := d.newRun(cur, "contract")
	return r.step("contract", true, func() (string, error) {
		if r.live == "" || r.state == nil {
			return "", fmt.Errorf("nothing is deployed on %s; push first", r.Host.Name())
		}
		if older := cur.OlderReleases(); len(older) > 0 {
			return "", fmt.Errorf("%w: %s", ErrOlderRelease, describe(older))
		}
		_, contract, log, err := pendingMigrations(ctx, r.Host, r.Stack)
		if err != nil {
			return "", err
		}
		if len(contract) == 0 {
			return "no contract migration pending", nil
		}
		if err := checkMigrations(contract); err != nil {
			return "", err
		}
		r.color, r.release = r.live, r.state.Release
		done, err := applyMigrations(ctx, r.Host, r.Stack, r.live, r.state.Release, "contract", contract, log)
		r.applied = done
		r.history(context.WithoutCancel(ctx), err)
		if len(done) > 0 {
			log.Contract = &host.ContractRun{Release: r.state.Release, Files: done, At: time.Now().UTC()}
			if werr := host.WriteMigrations(context.WithoutCancel(ctx), r.Host, r.Stack, log); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("applied %s with release %s; rollback to an older release is no longer safe", strings.Join(done, ", "), r.state.Release), nil
	})
}

// describe names containers with their release and state.
func describe(cs []host.Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s (release %s, %s)", c.Name, cmp.Or(c.Release, "unknown"), c.State))
	}
	return strings.Join(out, ", ")
}

// UnsafeMigrationError is a pending expand migration the checker flags; no
// migration was applied.
type UnsafeMigrationError struct{ Findings []string }

func (e *UnsafeMigrationError) Error() string {
	return fmt.Sprintf("%v: %s. Nothing was applied and traffic is untouched", ErrUnsafeMigration, strings.Join(e.Findings, "; "))
}

func (e *UnsafeMigrationError) Unwrap() error { return ErrUnsafeMigration }
