package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/client"

	"taledeploy/internal/stack"
)

// LocalTag is the tag a service's image gets on this machine: one per
// service, moved by every build, so builds do not pile up tags here.
func LocalTag(s *stack.Stack, service string) string {
	return s.Project + "/" + service + ":taledeploy-build"
}

// Built lists the stateless services whose image a push builds: those with a
// build context.
func Built(s *stack.Stack) []string {
	var out []string
	for _, name := range s.Stateless {
		if svc := s.Compose.Services[name]; svc != nil && svc.BuildContext != "" {
			out = append(out, name)
		}
	}
	return out
}

// Build builds the services' images with this machine's Docker, through
// Compose and the team's own compose file (its build args, targets and
// Dockerfiles), and returns each image's ID. The compose file reads the
// stack's env, as on the host.
func Build(ctx context.Context, local *client.Client, s *stack.Stack, release string, services []string) (map[string]string, error) {
	if len(services) == 0 {
		return map[string]string{}, nil
	}
	var overlay bytes.Buffer
	overlay.WriteString("services:\n")
	for _, svc := range services {
		fmt.Fprintf(&overlay, "  %s:\n    image: %s\n", strconv.Quote(svc), strconv.Quote(LocalTag(s, svc)))
	}
	f, err := os.CreateTemp("", "taledeploy-build-*.yml")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(overlay.Bytes()); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	composeFile := filepath.Join(s.Root, s.ComposeFile)
	args := append([]string{"compose", "--project-directory", filepath.Dir(composeFile),
		"-f", composeFile, "-f", f.Name(), "-p", s.Project, "build"}, services...)
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "TALEDEPLOY_PROJECT="+s.Project, "TALEDEPLOY_RELEASE="+release)
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker compose build on this machine: %w: %s", err, lastLines(out.String(), 15))
	}
	ids := map[string]string{}
	for _, svc := range services {
		res, err := local.ImageInspect(ctx, LocalTag(s, svc))
		if err != nil {
			return nil, fmt.Errorf("image of %s after the build: %w", svc, err)
		}
		ids[svc] = res.ID
	}
	return ids, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
