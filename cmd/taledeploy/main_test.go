package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/plan"
	"taledeploy/remote"

	"golang.org/x/crypto/ssh"
)

// --accept-new-host-key is global: it may come before or after the command, and
// it reaches the SSH configuration of every host.
func TestAcceptNewHostKeyFlag(t *testing.T) {
	t.Setenv("TALEDEPLOY_SSH_CONFIG", "none")
	h := &stack.Host{Name: "vps1", Address: "203.0.113.10", Port: 22, User: "deploy", KnownHosts: "/home/u/.ssh/known_hosts"}
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"push", "prod"}, false},
		{[]string{"--accept-new-host-key", "push", "prod"}, true},
		{[]string{"status", "prod", "--accept-new-host-key"}, true},
		{[]string{"rollback", "--accept-new-host-key", "prod"}, true},
	} {
		var cli CLI
		if _, err := newParser(&cli).Parse(tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		opts, err := cli.dialOptions()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := hostConfig(h, opts)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.AcceptNewHostKey != tc.want {
			t.Errorf("%q: AcceptNewHostKey = %v, want %v", tc.args, cfg.AcceptNewHostKey, tc.want)
		}
		if cfg.KnownHostsFile != h.KnownHosts || cfg.Address != h.Address || cfg.Port != h.Port || cfg.User != h.User {
			t.Errorf("%q: host settings not passed on: %+v", tc.args, cfg)
		}
	}
}

