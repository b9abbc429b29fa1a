package plan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/shelltest"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

func TestMain(m *testing.M) { os.Exit(shelltest.Main(m)) }

// deployCommands drives the deploy code that builds commands against a fake
// host (check, the stateful services, a whole push: upload, build, start, verify
// and removal of the failed color, the other color's logs, status), and returns
// every command it ran.
func deployCommands(s *stack.Stack, release string) []remote.Cmd {
	fc := &hosttest.Fake{Reply: func(argv []string) ([]byte, error) {
		if slices.Contains(argv, "inspect") && slices.Contains(argv, "network") {
			return nil, &remote.ExitError{Argv: argv, Code: 1} // so the network is created
		}
		return nil, nil
	}}
	ctx := context.Background()
	d := &Deployer{Host: fc, Stack: s, Opts: Options{Who: "fuzz", Release: release}}
	cur, _ := d.Check(ctx)
	r := d.newRun(cur, "push")
	r.color, r.release = stack.Blue, release
	_, _ = stateful(ctx, r)
	_ = d.Push(ctx, cur) // fails at verify: the fake host runs no container
	_ = withLogs(ctx, d.Host, d.Stack, stack.Green, nil)
	host.Status(ctx, fc, s)
	return fc.Cmds
}

// FuzzCommands proves that no project name, remote_dir, compose file path,
// service name, release or env value can make the host's shell run anything but
// the intended argv with the intended env: every command the deploy code builds
// goes through remote.CommandLine and a real /bin/sh, with the printer in place
// of the program. Strings no command line can carry intact are refused.
func FuzzCommands(f *testing.F) {
	// Hostile seeds are in testdata/fuzz/FuzzCommands.
	f.Add("tale", "/srv/tale", "compose.yml", "platform", "db", "20261126-143500-abc123", "s3cret")
	root := f.TempDir()
	os.WriteFile(filepath.Join(root, "compose.yml"), []byte("services: {}\n"), 0o644)
	printer := shelltest.Printer()
	f.Fuzz(func(t *testing.T, project, remoteDir, composeFile, stateless, stateful, release, envValue string) {
		if stateless == "proxy" || stateful == "proxy" || stateless == stateful {
			t.Skip()
		}
		s := hosttest.RawStack(root, project, remoteDir, composeFile, stateless, stateful, envValue)
		seen := map[string]bool{}
		for _, cmd := range deployCommands(s, release) {
			cmd.Argv[0] = printer
			line, err := remote.CommandLine(cmd)
			if strings.ContainsRune(strings.Join(append(cmd.Argv, cmd.Env...), ""), 0) {
				if !errors.Is(err, remote.ErrBadCommand) {
					t.Fatalf("command with a NUL byte %q (env %q): %v, want ErrBadCommand", cmd.Argv, cmd.Env, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("CommandLine(%q, env %q): %v", cmd.Argv, cmd.Env, err)
			}
			if seen[line] {
				continue
			}
			seen[line] = true
			got, err := shelltest.Run(line, "")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Argv, cmd.Argv[1:]) {
				t.Fatalf("shell gave %q, want %q (line: %s)", got.Argv, cmd.Argv[1:], line)
			}
			want, err := shelltest.WantEnv("", cmd.Env)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Env, want) {
				t.Fatalf("shell gave env %q, want %q (line: %s)", got.Env, want, line)
			}
		}
	})
}
