package plan

import (
	"context"
	"fmt"
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
	_, proxyRunning := host.RunningProxy(s, r.cs)
	if !proxyRunning {
		// The proxy starts with the config last loaded, the gate keeping
		// traffic on the admitted color; on a new host with the admin API alone.
		if err := r.proxy().Bootstrap(ctx); err != nil {
			return "", err
		}
	}
	if len(changed)+len(missing) == 0 {
		return "unchanged: " + strings.Join(s.Stateful, ", "), nil
	}
	if _, err := host.RunCompose(ctx, r.Host, r.Stack, "", env, append([]string{"up", "-d", "--no-deps", "--wait"}, append(changed, missing...)...)...); err != nil {
		return "", err
	}
	cs, err := host.InspectStack(ctx, r.Host, s)
	if err != nil {
		return "", err
	}
	r.cs = cs
	return "started " + strings.Join(append(changed, missing...), ", "), nil
}
