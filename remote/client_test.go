package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testServer is an in-process SSH server with a pinned host key: exec runs the
// command through /bin/sh like a login shell would, sftp serves the local disk,
// and direct-tcpip forwards a connection (so it can be a jump host).
type testServer struct {
	addr     string
	hostKey  ssh.Signer
	logins   atomic.Int32
	forwards atomic.Int32 // direct-tcpip channels opened
	// noForwarding refuses every forwarding, as sshd does with
	// AllowTcpForwarding no and AllowStreamLocalForwarding no.
	noForwarding atomic.Bool
	// keepaliveDelay holds back the answer to keepalive requests.
	keepaliveDelay atomic.Int64
}

func newKey(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(nil)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t *testing.T, clientKey ssh.PublicKey) *testServer {
	return startServerWith(t, clientKey, newKey(t))
}

// startServerWith starts a server that shows hostKey (a plain key or a
// certificate signer).
func startServerWith(t *testing.T, clientKey ssh.PublicKey, hostKey ssh.Signer) *testServer {
	ts := &testServer{hostKey: hostKey}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientKey.Marshal()) {
			ts.logins.Add(1)
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(ts.hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ts.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ts.serveConn(c, cfg)
		}
	}()
	return ts
}

func (ts *testServer) serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go func() {
		for r := range reqs {
			if d := time.Duration(ts.keepaliveDelay.Load()); d > 0 {
				time.Sleep(d)
			}
			if r.WantReply {
				r.Reply(false, nil) // as OpenSSH answers keepalive@openssh.com
			}
		}
	}()
	for nc := range chans {
		if ts.noForwarding.Load() && nc.ChannelType() != "session" {
			nc.Reject(ssh.Prohibited, "administratively prohibited")
			continue
		}
		if nc.ChannelType() == "direct-tcpip" {
			ts.forward(nc)
			continue
		}
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, in, _ := nc.Accept()
		go func() {
			defer ch.Close()
			for req := range in {
				switch req.Type {
				case "exec":
					cmd := string(req.Payload[4:])
					req.Reply(true, nil)
					sh := exec.Command("/bin/sh", "-c", cmd)
					sh.Stdout, sh.Stderr = ch, ch.Stderr()
					code := 0
					if err := sh.Run(); err != nil {
						code = 1
						var ee *exec.ExitError
						if errors.As(err, &ee) {
							code = ee.ExitCode()
						}
					}
					ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(code)))
					return
				case "subsystem":
					req.Reply(true, nil)
					srv, _ := sftp.NewServer(ch)
					srv.Serve()
					return
				default:
					req.Reply(false, nil)
				}
			}
		}()
	}
}

// forward serves a direct-tcpip channel, as sshd does for ProxyJump.
func (ts *testServer) forward(nc ssh.NewChannel) {
	var req struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bad request")
		return
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(req.Host, fmt.Sprint(req.Port)))
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, in, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	ts.forwards.Add(1)
	go ssh.DiscardRequests(in)
	go func() {
		io.Copy(conn, ch)
		conn.Close()
	}()
	go func() {
		io.Copy(ch, conn)
		ch.Close()
	}()
}

// setup writes a client key and a known_hosts file that holds knownKey for the server.
func setup(t *testing.T, knownKey func(ts *testServer) ssh.PublicKey) (Config, *testServer) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(nil)
	pemBlock, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id")
	os.WriteFile(keyFile, pemEncode(pemBlock), 0o600)
	signer, _ := ssh.NewSignerFromKey(priv)
	ts := startServer(t, signer.PublicKey())
	host, port, _ := net.SplitHostPort(ts.addr)
	var p int
	fmt.Sscan(port, &p)
	kh := filepath.Join(dir, "known_hosts")
	if k := knownKey(ts); k != nil {
		os.WriteFile(kh, []byte(fmt.Sprintf("[%s]:%d %s", host, p, ssh.MarshalAuthorizedKey(k))), 0o600)
	} else {
		os.WriteFile(kh, nil, 0o600)
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	return Config{Name: "test", Address: host, Port: p, User: "deploy", IdentityFiles: []string{keyFile}, KnownHostsFile: kh}, ts
}

func TestHostKeyUnknownIsRefused(t *testing.T) {
	cfg, ts := setup(t, func(*testServer) ssh.PublicKey { return nil })
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("Dial to an unknown host: %v, want ErrHostKeyUnknown", err)
	}
	fp := ssh.FingerprintSHA256(ts.hostKey.PublicKey())
	for _, want := range []string{fp, fmt.Sprintf("ssh-keyscan -p %d %s >> %s", cfg.Port, cfg.Address, cfg.KnownHostsFile), "--accept-new-host-key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not show %q (fingerprint and how to trust it): %v", want, err)
		}
	}
}

