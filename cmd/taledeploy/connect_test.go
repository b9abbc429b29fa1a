package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"taledeploy/internal/stack"
	"taledeploy/remote"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// The CI runner's secrets come from the environment and reach every host's
// SSH configuration; the passphrase is taken from it, never asked for.
func TestDialOptionsFromEnvironment(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh/config
	o, err := newDialOptions(false, lookupIn(map[string]string{
		remote.EnvKey:        "-----BEGIN OPENSSH PRIVATE KEY-----\nkey-text\n-----END OPENSSH PRIVATE KEY-----\n",
		remote.EnvKnownHosts: "[203.0.113.10]:22 ssh-ed25519 AAAA\n",
		remote.EnvPassphrase: "pass-text",
	}))
	if err != nil {
		t.Fatal(err)
	}
	h := &stack.Host{Name: "vps1", Address: "203.0.113.10", User: "deploy", IdentityFile: "/home/u/.ssh/id_ed25519"}
	cfg, err := hostConfig(h, o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg.Key), "key-text") || !strings.Contains(string(cfg.KnownHosts), "203.0.113.10") || cfg.KnownHostsFile != "" {
		t.Errorf("environment not passed on: %+v", cfg)
	}
	if pass, err := cfg.Passphrase(remote.EnvKey); err != nil || string(pass) != "pass-text" {
		t.Errorf("passphrase %q, %v; want the one from %s", pass, err, remote.EnvPassphrase)
	}

	// Blank values are unset.
	o, _ = newDialOptions(false, lookupIn(map[string]string{remote.EnvKey: " \n", remote.EnvKnownHosts: ""}))
	if cfg, _ := hostConfig(h, o); cfg.Key != nil || cfg.KnownHosts != nil {
		t.Errorf("blank variables used: %+v", cfg)
	}
}

