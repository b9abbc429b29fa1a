package remote

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The key and known_hosts lines as a CI runner passes them, in the environment.

func keyText(t *testing.T, cfg Config) []byte {
	t.Helper()
	b, err := os.ReadFile(cfg.IdentityFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noSecret fails when msg holds any line of the key's text or the passphrase.
func noSecret(t *testing.T, msg string, key []byte, pass string) {
	t.Helper()
	for _, l := range strings.Split(string(key), "\n") {
		if len(l) > 8 && !strings.HasPrefix(l, "-----") && strings.Contains(msg, l) {
			t.Errorf("the key's text appears in %q", msg)
		}
	}
	if pass != "" && strings.Contains(msg, pass) {
		t.Errorf("the passphrase appears in %q", msg)
	}
}

func TestKeyFromEnvReplacesIdentityFile(t *testing.T) {
	cfg, ts := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	cfg.Key = keyText(t, cfg)
	// The inventory's identity_file does not exist on a CI runner: with the key
	// in the environment it is not read.
	cfg.IdentityFiles = []string{filepath.Join(t.TempDir(), "no-such-key")}
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial with the key's text: %v", err)
	}
	defer c.Close()
	if out, err := c.Run(context.Background(), Cmd{Argv: []string{"echo", "ok"}}); err != nil || string(out) != "ok\n" {
		t.Fatalf("Run: %q, %v", out, err)
	}
	if ts.logins.Load() != 1 {
		t.Errorf("%d logins, want 1", ts.logins.Load())
	}
}

func TestEncryptedKeyFromEnv(t *testing.T) {
	cfg, _ := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	raw, err := ssh.ParseRawPrivateKey(keyText(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	const pass = "correct-horse-battery-staple"
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "", []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.IdentityFiles = pem.EncodeToMemory(block), nil

	// No way to ask: refused with the fix, never a prompt.
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, ErrPassphrase) || !strings.Contains(err.Error(), EnvPassphrase) {
		t.Fatalf("Dial with an encrypted key and no passphrase: %v, want ErrPassphrase naming %s", err, EnvPassphrase)
	}
	noSecret(t, err.Error(), cfg.Key, pass)

	cfg.Passphrase = func(string) ([]byte, error) { return []byte("wrong-" + pass), nil }
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, ErrPassphrase) {
		t.Fatalf("Dial with a wrong passphrase: %v, want ErrPassphrase", err)
	}
	noSecret(t, err.Error(), cfg.Key, pass)

	notAsked := errors.New("no terminal to ask on; set " + EnvPassphrase)
	cfg.Passphrase = func(string) ([]byte, error) { return nil, notAsked }
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, ErrPassphrase) || !errors.Is(err, notAsked) || !strings.Contains(err.Error(), "no terminal") {
		// The caller tells a passphrase it chose not to ask for yet (the
		// push dials while images build) by its own error.
		t.Fatalf("Dial when asking fails: %v, want ErrPassphrase wrapping the reason", err)
	}

	var asked []string
	cfg.Passphrase = func(name string) ([]byte, error) {
		asked = append(asked, name)
		return []byte(pass), nil
	}
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial with the passphrase: %v", err)
	}
	c.Close()
	if len(asked) != 1 || asked[0] != EnvKey {
		t.Errorf("passphrase asked for %q, want once for %s", asked, EnvKey)
	}
}

func TestBadKeyFromEnvIsNotShown(t *testing.T) {
	cfg, _ := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	for _, key := range []string{
		"secret-marker-not-a-key",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LW1hcmtlci1pbnNpZGUtYS1wZW0tYmxvY2s=\n-----END OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LW1hcmtlci1pbnNpZGUtYS1wZW0tYmxvY2s=\n-----END RSA PRIVATE KEY-----\n",
	} {
		cfg.Key = []byte(key)
		_, err := Dial(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), EnvKey) {
			t.Fatalf("Dial with %q as the key: %v, want an error naming %s", key, err, EnvKey)
		}
		for _, secret := range []string{"secret-marker", "c2VjcmV0LW1hcmtlci"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the key's text: %v", err)
			}
		}
	}
}

