package plan

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// stateful makes sure the colors' networks and the stateful services run. Compose leaves a
// service alone when its definition did not change; a changed one is refused
// unless allowed, since recreating it interrupts what it serves.
func stateful(ctx context.Context, r *run) (string, error) {
	s := r.Stack
	missing, err := host.MissingNetworks(ctx, r.Host, s.ColorNetwork(stack.Blue), s.ColorNetwork(stack.Green))
	if err != nil {
		return "", err
	}
	for _, n := range missing {
		if _, err := r.Host.Run(ctx, remote.Cmd{Argv: []string{"docker", "network", "create", "--label", "taledeploy.project=" + s.Project, n}}); err != nil {
			return "", fmt.Errorf("create network %s: %w", n, err)
		}
	}
	env := host.ComposeEnv(r.Stack, "", r.release)
	changed, missing := r.changed, r.missing
	// Colors made when they shared one network join their own first, so they
	// keep serving and reaching the stateful services as those move.
	joined, err := host.JoinColorNetworks(ctx, r.Host, s, r.cs)
	if err != nil {
		return "", err
	}
	note := ""
	if joined > 0 {
		note = fmt.Sprintf("; %d container(s) of an older taledeploy joined their color's network", joined)
	}
	_, proxyRunning := host.RunningProxy(s, r.cs)
	switch {
	case r.caddyConfig != nil && (slices.Contains(changed, s.Proxy) || slices.Contains(missing, s.Proxy)):
		// The proxy is made again: it starts with the config this push
		// checked (the gate keeps traffic on the admitted color), not with
		// nothing.
		if err := r.proxy().WriteConfig(ctx, r.caddyConfig); err != nil {
			return "", err
		}
	case !proxyRunning:
		// The proxy starts with the config last loaded, the gate keeping
		// traffic on the admitted color; on a new host with the admin API alone.
		if err := r.proxy().Bootstrap(ctx); err != nil {
			return "", err
		}
	}
	if len(changed)+len(missing) == 0 {
		return "unchanged: " + strings.Join(s.Stateful, ", ") + note, nil
	}
	if _, err := host.RunCompose(ctx, r.Host, r.Stack, "", env, append([]string{"up", "-d", "--no-deps", "--wait"}, append(changed, missing...)...)...); err != nil {
		return "", err
	}
	cs, err := host.InspectStack(ctx, r.Host, s)
	if err != nil {
		return "", err
	}
	r.cs = cs
	return "started " + strings.Join(append(changed, missing...), ", ") + note, nil
}
