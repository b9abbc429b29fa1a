package remote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"taledeploy/internal/shelltest"
)

func TestMain(m *testing.M) { os.Exit(shelltest.Main(m)) }

func TestQuoteGolden(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"docker", "compose", "-p", "tale-blue", "up", "-d"}, "docker compose -p tale-blue up -d"},
		{[]string{"echo", ""}, "echo ''"},
		{[]string{"echo", "a b"}, "echo 'a b'"},
		{[]string{"echo", "it's"}, `echo 'it'\''s'`},
		{[]string{"echo", "$(reboot)"}, "echo '$(reboot)'"},
		{[]string{"echo", "`id`;rm -rf /"}, "echo '`id`;rm -rf /'"},
		{[]string{"env", "K=v w"}, "env 'K=v w'"},
		{[]string{"echo", "x\ny"}, "echo 'x\ny'"},
		{[]string{"echo", "K=v", "=ls", "%1"}, "echo K=v '=ls' %1"},
		// In the command position an assignment, a job or a reserved word would
		// change what runs; quoted they are plain command names.
		{[]string{"A=b", "x"}, "'A=b' x"},
		{[]string{"%1"}, "'%1'"},
		{[]string{"if", "then"}, "'if' then"},
		{[]string{"time", "docker"}, "'time' docker"},
		{[]string{"-x", "-y"}, "'-x' -y"},
		{[]string{"+x"}, "'+x'"},
	} {
		if got := Quote(tc.argv); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}

func TestCommandLineGolden(t *testing.T) {
	for _, tc := range []struct {
		cmd  Cmd
		want string
	}{
		{Cmd{Argv: []string{"docker", "ps"}}, "docker ps"},
		{Cmd{Argv: []string{"docker", "compose", "up"}, Env: []string{"TALEDEPLOY_COLOR=blue", "X=a b"}},
			"env TALEDEPLOY_COLOR=blue 'X=a b' docker compose up"},
		{Cmd{Argv: []string{"-x"}, Env: []string{"A="}}, "env A= -x"},
		{Cmd{Argv: []string{"-x"}}, "'-x'"},
	} {
		if got, err := CommandLine(tc.cmd); got != tc.want || err != nil {
			t.Errorf("CommandLine(%q, env %q) = %s, %v; want %s", tc.cmd.Argv, tc.cmd.Env, got, err, tc.want)
		}
	}
}

// What no quoting can carry is refused, and the message never shows a value.
func TestCommandLineRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  Cmd
	}{
		{"no argv", Cmd{}},
		{"NUL in an argument", Cmd{Argv: []string{"echo", "sec\x00ret"}}},
		{"NUL in the command", Cmd{Argv: []string{"ec\x00ho"}}},
		{"NUL in an env value", Cmd{Argv: []string{"echo"}, Env: []string{"K=sec\x00ret"}}},
		{"env entry without =", Cmd{Argv: []string{"echo"}, Env: []string{"K"}}},
		{"env entry that is an option", Cmd{Argv: []string{"echo"}, Env: []string{"-i=x"}}},
		{"env entry with an empty name", Cmd{Argv: []string{"echo"}, Env: []string{"=secret"}}},
		{"env name with a space", Cmd{Argv: []string{"echo"}, Env: []string{"A B=secret"}}},
		{"command with = behind env", Cmd{Argv: []string{"A=b"}, Env: []string{"K=v"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, err := CommandLine(tc.cmd)
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("CommandLine = %q, %v; want ErrBadCommand", line, err)
			}
			if strings.Contains(err.Error(), "sec") {
				t.Errorf("error shows a value: %v", err)
			}
		})
	}
}