// --hosts never means "every host" by being empty: an unset CI variable is
// bad input, not a push to the whole fleet.
func TestHostsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // nil: refused
	}{
		{[]string{"push", "prod", "--hosts", "h1,h2"}, []string{"h1", "h2"}},
		{[]string{"push", "prod", "--hosts", "h1", "--hosts", " h3 "}, []string{"h1", "h3"}},
		{[]string{"push", "prod"}, []string{}},
		{[]string{"push", "prod", "--hosts", ""}, nil},
		{[]string{"push", "prod", "--hosts="}, nil},
		{[]string{"push", "prod", "--hosts", "h1,"}, nil},
		{[]string{"status", "prod", "--hosts", " "}, nil},
	} {
		var cli CLI
		_, err := newParser(&cli).Parse(tc.args)
		got := []string(cli.Push.Hosts)
		if tc.args[0] == "status" {
			got = cli.Status.Hosts
		}
		switch {
		case tc.want == nil && (err == nil || !strings.Contains(err.Error(), "empty host name")):
			t.Errorf("%q: %v, want a refusal naming the empty host name", tc.args, err)
		case tc.want != nil && (err != nil || !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0):
			t.Errorf("%q: %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}

// buildBinary builds taledeploy once for the tests that run it as a user does.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "taledeploy-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "taledeploy")
	out, err := exec.Command("go", "build", "-buildvcs=true", "-ldflags", "-X main.version=v9.8.7", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// --version names the version and the git revision the binary was built from,
// so a report of a bug can say exactly which code ran.
func TestVersion(t *testing.T) {
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	want := "taledeploy v9.8.7 (revision " + string(rev[:12])
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("--version printed %q, want it to start with %q", out, want)
	}
}

// Every command that acts on hosts takes the same --hosts flag (logs also
// keeps its old --host).
func TestHostsEverywhere(t *testing.T) {
	for _, args := range [][]string{
		{"push", "e", "--hosts", "a"}, {"rollback", "e", "--hosts", "a"}, {"status", "e", "--hosts", "a"},
		{"plan", "e", "--hosts", "a"}, {"history", "e", "--hosts", "a"}, {"doctor", "e", "--hosts", "a"},
		{"logs", "e", "svc", "--hosts", "a"}, {"logs", "e", "svc", "--host", "a"},
		{"lock", "status", "e", "--hosts", "a"}, {"lock", "release", "e", "--hosts", "a"},
	} {
		var cli CLI
		if _, err := newParser(&cli).Parse(args); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// A failure once traffic has moved is not "no host changed": it exits 4, like
// a fleet left mixed.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("verify failed"), exitFailed},
		{fmt.Errorf("push failed on h1: %w", plan.ErrAfterSwitch), exitPartial},
		{fmt.Errorf("%w; h1 already runs it", errPartial), exitPartial},
		{fmt.Errorf("x: %w", stack.ErrBadInput), exitBadInput},
		{fmt.Errorf("h1: %w", remote.ErrLocalFile), exitBadInput},
		{fmt.Errorf("h1: %w", host.ErrLocked), exitLocked},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// minimalStack is a folder with the smallest stack taledeploy accepts (a
// proxy and one service) and an empty known_hosts: enough to reach the hosts.
func minimalStack(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yml"), []byte("services:\n  proxy: {image: caddy}\n  web: {image: web}\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "services", "proxy"), 0o755)
	os.WriteFile(filepath.Join(dir, "services", "proxy", "Caddyfile"), []byte(":80 {\n\treverse_proxy web:80\n}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "known_hosts"), nil, 0o600)
	return dir
}

// push --json ends with a summary line even when no host can be reached, so a
// CI job that reads the last line always finds one.
func TestJSONSummaryWhenNoHostConnects(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := minimalStack(t)
	os.WriteFile(filepath.Join(dir, "inventory.yaml"), []byte(`environments:
  prod:
    hosts:
      - {name: h1, address: 127.0.0.1, port: 1, user: deploy, known_hosts: known_hosts}
    stack:
      project: app
      remote_dir: /srv/app
      stateless: [web]
      stateful: [proxy]
      routes: [{site: ":80", path: /*, service: web, port: 80, health_path: /}]
`), 0o644)
	cmd := exec.Command(bin, "--inventory", filepath.Join(dir, "inventory.yaml"), "--json", "push", "prod")
	cmd.Env = append(os.Environ(), "HOME="+dir, "TALEDEPLOY_SSH_CONFIG=none", "SSH_AUTH_SOCK=", "TALEDEPLOY_SSH_KEY=")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err == nil {
		t.Fatal("push to a closed port succeeded")
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["type"] != "summary" || last["ok"] != false {
		t.Errorf("the last line of stdout is not a failed summary: %q (%v)", stdout.String(), err)
	}
}

// status with a host that cannot be reached still shows every host, the
// unreachable one with why, and fails: when a host is gone, who runs what
// matters most.
func TestStatusShowsUnreachableHosts(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := minimalStack(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "id"), pem.EncodeToMemory(block), 0o600)
	os.WriteFile(filepath.Join(dir, "inventory.yaml"), []byte(`environments:
  prod:
    hosts:
      - {name: h1, address: 127.0.0.1, port: 1, user: deploy, known_hosts: known_hosts, identity_file: id}
      - {name: h2, address: 127.0.0.1, port: 1, user: deploy, known_hosts: known_hosts, identity_file: id}
    stack:
      project: app
      remote_dir: /srv/app
      stateless: [web]
      stateful: [proxy]
`), 0o644)
	for _, json_ := range []bool{true, false} {
		args := []string{"--inventory", filepath.Join(dir, "inventory.yaml"), "status", "prod"}
		if json_ {
			args = append([]string{"--json"}, args...)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "TALEDEPLOY_SSH_CONFIG=none", "SSH_AUTH_SOCK=", "TALEDEPLOY_SSH_KEY=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err == nil {
			t.Errorf("status of unreachable hosts succeeded:\n%s", stdout.String())
		}
		if !strings.Contains(stderr.String(), "2 of 2 hosts cannot be used") {
			t.Errorf("status does not fail with why: %s", stderr.String())
		}
		if !json_ {
			if strings.Count(stdout.String(), "error: host unreachable") != 2 || strings.Contains(stdout.String(), "nothing deployed") {
				t.Errorf("status does not show each unreachable host with why:\n%s", stdout.String())
			}
			continue
		}
		var doc struct {
			Hosts []struct{ Host, Error string }
		}
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil || len(doc.Hosts) != 2 {
			t.Fatalf("status --json: %v: %q", err, stdout.String())
		}
		for i, h := range doc.Hosts {
			if h.Host != fmt.Sprintf("h%d", i+1) || !strings.Contains(h.Error, "unreachable") {
				t.Errorf("host %d in status --json: %+v, want h%d and why it cannot be reached", i, h, i+1)
			}
		}
	}
}

// init writes a first inventory from the folder's compose file and never
// overwrites a file.
func TestInitNeverOverwrites(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web: {build: .}\n  db: {image: postgres:16}\n"), 0o644)
	run := func() (string, error) {
		cmd := exec.Command(bin, "init")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(); err != nil || !strings.Contains(out, "wrote") {
		t.Fatalf("init: %v\n%s", err, out)
	}
	first, _ := os.ReadFile(filepath.Join(dir, "inventory.yaml"))
	if !strings.Contains(string(first), "- web") || !strings.Contains(string(first), "- db  # a data store") {
		t.Errorf("inventory:\n%s", first)
	}
	os.WriteFile(filepath.Join(dir, "inventory.yaml"), []byte("# mine\n"), 0o644)
	out, err := run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitBadInput || !strings.Contains(out, "never overwrites") {
		t.Errorf("init over an existing inventory: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "inventory.yaml")); string(data) != "# mine\n" {
		t.Errorf("init overwrote the inventory")
	}
}
