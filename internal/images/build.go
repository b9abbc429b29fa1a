package images

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

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
// Dockerfiles), and returns each image's tag here. The compose file reads the
// stack's env, as on the host.
func Build(ctx context.Context, s *stack.Stack, release string, services []string) (map[string]string, error) {
	if len(services) == 0 {
		return map[string]string{}, nil
	}
	var overlay bytes.Buffer
	overlay.WriteString("services:\n")
	for _, svc := range services {
		fmt.Fprintf(&overlay, "  %s:\n    image: %s\n", strconv.Quote(svc), strconv.Quote(LocalTag(s, svc)))
	}
	// Its files are in a folder the next push removes if this one is killed:
	// the env file holds the stack's secrets.
	work, err := tempDir()
	if err != nil {
		return nil, err
	}
	defer removeTemp(work)
	overlayFile := filepath.Join(work, "build.yml")
	if err := os.WriteFile(overlayFile, overlay.Bytes(), 0o600); err != nil {
		return nil, err
	}
	// The compose file reads the stack's env, as on the host: from an env
	// file (so no .env of this folder and no variable of this shell slips
	// into the images), with only what docker itself needs from the shell.
	env := map[string]string{"TALEDEPLOY_PROJECT": s.Project, "TALEDEPLOY_RELEASE": release}
	maps.Copy(env, s.Env)
	envFile := filepath.Join(work, "build.env")
	if err := os.WriteFile(envFile, stack.EnvFile(env), 0o600); err != nil {
		return nil, err
	}
	composeFile := filepath.Join(s.Root, s.ComposeFile)
	args := append([]string{"compose", "--project-directory", filepath.Dir(composeFile), "--env-file", envFile,
		"-f", composeFile, "-f", overlayFile, "-p", s.Project, "build"}, services...)
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = dockerEnv(os.Environ())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker compose build on this machine: %w: %s", err, stack.MaskValues(lastLines(out.String(), 15), s.Env))
	}
	refs := map[string]string{}
	for _, svc := range services {
		refs[svc] = LocalTag(s, svc)
	}
	return refs, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dockerEnv keeps of this process's environment what the docker CLI needs to
// reach and drive the engine, and nothing taledeploy reads (registry
// credentials, secrets named by the inventory).
func dockerEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "USER", k == "TMPDIR", k == "XDG_RUNTIME_DIR", k == "SSH_AUTH_SOCK",
			strings.HasPrefix(k, "DOCKER_"), strings.HasPrefix(k, "BUILDKIT_"), strings.HasPrefix(k, "BUILDX_"):
			out = append(out, kv)
		}
	}
	return out
}
