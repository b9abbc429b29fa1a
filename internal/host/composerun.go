package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// ComposeEnv is what the compose file and overlays read of the deploy.
func ComposeEnv(s *stack.Stack, color, release string) []string {
	return []string{"TALEDEPLOY_PROJECT=" + s.Project, "TALEDEPLOY_COLOR=" + color, "TALEDEPLOY_RELEASE=" + release}
}

// compose runs docker compose for the stateful project (color "") or a color.
func RunCompose(ctx context.Context, h Conn, s *stack.Stack, color string, env []string, args ...string) ([]byte, error) {
	out, err := h.Run(ctx, remote.Cmd{Argv: append(ComposeArgv(s, color), args...), Env: env})
	var ee *remote.ExitError
	if errors.As(err, &ee) && strings.Contains(ee.Stderr, "is not a docker command") {
		return out, fmt.Errorf("docker compose v2 is not installed on %s; install the Compose plugin (`taledeploy doctor` checks it): %w", h.Name(), err)
	}
	return out, err
}

// LowPriority runs a command on the host below the containers that serve: the
// compose client parses, hashes and tars build contexts, and on a small VPS the
// live color must win the CPU. nice is POSIX (coreutils, busybox).
func LowPriority() []string { return []string{"nice", "-n", "10"} }

// ComposeArgv is docker compose with the files and project of the stateful
// project (color "") or a color.
func ComposeArgv(s *stack.Stack, color string) []string {
	project := s.Project
	argv := append(LowPriority(), "docker", "compose", "--project-directory", s.RemoteDir, "--env-file", s.Paths().Env(),
		"-f", s.Remote(s.ComposeFile))
	if color != "" {
		project = s.ColorProject(color)
		argv = append(argv, "-f", s.Remote(s.OverlayFile(color)))
	} else {
		argv = append(argv, "-f", s.Remote(s.StatefulOverlayFile()))
	}
	return append(argv, "-p", project)
}