func TestHostConfigFromSSHConfig(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	key := filepath.Join(home, ".ssh", "id_prod")
	os.WriteFile(key, nil, 0o600)
	os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(`
Host web1
  HostName 198.51.100.7
  Port 2202
  User deploy
  IdentityFile ~/.ssh/id_prod
  ProxyJump ops@bastion.example:2222
Host nouser
  HostName 198.51.100.8
`), 0o600)

	// The default file is ~/.ssh/config.
	o, err := newDialOptions(false, lookupIn(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hostConfig(&stack.Host{Name: "web", Address: "web1", KnownHosts: "/kh"}, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []remote.Hop{{Name: "ops@bastion.example:2222", Address: "bastion.example", Port: 2222, User: "ops"}}
	if cfg.Address != "198.51.100.7" || cfg.Port != 2202 || cfg.User != "deploy" || !reflect.DeepEqual(cfg.IdentityFiles, []string{key}) ||
		!reflect.DeepEqual(cfg.Jumps, want) || cfg.KnownHostsFile != "/kh" {
		t.Errorf("web1 resolved to %+v", cfg)
	}

	// The inventory's values win.
	cfg, err = hostConfig(&stack.Host{Name: "web", Address: "web1", Port: 22, User: "root", IdentityFile: "/keys/id", KnownHosts: "/kh"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "198.51.100.7" || cfg.Port != 22 || cfg.User != "root" || !reflect.DeepEqual(cfg.IdentityFiles, []string{"/keys/id"}) || len(cfg.Jumps) != 1 {
		t.Errorf("explicit values lost: %+v", cfg)
	}

	// No user from either is bad input that says where to set one.
	_, err = hostConfig(&stack.Host{Name: "db", Address: "nouser", KnownHosts: "/kh"}, o)
	if !errors.Is(err, stack.ErrBadInput) || !strings.Contains(err.Error(), "user:") || !strings.Contains(err.Error(), filepath.Join(home, ".ssh", "config")) {
		t.Errorf("host with no user: %v", err)
	}

	// TALEDEPLOY_SSH_CONFIG names another file, or none.
	other := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(other, []byte("Host web1\n  HostName 192.0.2.1\n  User other\n"), 0o600)
	o, _ = newDialOptions(false, lookupIn(map[string]string{envSSHConfig: other}))
	if cfg, err := hostConfig(&stack.Host{Name: "web", Address: "web1", KnownHosts: "/kh"}, o); err != nil || cfg.Address != "192.0.2.1" || cfg.User != "other" {
		t.Errorf("with %s=%s: %+v, %v", envSSHConfig, other, cfg, err)
	}
	o, _ = newDialOptions(false, lookupIn(map[string]string{envSSHConfig: "none"}))
	if cfg, err := hostConfig(&stack.Host{Name: "web", Address: "web1", User: "u", KnownHosts: "/kh"}, o); err != nil || cfg.Address != "web1" || len(cfg.Jumps) > 0 {
		t.Errorf("with %s=none: %+v, %v", envSSHConfig, cfg, err)
	}

	// A config taledeploy cannot read is bad input with the fix.
	os.WriteFile(other, []byte("Match exec \"test -f /x\"\n  User u\n"), 0o600)
	if _, err := newDialOptions(false, lookupIn(map[string]string{envSSHConfig: other})); !errors.Is(err, stack.ErrBadInput) ||
		!strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), envSSHConfig+"=none") {
		t.Errorf("unreadable ssh config: %v", err)
	}

	// A config that refers to ProxyCommand is bad input with the fix.
	os.WriteFile(other, []byte("Host web1\n  ProxyCommand nc %h %p\n"), 0o600)
	o, _ = newDialOptions(false, lookupIn(map[string]string{envSSHConfig: other}))
	if _, err := hostConfig(&stack.Host{Name: "web", Address: "web1", User: "u", KnownHosts: "/kh"}, o); !errors.Is(err, stack.ErrBadInput) ||
		!strings.Contains(err.Error(), "ProxyJump") || !strings.Contains(err.Error(), envSSHConfig+"=none") {
		t.Errorf("ProxyCommand: %v", err)
	}
}

// With no terminal a passphrase is never asked for: the error says what to set.
func TestNoPromptWithoutTerminal(t *testing.T) {
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		tty.Close()
		t.Skip("this test runs with a terminal")
	}
	o, _ := newDialOptions(false, lookupIn(map[string]string{envSSHConfig: "none"}))
	_, err := o.passphrase("/home/u/.ssh/id_ed25519")
	if err == nil || !strings.Contains(err.Error(), remote.EnvPassphrase) {
		t.Fatalf("asking with no terminal: %v, want an error naming %s", err, remote.EnvPassphrase)
	}
}

// A fleet command names every host it cannot connect to, not only the first.
func TestConnectAllNamesEveryFailedHost(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("TALEDEPLOY_SSH_CONFIG", "none")
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	key := filepath.Join(dir, "id")
	os.WriteFile(key, nil, 0o600)
	env := &stack.Environment{Name: "prod", Hosts: []*stack.Host{
		{Name: "h1", Address: "127.0.0.1", Port: 1, User: "deploy", IdentityFile: key, KnownHosts: kh},
		{Name: "h2", Address: "127.0.0.1", Port: 1, User: "deploy", IdentityFile: key, KnownHosts: filepath.Join(dir, "missing")},
		{Name: "h3", Address: "127.0.0.1", Port: 1, IdentityFile: key, KnownHosts: kh},
	}}
	_, err := connectAll(t.Context(), &CLI{}, env)
	if err == nil {
		t.Fatal("connected to closed ports")
	}
	for _, want := range []string{"3 of 3 hosts", "h1: ", "h2: known_hosts", "host h3 has no user"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if exitCode(err) != exitBadInput {
		t.Errorf("exit code %d, want %d (h2 and h3 are bad input)", exitCode(err), exitBadInput)
	}
}
