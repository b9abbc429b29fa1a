package plan

import (
	"context"
	"fmt"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
)

// switchTo sends traffic to color and away from the other color: the new color
// is admitted first, so there is never a moment with neither. When Caddy does
// not run the team's current Caddyfile yet (a first push, or the file changed)
// its gated config is loaded first, with the live color admitted so traffic
// stays put.
//
// hurry is for taking traffic away from a failing color: it is retired at once
// rather than after the other is admitted; requests that meet neither admitted
// wait for a moment instead of reaching the failing one.
func (r *run) switchTo(ctx context.Context, color string, hurry bool) error {
	s := r.Stack
	if r.caddyConfig == nil && r.action != "push" {
		// A rollback moves traffic, not config: Caddy keeps what the last
		// push loaded (the Caddyfile here may have changed since), and only a
		// Caddy that does not run it (restarted with nothing) gets it again.
		if gated, err := r.proxy().Gated(ctx); err != nil {
			return err
		} else if gated {
			return r.moveGate(ctx, color, hurry)
		}
		cfg, err := r.Host.ReadFile(ctx, s.Paths().CaddyConfig())
		if err != nil {
			return fmt.Errorf("caddy does not run taledeploy's config and %s cannot be read (%v); push to load it", s.Paths().CaddyConfig(), err)
		}
		r.caddyConfig = cfg
	}
	if r.caddyConfig == nil {
		if _, err := r.validateCaddyfile(ctx); err != nil {
			return err
		}
		if r.caddyConfig == nil {
			return fmt.Errorf("the proxy service %s is not running in project %s; push again to start it", s.Proxy, s.Project)
		}
	}
	// Whether Caddy runs the config was asked with the preflight.
	if !r.caddyCurrent {
		if r.live != "" {
			if err := r.proxy().Admit(ctx, r.live); err != nil {
				return err
			}
		}
		if err := r.proxy().Load(ctx, r.caddyConfig); err != nil {
			return err
		}
		r.caddyCurrent = true
	}
	return r.moveGate(ctx, color, hurry)
}

// moveGate admits color, then retires the other.
func (r *run) moveGate(ctx context.Context, color string, hurry bool) error {
	if hurry {
		// Off a failing color at once: both changes in one command.
		return r.proxy().Swap(ctx, color)
	}
	if err := r.proxy().Admit(ctx, color); err != nil {
		return err
	}
	if err := host.Sleep(ctx, host.AdmitSettle); err != nil {
		return err
	}
	if err := r.proxy().Retire(ctx, stack.Other(color)); err != nil {
		return err
	}
	// Caddy stops choosing the retired color within retireSettle: drain waits
	// for that before it counts, and the window may start watching meanwhile.
	return nil
}
