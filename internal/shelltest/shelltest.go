// Package shelltest runs a command line through a real /bin/sh, as a host's
// login shell would, and reports the argv and environment the command received.
// It is for tests of shell quoting: the test binary itself is the command (see
// Main and Printer), so what it reports is exactly what execve handed it.
package shelltest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// EnvKey, set to 1 in its environment, makes the test binary the printer.
const EnvKey = "TALEDEPLOY_SHELLTEST_PRINTER"

// Main runs the tests, or prints when the binary was started as the printer:
// func TestMain(m *testing.M) { os.Exit(shelltest.Main(m)) }.
func Main(m *testing.M) int {
	if os.Getenv(EnvKey) != "1" {
		return m.Run()
	}
	// The count first: arguments may be empty, so NULs alone cannot tell
	// where argv ends and the environment begins.
	var b bytes.Buffer
	b.WriteString(strconv.Itoa(len(os.Args) - 1))
	b.WriteByte(0)
	for _, s := range append(os.Args[1:], os.Environ()...) {
		b.WriteString(s)
		b.WriteByte(0)
	}
	os.Stdout.Write(b.Bytes())
	return 0
}

// Printer is the path of the printer to put in argv[0].
func Printer() string {
	p, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return p
}

// Result is what the printer received.
type Result struct {
	Argv []string // after its own name
	Env  []string // sorted
}

// Run runs line with /bin/sh -c, PATH set to path (/usr/bin:/bin when empty),
// and returns what the printer received.
func Run(line, path string) (Result, error) {
	if path == "" {
		path = defaultPath
	}
	return output(path, line)
}

const defaultPath = "/usr/bin:/bin"

var (
	baseMu sync.Mutex
	base   = map[string][]string{}
)

// WantEnv is the environment a command gets from Run with extra (NAME=VALUE,
// as env(1) takes them) on top of what the shell hands every command, sorted.
func WantEnv(path string, extra []string) ([]string, error) {
	if path == "" {
		path = defaultPath
	}
	baseMu.Lock()
	defer baseMu.Unlock()
	if base[path] == nil {
		r, err := output(path, `"$0"`, Printer())
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		base[path] = r.Env
	}
	vars := map[string]string{}
	for _, e := range append(slices.Clone(base[path]), extra...) {
		k, _, _ := strings.Cut(e, "=")
		vars[k] = e
	}
	var env []string
	for _, e := range vars {
		env = append(env, e)
	}
	return tidy(env), nil
}

// tidy sorts env and drops the printer's switch and bash's _ (the path of the
// command it ran, which differs with and without env(1)).
func tidy(env []string) []string {
	env = slices.DeleteFunc(env, func(e string) bool { return e == EnvKey+"=1" || strings.HasPrefix(e, "_=") })
	slices.Sort(env)
	return env
}

func output(path, line string, args ...string) (Result, error) {
	cmd := exec.Command("/bin/sh", append([]string{"-c", line}, args...)...)
	cmd.Env = []string{"PATH=" + path, EnvKey + "=1"}
	cmd.Dir = "/"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Result{}, fmt.Errorf("sh -c %q: %v: %s", line, err, stderr.String())
	}
	fields := strings.Split(string(out), "\x00")
	n, err := strconv.Atoi(fields[0])
	if err != nil || len(fields) < n+2 {
		return Result{}, fmt.Errorf("sh -c %q: the printer did not run; output %q, stderr %s", line, out, stderr.String())
	}
	return Result{Argv: fields[1 : 1+n], Env: tidy(fields[1+n : len(fields)-1])}, nil
}