func TestKnownHostsFromEnv(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // to see that no temporary file is left
	ctx := context.Background()
	cfg, ts := setup(t, func(*testServer) ssh.PublicKey { return nil }) // an empty known_hosts file
	line := fmt.Sprintf("[%s]:%d %s", cfg.Address, cfg.Port, ssh.MarshalAuthorizedKey(ts.hostKey.PublicKey()))

	// In addition to the file, alone, and in place of a file the runner lacks.
	for _, file := range []string{cfg.KnownHostsFile, "", filepath.Join(t.TempDir(), "no-such-known_hosts")} {
		c := cfg
		c.KnownHostsFile, c.KnownHosts = file, []byte("# from the environment\n"+line)
		cl, err := Dial(ctx, c)
		if err != nil {
			t.Fatalf("Dial with known_hosts file %q and the host's line in %s: %v", file, EnvKnownHosts, err)
		}
		cl.Close()
	}

	// Alone, without the host: refused with the fix, and never accepted, since
	// there is no file to add the key to.
	c := cfg
	other := "other.example " + string(ssh.MarshalAuthorizedKey(newKey(t).PublicKey()))
	c.KnownHostsFile, c.KnownHosts, c.AcceptNewHostKey = "", []byte(other), true
	_, err := Dial(ctx, c)
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("Dial to a host %s lacks: %v, want ErrHostKeyUnknown", EnvKnownHosts, err)
	}
	for _, want := range []string{ssh.FingerprintSHA256(ts.hostKey.PublicKey()), EnvKnownHosts, fmt.Sprintf("ssh-keyscan -p %d %s", c.Port, c.Address)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "accept-new") {
		t.Errorf("error offers --accept-new-host-key with no file to record the key in: %v", err)
	}

	// A changed key on a line of the environment.
	old := newKey(t)
	c.KnownHosts = []byte(other + fmt.Sprintf("[%s]:%d %s", cfg.Address, cfg.Port, ssh.MarshalAuthorizedKey(old.PublicKey())))
	c.AcceptNewHostKey = false
	_, err = Dial(ctx, c)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("Dial to a host whose key in %s changed: %v, want ErrHostKeyMismatch", EnvKnownHosts, err)
	}
	for _, want := range []string{"WARNING", ssh.FingerprintSHA256(old.PublicKey()), EnvKnownHosts + " line 2", "replace the old line in " + EnvKnownHosts} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "ssh-keygen -R") {
		t.Errorf("error tells to edit a file that does not hold the key: %v", err)
	}

	// No source at all stays an error with the fix.
	c.KnownHosts = nil
	_, err = Dial(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "known_hosts") || !strings.Contains(err.Error(), EnvKnownHosts) {
		t.Fatalf("Dial with no known hosts: %v, want an error naming both fixes", err)
	}

	// Lines that are not known_hosts lines are named by the variable, not by
	// a temporary file.
	c.KnownHosts = []byte("this is not a known_hosts line\n")
	_, err = Dial(ctx, c)
	if err == nil || !strings.Contains(err.Error(), EnvKnownHosts) || strings.Contains(err.Error(), "taledeploy-known-hosts-") {
		t.Fatalf("Dial with bad known_hosts lines: %v, want an error naming %s", err, EnvKnownHosts)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "taledeploy-known-hosts-*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// jumpSetup starts n jump hosts in front of the test server, all with keys in
// the known_hosts file, and returns the target's config through them.
func jumpSetup(t *testing.T, n int) (Config, *testServer, []*testServer) {
	cfg, target := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	clientKey, err := ssh.ParsePrivateKey(keyText(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	var jumps []*testServer
	f, _ := os.OpenFile(cfg.KnownHostsFile, os.O_APPEND|os.O_WRONLY, 0)
	defer f.Close()
	fmt.Fprintln(f)
	for i := range n {
		j := startServer(t, clientKey.PublicKey())
		jumps = append(jumps, j)
		host, port, _ := net.SplitHostPort(j.addr)
		var p int
		fmt.Sscan(port, &p)
		fmt.Fprintf(f, "[%s]:%d %s", host, p, ssh.MarshalAuthorizedKey(j.hostKey.PublicKey()))
		cfg.Jumps = append(cfg.Jumps, Hop{Name: fmt.Sprintf("jump%d", i+1), Address: host, Port: p, User: "jumper"})
	}
	return cfg, target, jumps
}

func TestDialThroughJumpHosts(t *testing.T) {
	ctx := context.Background()
	cfg, target, jumps := jumpSetup(t, 2)
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial through two jump hosts: %v", err)
	}
	if out, err := c.Run(ctx, Cmd{Argv: []string{"echo", "behind", "two"}}); err != nil || string(out) != "behind two\n" {
		t.Fatalf("Run: %q, %v", out, err)
	}
	for i, j := range jumps {
		if j.logins.Load() != 1 || j.forwards.Load() != 1 {
			t.Errorf("jump host %d: %d logins, %d forwards; want 1 and 1", i+1, j.logins.Load(), j.forwards.Load())
		}
	}
	if target.logins.Load() != 1 || target.forwards.Load() != 0 {
		t.Errorf("target: %d logins, %d forwards; want 1 and 0", target.logins.Load(), target.forwards.Load())
	}

	// Losing a jump host loses the connection, at once.
	c.via[0].Close()
	select {
	case <-c.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not end with its jump host's")
	}
	if _, err := c.Run(ctx, Cmd{Argv: []string{"true"}}); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Run after the jump host went: %v, want ErrDisconnected", err)
	}
	c.Close()
}

func TestJumpHostKeyIsVerified(t *testing.T) {
	cfg, target, jumps := jumpSetup(t, 2)
	// The known_hosts file lists the target and the first jump host only.
	data, _ := os.ReadFile(cfg.KnownHostsFile)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	os.WriteFile(cfg.KnownHostsFile, []byte(strings.Join(lines[:len(lines)-1], "\n")+"\n"), 0o600)
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("Dial through a jump host with an unknown key: %v, want ErrHostKeyUnknown", err)
	}
	want := fmt.Sprintf("jump host [%s]:%d", cfg.Jumps[1].Address, cfg.Jumps[1].Port)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(jumps[1].hostKey.PublicKey())) {
		t.Errorf("error does not name %q and its fingerprint: %v", want, err)
	}
	if target.logins.Load() != 0 || jumps[1].logins.Load() != 0 {
		t.Errorf("logged in past a refused host key")
	}
}

func TestJumpHostCannotReach(t *testing.T) {
	cfg, _, _ := jumpSetup(t, 1)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg.Port = closed
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "jump host") {
		t.Fatalf("Dial through a jump host to a closed port: %v, want ErrUnreachable naming the jump host", err)
	}
}

// A host that accepts TCP but never speaks SSH does not hang a deploy.
func TestHandshakeTimesOut(t *testing.T) {
	cfg, _ := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	cfg.Port = ln.Addr().(*net.TCPAddr).Port
	cfg.Timeout = 100 * time.Millisecond
	start := time.Now()
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, ErrUnreachable) || time.Since(start) > 5*time.Second {
		t.Fatalf("Dial to a silent host: %v after %v, want ErrUnreachable within a second or so", err, time.Since(start))
	}
}