func TestAcceptNewHostKey(t *testing.T) {
	cfg, ts := setup(t, func(*testServer) ssh.PublicKey { return nil })
	var log strings.Builder
	cfg.AcceptNewHostKey, cfg.Log = true, &log
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial with AcceptNewHostKey to an unknown host: %v", err)
	}
	c.Close()
	key := ts.hostKey.PublicKey()
	want := knownhosts.Line([]string{knownhosts.Normalize(ts.addr)}, key) + "\n"
	if got, _ := os.ReadFile(cfg.KnownHostsFile); string(got) != want {
		t.Errorf("known_hosts holds %q, want exactly %q", got, want)
	}
	for _, w := range []string{"[" + cfg.Address + "]:", key.Type(), ssh.FingerprintSHA256(key), cfg.KnownHostsFile} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("notice lacks %q: %q", w, log.String())
		}
	}
	if strings.Count(log.String(), "\n") != 1 {
		t.Errorf("notice is not one line: %q", log.String())
	}
	cfg.AcceptNewHostKey = false
	c, err = Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("second Dial, without AcceptNewHostKey: %v", err)
	}
	c.Close()
}

func TestAcceptNewHostKeyCreatesFile(t *testing.T) {
	cfg, _ := setup(t, func(*testServer) ssh.PublicKey { return nil })
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "ssh", "known_hosts")
	if _, err := Dial(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--accept-new-host-key") {
		t.Fatalf("Dial with a missing known_hosts: %v, want a refusal that names --accept-new-host-key", err)
	}
	cfg.AcceptNewHostKey, cfg.Log = true, io.Discard
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	c.Close()
	for p, mode := range map[string]os.FileMode{cfg.KnownHostsFile: 0o600, filepath.Dir(cfg.KnownHostsFile): 0o700} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %v", p, err, mode)
		}
	}
}

func TestAcceptNewHostKeyUnwritableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes a read-only file all the same")
	}
	cfg, _ := setup(t, func(*testServer) ssh.PublicKey { return nil })
	os.Chmod(cfg.KnownHostsFile, 0o400)
	cfg.AcceptNewHostKey, cfg.Log = true, io.Discard
	_, err := Dial(context.Background(), cfg)
	if err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), cfg.KnownHostsFile) {
		t.Fatalf("Dial with a read-only known_hosts: %v; want an error that names the file, not an unreachable host", err)
	}
}

func TestAcceptNewHostKeyKeepsLastLine(t *testing.T) {
	cfg, ts := setup(t, func(*testServer) ssh.PublicKey { return nil })
	other := "other.example " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newKey(t).PublicKey())))
	os.WriteFile(cfg.KnownHostsFile, []byte(other), 0o600) // no final newline
	cfg.AcceptNewHostKey, cfg.Log = true, io.Discard
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := other + "\n" + knownhosts.Line([]string{knownhosts.Normalize(ts.addr)}, ts.hostKey.PublicKey()) + "\n"
	if got, _ := os.ReadFile(cfg.KnownHostsFile); string(got) != want {
		t.Errorf("known_hosts holds %q, want %q", got, want)
	}
}

func TestAcceptNewHostKeyNeverAcceptsAChangedKey(t *testing.T) {
	old := newKey(t)
	cfg, ts := setup(t, func(*testServer) ssh.PublicKey { return old.PublicKey() })
	before, _ := os.ReadFile(cfg.KnownHostsFile)
	var log strings.Builder
	cfg.AcceptNewHostKey, cfg.Log = true, &log
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("Dial with AcceptNewHostKey to a host whose key changed: %v, want ErrHostKeyMismatch", err)
	}
	for _, want := range []string{ssh.FingerprintSHA256(ts.hostKey.PublicKey()), ssh.FingerprintSHA256(old.PublicKey()), "WARNING"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if after, _ := os.ReadFile(cfg.KnownHostsFile); !bytes.Equal(after, before) {
		t.Errorf("known_hosts changed from %q to %q", before, after)
	}
	if log.Len() > 0 {
		t.Errorf("notice printed for a refused key: %q", log.String())
	}
}

// Hosts dialled in parallel share one known_hosts file: each is added once, on
// a line of its own, even when the same host is dialled twice at once.
func TestAcceptNewHostKeyInParallel(t *testing.T) {
	cfg, _ := setup(t, func(*testServer) ssh.PublicKey { return nil })
	cfg.AcceptNewHostKey, cfg.Log = true, io.Discard
	clientKey := func() ssh.PublicKey {
		pem, _ := os.ReadFile(cfg.IdentityFiles[0])
		s, _ := ssh.ParsePrivateKey(pem)
		return s.PublicKey()
	}()
	var cfgs []Config
	for range 4 {
		ts := startServer(t, clientKey)
		c := cfg
		host, port, _ := net.SplitHostPort(ts.addr)
		c.Address = host
		fmt.Sscan(port, &c.Port)
		cfgs = append(cfgs, c, c)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cfgs))
	for i, c := range cfgs {
		wg.Go(func() {
			cl, err := Dial(context.Background(), c)
			if err == nil {
				cl.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("Dial: %v", err)
		}
	}
	data, _ := os.ReadFile(cfg.KnownHostsFile)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("known_hosts has %d lines, want 4 (one per host):\n%s", len(lines), data)
	}
	for _, l := range lines {
		if _, _, _, _, _, err := ssh.ParseKnownHosts([]byte(l)); err != nil {
			t.Errorf("line %q: %v", l, err)
		}
	}
}