// Run sends nothing for a command it cannot pass intact.
func TestRunRefusesNUL(t *testing.T) {
	c := connect(t)
	marker := filepath.Join(t.TempDir(), "ran")
	_, err := c.Run(context.Background(), Cmd{Argv: []string{"touch", marker, "x\x00y"}})
	if !errors.Is(err, ErrBadCommand) {
		t.Fatalf("Run with a NUL byte: %v, want ErrBadCommand", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the command ran")
	}
}

// checkThroughShell runs cmd's command line through /bin/sh with the printer as
// the command, and fails unless the printer got exactly cmd's argv and env.
func checkThroughShell(t testing.TB, cmd Cmd, path string) {
	t.Helper()
	line, err := CommandLine(cmd)
	if err != nil {
		t.Fatalf("CommandLine(%q, env %q): %v", cmd.Argv, cmd.Env, err)
	}
	got, err := shelltest.Run(line, path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Argv, cmd.Argv[1:]) {
		t.Fatalf("shell gave the command %q, want %q (line: %s)", got.Argv, cmd.Argv[1:], line)
	}
	want, err := shelltest.WantEnv(path, cmd.Env)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Env, want) {
		t.Fatalf("shell gave the command env %q, want %q (line: %s)", got.Env, want, line)
	}
}

var hostile = []string{"a b", "'", `"`, "$HOME", "${HOME}", "$(touch /tmp/pwned)", "`id`", ";", "; rm -rf /", "&&", "||", "|", ">", "<", "&",
	"*", "?", "[a]", "~", "~root", "#x", "\\", "\n", "\r", "\t", "!", "{a,b}", "-rf", "--", "=", "=ls", "a=b", "%1", "", "é ü", "\xff\xfe"}

func TestQuoteThroughShell(t *testing.T) {
	checkThroughShell(t, Cmd{Argv: append([]string{shelltest.Printer()}, hostile...)}, "")
	checkThroughShell(t, Cmd{Argv: append([]string{shelltest.Printer()}, hostile...), Env: []string{"A=$(id)", "B=a b;c", "C=", "D=it's", "E=\n"}}, "")
}

// A command name that a shell would read as an assignment, a job or a reserved
// word still runs as that command.
func TestCommandNameThroughShell(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"if", "time", "done", "A=b", "%1", "=x", "!", "{", "a b", "-x", "+x", "--", "it's"} {
		if err := os.Symlink(shelltest.Printer(), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		checkThroughShell(t, Cmd{Argv: []string{name, "arg"}}, dir+":/usr/bin:/bin")
		if !strings.Contains(name, "=") {
			checkThroughShell(t, Cmd{Argv: []string{name, "arg"}, Env: []string{"K=v"}}, dir+":/usr/bin:/bin")
		}
	}
}

// FuzzRunArgv proves that whatever the strings, the shell on the host runs the
// intended command with exactly the intended argv and env: no word split,
// joined, expanded or executed. Command lines that cannot carry them intact
// (NUL bytes, bad env names) are refused instead.
func FuzzRunArgv(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, "second", "K", s)
	}
	f.Add("plain", "", "", "")
	f.Add("x\x00y", "b", "K", "v")
	f.Add("a", "b", "K", "v\x00w")
	f.Add("a", "b", "-i", "v")
	f.Add("a", "b", "A B", "v")
	printer := shelltest.Printer()
	f.Fuzz(func(t *testing.T, a, b, key, value string) {
		// The printer is this test binary: leave alone what steers it or Go.
		if key == shelltest.EnvKey || strings.HasPrefix(key, "GO") || strings.HasPrefix(key, "LD_") {
			t.Skip()
		}
		cmd := Cmd{Argv: []string{printer, a, b}}
		if key != "" {
			cmd.Env = []string{key + "=" + value}
		}
		// An entry is NAME=VALUE up to its first "=": "A=" and "0" make A set to "=0".
		name, _, _ := strings.Cut(key, "=")
		if strings.ContainsRune(a+b+strings.Join(cmd.Env, ""), 0) || (key != "" && !isName(name)) {
			if line, err := CommandLine(cmd); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("CommandLine(%q, env %q) = %q, %v; want ErrBadCommand", cmd.Argv, cmd.Env, line, err)
			}
			return
		}
		checkThroughShell(t, cmd, "")
	})
}

// isName tells whether env(1) takes s= for a variable, for sure: the POSIX
// portable names.
func isName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}
