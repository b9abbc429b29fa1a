package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"
)

const completionInventory = `environments:
  prod:
    hosts: [{name: vps1}, {name: vps2}]
    stack: {stateless: [platform, rag], stateful: [proxy, db]}
  staging:
    hosts: [{name: stg1}]
    stack: {stateless: [platform], stateful: [proxy]}
`

// complete runs the completion protocol the shells use (complete -C: the
// line in COMP_LINE) and returns the candidates, sorted.
func completeFor(t *testing.T, line string) []string {
	t.Helper()
	t.Setenv("COMP_LINE", line)
	t.Setenv("COMP_POINT", "")
	var cli CLI
	parser := newParser(&cli)
	var out bytes.Buffer
	parser.Stdout = &out
	exited := -1
	completeLine(parser, kongplete.WithExitFunc(func(code int) { exited = code }))
	if exited != 0 {
		t.Fatalf("completing %q: exit %d", line, exited)
	}
	got := strings.Fields(out.String())
	slices.Sort(got)
	return got
}

func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("inventory.yaml", []byte(completionInventory), 0o644)
	os.WriteFile("other.yaml", []byte("environments:\n  elsewhere: {}\n"), 0o644)

	// Every command of the model, and nothing else.
	var cli CLI
	var commands []string
	for _, n := range newParser(&cli).Model.Children {
		commands = append(commands, n.Name)
	}
	slices.Sort(commands)
	if got := completeFor(t, "taledeploy "); !slices.Equal(got, commands) {
		t.Errorf("commands: %q, want %q", got, commands)
	}
	for _, want := range []string{"push", "rollback", "status", "plan", "lock", "completion"} {
		if !slices.Contains(commands, want) {
			t.Errorf("the model has no %s command", want)
		}
	}
	for line, want := range map[string][]string{
		"taledeploy p":                              {"plan", "push"},
		"taledeploy push ":                          {"prod", "staging"},
		"taledeploy status s":                       {"staging"},
		"taledeploy lock release ":                  {"prod", "staging"},
		"taledeploy push prod --hosts ":             {"vps1", "vps2"},
		"taledeploy rollback --hosts ":              nil, // no environment yet
		"taledeploy logs staging ":                  {"platform", "proxy"},
		"taledeploy lock ":                          {"release", "status"},
		"taledeploy completion ":                    {"bash", "zsh"},
		"taledeploy --inventory other.yaml push ":   {"elsewhere"},
		"taledeploy -i other.yaml plan ":            {"elsewhere"},
		"taledeploy --inventory=missing.yaml push ": nil,
	} {
		if got := completeFor(t, line); !slices.Equal(got, want) {
			t.Errorf("%q completes to %q, want %q", line, got, want)
		}
	}
	got := completeFor(t, "taledeploy push --r")
	for _, f := range []string{"--release", "--repair", "--recreate-stateful", "--rollback-on-failure"} {
		if !slices.Contains(got, f) {
			t.Errorf("push --r completes to %q, lacking %s", got, f)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		var cli CLI
		var out bytes.Buffer
		parser := newParser(&cli)
		parser.Stdout = &out
		ctx, err := parser.Parse([]string{"completion", shell})
		if err != nil {
			t.Fatal(err)
		}
		if err := ctx.Run(&cli); err != nil {
			t.Fatal(err)
		}
		script := out.String()
		if !strings.Contains(script, "complete -o default -C ") || !strings.HasSuffix(script, " taledeploy\n") ||
			!strings.Contains(script, "source <(taledeploy completion "+shell+")") {
			t.Errorf("%s script:\n%s", shell, script)
		}
		if shell == "zsh" && !strings.Contains(script, "bashcompinit") {
			t.Errorf("zsh script does not load bashcompinit:\n%s", script)
		}
	}
	var out bytes.Buffer
	if err := writeCompletion(&out, "fish", "taledeploy"); err == nil {
		t.Error("a fish script was written")
	}

	// The shell takes the script, and the program's path is quoted.
	for _, shell := range []string{"bash", "zsh"} {
		if _, err := exec.LookPath(shell); err != nil {
			if os.Getenv("CI") == "true" {
				t.Errorf("%s is not installed (scripts/sandbox.sh up installs it): its script cannot be checked", shell)
			} else {
				t.Logf("%s not installed: its script is not run; scripts/sandbox.sh up installs it", shell)
			}
			continue
		}
		out.Reset()
		writeCompletion(&out, shell, "/opt/my tools/taledeploy")
		check := "complete -p taledeploy"
		if shell == "zsh" {
			check = "autoload -U compinit && compinit -u; " + out.String() + "; echo ${_comps[taledeploy]}"
		} else {
			check = out.String() + "\n" + check
		}
		got, err := exec.Command(shell, "-c", check).CombinedOutput()
		if err != nil || !strings.Contains(strings.ReplaceAll(string(got), `\ `, " "), "/opt/my tools/taledeploy") {
			t.Errorf("%s with the script: %v\n%s", shell, err, got)
		}
	}
}

// A command line kong cannot parse is bad input: exit status 2.
func TestBadFlagsExit2(t *testing.T) {
	var cli CLI
	_, err := newParser(&cli).Parse([]string{"push", "prod", "--no-such-flag"})
	var ec kong.ExitCoder
	if err == nil || !errors.As(usageError{err}, &ec) || ec.ExitCode() != exitBadInput {
		t.Fatalf("bad flag: %v, want exit status %d", err, exitBadInput)
	}
	var pe *kong.ParseError
	if !errors.As(usageError{err}, &pe) {
		t.Errorf("the usage error hides kong's parse error, so no usage is shown")
	}
}