func TestHostKeyChangedIsRefused(t *testing.T) {
	old := newKey(t)
	cfg, ts := setup(t, func(*testServer) ssh.PublicKey { return old.PublicKey() })
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("Dial to a host whose key changed: %v, want ErrHostKeyMismatch", err)
	}
	for _, want := range []string{ssh.FingerprintSHA256(ts.hostKey.PublicKey()), ssh.FingerprintSHA256(old.PublicKey()), "WARNING"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func connect(t *testing.T) *Client {
	cfg, _ := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunKeepsArgvAndReportsExit(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	out, err := c.Run(ctx, Cmd{Argv: []string{"printf", "%s|", "a b", "$(echo pwned)", "it's"}, Env: []string{"X=1 2"}})
	if err != nil || string(out) != "a b|$(echo pwned)|it's|" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = c.Run(ctx, Cmd{Argv: []string{"sh", "-c", "echo boom >&2; exit 3"}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(ee.Stderr, "boom") {
		t.Fatalf("failing command: %v", err)
	}
}

func TestWriteFileIsAtomicWithMode(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "stack.env")
	if err := c.WriteFile(ctx, p, []byte("SECRET=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(p)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v mode %v, want 0600", err, info.Mode().Perm())
	}
	before, _ := os.Stat(p)
	if err := c.WriteFile(ctx, p, []byte("SECRET=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if os.SameFile(before, after) {
		t.Errorf("the file was rewritten in place, not replaced by rename")
	}
	got, _ := c.ReadFile(ctx, p)
	if string(got) != "SECRET=2\n" {
		t.Errorf("read back %q", got)
	}
	// A file of many packets, written several at once, arrives whole and in
	// order.
	big := make([]byte, 3<<20+12345)
	rand.Read(big)
	if err := c.WriteFile(ctx, filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "big")); err != nil || !bytes.Equal(got, big) {
		t.Errorf("a 3 MiB file was not written as it is (%d bytes read, %v)", len(got), err)
	}
	if got, err := c.ReadFile(ctx, filepath.Join(dir, "big")); err != nil || !bytes.Equal(got, big) {
		t.Errorf("a 3 MiB file was not read back as it is (%d bytes, %v)", len(got), err)
	}
	if _, err := c.ReadFile(ctx, filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reading a missing file: %v, want an error matching os.ErrNotExist", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if err := c.Mkdir(ctx, filepath.Join(dir, "lock"), 0o700, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Mkdir(ctx, filepath.Join(dir, "lock"), 0o700, true); !errors.Is(err, os.ErrExist) {
		t.Errorf("second exclusive Mkdir: %v, want os.ErrExist", err)
	}
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

// A local file the user named that cannot be used is bad input (the CLI exits
// 2), told apart from a host that refuses or cannot be reached.
func TestUnusableLocalFiles(t *testing.T) {
	for name, change := range map[string]func(cfg *Config){
		"missing identity file":   func(cfg *Config) { cfg.IdentityFiles = []string{filepath.Join(t.TempDir(), "nope")} },
		"identity file not a key": func(cfg *Config) { os.WriteFile(cfg.IdentityFiles[0], []byte("hello"), 0o600) },
		"known_hosts is a folder": func(cfg *Config) { cfg.KnownHostsFile = t.TempDir() },
		"known_hosts missing":     func(cfg *Config) { cfg.KnownHostsFile = filepath.Join(t.TempDir(), "nope") },
	} {
		t.Run(name, func(t *testing.T) {
			cfg, _ := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
			change(&cfg)
			_, err := Dial(context.Background(), cfg)
			if !errors.Is(err, ErrLocalFile) {
				t.Errorf("Dial: %v, want ErrLocalFile", err)
			}
		})
	}
	cfg, _ := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial with good files: %v", err)
	}
	c.Close()
}

// An sshd that forbids forwarding is named as the cause, with the setting to
// change, not taken for a lost connection.
func TestForwardingRefused(t *testing.T) {
	cfg, ts := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	ts.noForwarding.Store(true)
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for network, setting := range map[string]string{"tcp": "AllowTcpForwarding yes", "unix": "AllowStreamLocalForwarding yes"} {
		addr := map[string]string{"tcp": "127.0.0.1:1", "unix": "/var/run/docker.sock"}[network]
		_, err := c.Dial(context.Background(), network, addr)
		if !errors.Is(err, ErrForwardingRefused) || !strings.Contains(err.Error(), setting) {
			t.Errorf("%s tunnel on a host that forbids it: %v", network, err)
		}
		if errors.Is(err, ErrDisconnected) || c.Lost() {
			t.Errorf("%s: a refused tunnel was taken for a lost connection", network)
		}
	}
}

// A host slow to answer (seconds, under load) is not a lost one.
func TestSlowHostIsNotLost(t *testing.T) {
	cfg, ts := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.keepaliveDelay.Store(int64(4 * time.Second))
	if c.Lost() {
		t.Errorf("a connection whose keepalive took 4 s was called lost")
	}
	c.Close()
	if !c.Lost() {
		t.Errorf("a closed connection is not lost")
	}
}

// A host that stops answering (its link cut: packets vanish, nothing is
// refused) fails the command running on it, as a lost connection, instead of
// leaving it waiting for TCP to give up.
func TestVanishedHostFailsItsCommands(t *testing.T) {
	every, wait := keepaliveEvery, keepaliveWait
	keepaliveEvery, keepaliveWait = 100*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { keepaliveEvery, keepaliveWait = every, wait })
	cfg, ts := setup(t, func(ts *testServer) ssh.PublicKey { return ts.hostKey.PublicKey() })
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), Cmd{Argv: []string{"sleep", "30"}})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if c.Lost() {
		t.Fatal("a host that answers was called lost")
	}
	ts.keepaliveDelay.Store(int64(time.Hour)) // it answers no more
	select {
	case err := <-done:
		if !errors.Is(err, ErrDisconnected) {
			t.Errorf("the command on a vanished host: %v, want ErrDisconnected", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command on a vanished host still waits after 10 s")
	}
}

// An SFTP read that hangs (a stalled host) fails its caller when the caller's
// context ends; a write never starts once it has ended (and, once started, is
// waited for, so it cannot land after its caller moved on).
func TestFileCallsHonourContext(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := withContext(ctx, func() ([]byte, error) { <-hang; return nil, nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a hung call: %v, want the context's deadline", err)
	}
	c := connect(t)
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := c.ReadFile(cctx, "/etc/hostname"); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadFile with a cancelled context: %v", err)
	}
	p := filepath.Join(t.TempDir(), "late")
	if err := c.WriteFile(cctx, p, []byte("x"), 0o600); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteFile with a cancelled context: %v", err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Errorf("a write with a cancelled context landed")
	}
}

// Host certificates signed by a CA that known_hosts trusts (@cert-authority)
// are accepted as OpenSSH accepts them; a plain key the CA did not sign is
// unknown (not "changed"); a key marked @revoked is refused as revoked.
func TestHostCertificates(t *testing.T) {
	ca, hostKey := newKey(t), newKey(t)
	cert := &ssh.Certificate{Key: hostKey.PublicKey(), CertType: ssh.HostCert, KeyId: "host", ValidPrincipals: []string{"127.0.0.1"},
		ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(t *testing.T, shown ssh.Signer, knownHosts func(hostport string) string) error {
		cfg, _ := setup(t, func(*testServer) ssh.PublicKey { return nil })
		clientKey, _ := os.ReadFile(cfg.IdentityFiles[0])
		signer, _ := ssh.ParsePrivateKey(clientKey)
		ts := startServerWith(t, signer.PublicKey(), shown)
		host, port, _ := net.SplitHostPort(ts.addr)
		fmt.Sscan(port, &cfg.Port)
		cfg.Address = host
		os.WriteFile(cfg.KnownHostsFile, []byte(knownHosts(fmt.Sprintf("[%s]:%s", host, port))), 0o600)
		c, err := Dial(context.Background(), cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	caLine := func(hp string) string {
		return "@cert-authority " + hp + " " + string(ssh.MarshalAuthorizedKey(ca.PublicKey()))
	}
	if err := dial(t, certSigner, caLine); err != nil {
		t.Errorf("a host certificate signed by the trusted CA: %v", err)
	}
	if err := dial(t, hostKey, caLine); !errors.Is(err, ErrHostKeyUnknown) {
		t.Errorf("a plain key with only a CA on file: %v, want ErrHostKeyUnknown", err)
	}
	revoked := func(hp string) string {
		return hp + " " + string(ssh.MarshalAuthorizedKey(hostKey.PublicKey())) + "@revoked * " + string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	}
	if err := dial(t, hostKey, revoked); !errors.Is(err, ErrHostKeyRevoked) || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "@revoked") {
		t.Errorf("a revoked key: %v, want ErrHostKeyRevoked", err)
	}
}
