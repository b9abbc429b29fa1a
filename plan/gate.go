package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"taledeploy/internal/stack"
	"taledeploy/templates"
)

// The gate decides which color takes traffic. The Caddyfile lists both colors in
// a fixed order and health-checks each upstream against a small site inside the
// proxy that answers 200 while a file named after the upstream exists in
// run/caddy/live (the proxy sees it as /run/caddy/live). Writing and removing
// those files switches traffic with no Caddy reload, so Caddy's listener never
// closes under load; and an upstream leaves rotation while it is still running,
// so it drains before it is asked to stop.

// Time for Caddy to see a gate change: the next check, plus one interval of slack
// for a busy host. A switch that misjudges it only delays requests: a request
// that finds no admitted upstream waits (lb_try_duration) instead of failing.
var (
	admitSettle  = 2 * templates.GateInterval
	retireSettle = (templates.GateFails + 1) * templates.GateInterval
)

// admit lets every routed service of color take traffic.
func (d *Deployer) admit(ctx context.Context, color string) error {
	s := d.Stack
	if err := d.Host.Mkdir(ctx, s.GateDir(), 0o755, false); err != nil {
		return fmt.Errorf("create %s: %w", s.GateDir(), err)
	}
	for _, u := range s.Upstreams(color) {
		if err := d.Host.WriteFile(ctx, s.GateDir()+"/"+u, nil, 0o644); err != nil {
			return fmt.Errorf("admit %s: %w", u, err)
		}
	}
	return nil
}

// retire takes color out of rotation; requests it is serving go on.
func (d *Deployer) retire(ctx context.Context, color string) error {
	s := d.Stack
	for _, u := range s.Upstreams(color) {
		if err := d.Host.Remove(ctx, s.GateDir()+"/"+u); err != nil {
			return fmt.Errorf("retire %s: %w", u, err)
		}
	}
	return nil
}

// admitted tells whether the gate admits every routed service of color.
func (d *Deployer) admitted(ctx context.Context, color string) (bool, error) {
	for _, u := range d.Stack.Upstreams(color) {
		if _, err := d.Host.ReadFile(ctx, d.Stack.GateDir()+"/"+u); errors.Is(err, os.ErrNotExist) {
			return false, nil
		} else if err != nil {
			return false, err
		}
	}
	return true, nil
}

// switchTo sends traffic to color and away from the other color: the new color
// is admitted first, so there is never a moment with neither. When Caddy does
// not run the current Caddyfile yet (a first push with this version, or changed
// routes) it is loaded first, with the live color admitted so traffic stays put.
//
// hurry is for taking traffic away from a failing color: it is retired at once
// rather than after the other is admitted; requests that meet neither admitted
// wait for a moment instead of reaching the failing one.
func (d *Deployer) switchTo(ctx context.Context, color string, hurry bool) error {
	s := d.Stack
	gated, err := d.runsCaddyfile(ctx)
	if err != nil {
		return err
	}
	if !gated {
		if !d.validated {
			if _, err := d.validateCaddyfile(ctx); err != nil {
				return err
			}
			if !d.validated {
				return fmt.Errorf("the proxy service %s is not running in project %s; push again to start it", s.Proxy, s.Project)
			}
		}
		if d.live != "" {
			if err := d.admit(ctx, d.live); err != nil {
				return err
			}
		}
		if err := d.loadCaddyfile(ctx); err != nil {
			return err
		}
	}
	if err := d.admit(ctx, color); err != nil {
		return err
	}
	if !hurry {
		if err := sleep(ctx, admitSettle); err != nil {
			return err
		}
	}
	if err := d.retire(ctx, stack.Other(color)); err != nil {
		return err
	}
	// Caddy stops choosing the retired color within retireSettle: drain waits
	// for that before it counts, and the window may start watching meanwhile.
	return nil
}

// loadCaddyfile writes the Caddyfile and loads those exact bytes into Caddy
// through the admin socket. Caddy keeps its running config when /load fails; the
// file is put back then, so a proxy restart runs what ran before.
func (d *Deployer) loadCaddyfile(ctx context.Context) error {
	s := d.Stack
	next := s.CaddyfileText()
	p, err := s.RemotePath(s.Caddyfile)
	if err != nil {
		return err
	}
	old, _ := d.Host.ReadFile(ctx, p)
	if err := d.Host.WriteFile(ctx, p, next, 0o644); err != nil {
		return err
	}
	if _, err := d.admin(ctx, http.MethodPost, "/load", "text/caddyfile", next); err != nil {
		if old != nil {
			_ = d.Host.WriteFile(context.WithoutCancel(ctx), p, old, 0o644)
		}
		return fmt.Errorf("caddy reload: %w", err)
	}
	return nil
}

// runsCaddyfile tells whether the running Caddy was loaded from this stack's
// current Caddyfile: the file on the host is the one rendered now, and every
// reverse proxy in Caddy's config asks the gate.
func (d *Deployer) runsCaddyfile(ctx context.Context) (bool, error) {
	s := d.Stack
	p, err := s.RemotePath(s.Caddyfile)
	if err != nil {
		return false, err
	}
	if cur, err := d.Host.ReadFile(ctx, p); err != nil || string(cur) != string(s.CaddyfileText()) {
		return false, nil
	}
	return d.caddyGated(ctx)
}

// caddyGated tells whether every reverse proxy in Caddy's running config takes
// its upstreams' health from the gate.
func (d *Deployer) caddyGated(ctx context.Context) (bool, error) {
	data, err := d.admin(ctx, http.MethodGet, "/config/apps/http/servers", "", nil)
	if err != nil {
		return false, err
	}
	var cfg any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return false, fmt.Errorf("caddy config: %w", err)
	}
	proxies, gated := 0, 0
	gate := fmt.Sprintf("127.0.0.1:%d", templates.GatePort)
	walkJSON(cfg, func(m map[string]any) {
		if m["handler"] != "reverse_proxy" {
			return
		}
		proxies++
		hc, _ := m["health_checks"].(map[string]any)
		active, _ := hc["active"].(map[string]any)
		if active["upstream"] == gate {
			gated++
		}
	})
	return proxies > 0 && gated == proxies, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
