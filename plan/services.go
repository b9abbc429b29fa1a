package plan

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"taledeploy/remote"
)

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
	argv := append(lowPriority(), "docker", "compose", "--project-directory", s.RemoteDir, "--env-file", s.EnvPath(),
		"-f", s.Remote(s.ComposeFile))
	if color != "" {
		project = s.ColorProject(color)
		argv = append(argv, "-f", s.Remote(s.OverlayFile(color)))
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
		p, err := s.RemotePath(s.Caddyfile)
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
