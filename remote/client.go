// Package remote is the one SSH connection taledeploy keeps to a host: it runs
// commands given as argv, moves files over SFTP (atomically) and opens tunnels
// (TCP or unix socket) through the host. Host keys are always verified.
package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Errors a caller can act on. They are wrapped with the host and the fix.
var (
	ErrHostKeyUnknown  = errors.New("host key unknown")
	ErrHostKeyMismatch = errors.New("host key changed")
	ErrHostKeyRevoked  = errors.New("host key revoked")
	ErrAuth            = errors.New("ssh authentication failed")
	ErrUnreachable     = errors.New("host unreachable")
	ErrPassphrase      = errors.New("ssh key passphrase needed")
	ErrDisconnected    = errors.New("ssh connection lost")
	// ErrLocalFile marks a local file the user named (an identity file, a
	// known_hosts file) that cannot be used: bad input, not a host's fault.
	ErrLocalFile = errors.New("local ssh file unusable")
	// ErrForwardingRefused is an sshd that forbids TCP or unix-socket
	// forwarding: taledeploy reaches Docker, Caddy and health paths that way.
	ErrForwardingRefused = errors.New("port forwarding refused")
)

// Config says how to reach one host.
type Config struct {
	Name    string // for messages
	Address string
	Port    int // 0 means 22
	User    string
	// IdentityFiles are private key files, offered in order; none is needed
	// when Key or an agent is used.
	IdentityFiles []string
	// Key is a private key's text, as CI passes it in EnvKey. When set it is
	// offered instead of IdentityFiles, which are then not read.
	Key []byte
	// KnownHostsFile and KnownHosts (known_hosts lines, as CI passes them in
	// EnvKnownHosts) are the host keys trusted; either may be empty, not both.
	KnownHostsFile string
	KnownHosts     []byte
	// Jumps are the hosts to go through to reach this one, first to last
	// (OpenSSH's ProxyJump). Each host key is checked against the same
	// known_hosts sources; a jump without identity files is offered the
	// host's.
	Jumps []Hop
	// AcceptNewHostKey trusts the key of a host KnownHostsFile does not list yet
	// and adds it there, like OpenSSH's StrictHostKeyChecking=accept-new. A changed
	// key is refused all the same.
	AcceptNewHostKey bool
	// Passphrase is asked for an encrypted key, named by its file or EnvKey.
	// Nil means no way to ask.
	Passphrase func(keyName string) ([]byte, error)
	Timeout    time.Duration
	// Log receives notices, such as a host key newly added; os.Stderr when nil.
	Log io.Writer

	hop bool // a jump host on the way, for messages
}

// Hop is one jump host on the way to a host.
type Hop struct {
	Name          string // as written in ProxyJump, for messages
	Address       string
	Port          int // 0 means 22
	User          string
	IdentityFiles []string
}

func (c Config) port() int {
	if c.Port == 0 {
		return 22
	}
	return c.Port
}

func (c Config) addr() string { return net.JoinHostPort(c.Address, strconv.Itoa(c.port())) }

// hops lists the hosts to connect to, in order: the jump hosts, then this one.
func (c Config) hops() []Config {
	var hs []Config
	for _, j := range c.Jumps {
		h := c
		h.Name = fmt.Sprintf("%s (jump host %s)", c.Name, j.Name)
		h.Address, h.Port, h.User, h.Jumps, h.hop = j.Address, j.Port, j.User, nil, true
		if len(j.IdentityFiles) > 0 {
			h.IdentityFiles = j.IdentityFiles
		}
		hs = append(hs, h)
	}
	return append(hs, c)
}

// Client is one SSH connection to a host. It is safe for concurrent use.
type Client struct {
	cfg  Config
	ssh  *ssh.Client
	via  []*ssh.Client // the jump hosts' connections, first to last
	mu   sync.Mutex
	sftp *sftp.Client
	lost chan struct{} // closed when the connection ends

	// spare is a session channel opened ahead of the next command: opening
	// one waits a round trip, which a command that finds it ready does not.
	spare     chan *ssh.Session
	refilling atomic.Bool
	closed    atomic.Bool
	active    atomic.Int32 // sessions in use: commands, and SFTP once started
}

// Dial connects and authenticates, through cfg.Jumps when there are any,
// verifying every host key against cfg.KnownHostsFile and cfg.KnownHosts.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	keys := newKeyring(cfg)
	defer keys.close()
	var via []*ssh.Client
	closeVia := func() {
		for i := len(via) - 1; i >= 0; i-- {
			via[i].Close()
		}
	}
	prev := ""
	for _, h := range cfg.hops() {
		c, err := dialHop(ctx, h, keys, via, prev)
		if err != nil {
			closeVia()
			return nil, err
		}
		if !h.hop {
			cl := &Client{cfg: cfg, ssh: c, via: via, lost: make(chan struct{}), spare: make(chan *ssh.Session, 1)}
			go func() {
				cl.ssh.Wait()
				close(cl.lost)
			}()
			go cl.keepAlive()
			return cl, nil
		}
		via = append(via, c)
		prev = h.Name
	}
	panic("unreachable: hops ends with the host itself")
}

// dialHop connects to one host: over TCP for the first, through the last
// jump host's connection (prev names it) for the others.
func dialHop(ctx context.Context, h Config, keys *keyring, via []*ssh.Client, prev string) (*ssh.Client, error) {
	hostKey, algos, err := hostKeyCheck(h)
	if err != nil {
		return nil, err
	}
	auth, err := keys.authMethods(h)
	if err != nil {
		return nil, err
	}
	timeout := h.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	sc := &ssh.ClientConfig{
		User:              h.User,
		Auth:              auth,
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
	}
	var conn net.Conn
	if len(via) == 0 {
		d := net.Dialer{Timeout: timeout}
		if conn, err = d.DialContext(ctx, "tcp", h.addr()); err != nil {
			return nil, fmt.Errorf("%w: %s (%s): %v; check the address and port in the inventory (or the ssh config) and that sshd runs", ErrUnreachable, h.Name, h.addr(), err)
		}
	} else {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err = via[len(via)-1].DialContext(dctx, "tcp", h.addr())
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w: %s (%s): %s could not connect to it: %v; check the address and port, and that the jump host allows forwarding (sshd's AllowTcpForwarding)", ErrUnreachable, h.Name, h.addr(), prev, err)
		}
	}
	// The handshake may wait on ssh-agent, which may wait for a touch of a
	// hardware key: give it longer than the TCP connect.
	cc, chans, reqs, err := handshake(ctx, conn, h.addr(), sc, 3*timeout)
	if err != nil {
		var hk *hostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		var kh *knownHostsError
		if errors.As(err, &kh) {
			return nil, kh.error
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("%w: %s as %q: the host accepted none of the offered keys; check the host's identity_file (or %s, the ssh config's IdentityFile, ssh-agent) and the host's authorized_keys", ErrAuth, h.Name, h.User, EnvKey)
		}
		return nil, fmt.Errorf("%w: %s (%s): ssh handshake: %v", ErrUnreachable, h.Name, h.addr(), err)
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// handshake runs the SSH handshake on conn, giving up (and closing conn) when
// ctx ends or timeout passes: a host that accepts TCP but never speaks SSH
// must not hang a deploy.
func handshake(ctx context.Context, conn net.Conn, addr string, sc *ssh.ClientConfig, timeout time.Duration) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	type result struct {
		c     ssh.Conn
		chans <-chan ssh.NewChannel
		reqs  <-chan *ssh.Request
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, chans, reqs, err := ssh.NewClientConn(conn, addr, sc)
		done <- result{c, chans, reqs, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case r := <-done:
		if r.err != nil {
			conn.Close()
		}
		return r.c, r.chans, r.reqs, r.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = fmt.Errorf("no SSH handshake within %v", timeout)
	}
	conn.Close()
	if r := <-done; r.err == nil {
		r.c.Close()
	}
	return nil, nil, nil, err
}

// lostErr marks err as ErrDisconnected when the connection is gone, so callers
// stop at once instead of retrying until a timeout.
func (c *Client) lostErr(err error) error {
	if errors.Is(err, ErrDisconnected) || !c.Lost() {
		return err
	}
	return fmt.Errorf("%s: %w (%v); nothing more was done on the host: run the same command again, it picks up from what runs", c.cfg.Name, ErrDisconnected, err)
}

// Gone tells whether the connection is known to have ended, without asking
// the server.
func (c *Client) Gone() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

// Lost tells whether the connection is gone. When the transport has not
// noticed yet (a command's session may fail first), it asks the server.
func (c *Client) Lost() bool {
	select {
	case <-c.lost:
		return true
	default:
	}
	reply := make(chan error, 1)
	go func() {
		// OpenSSH answers this request with a failure: only an error means no answer.
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	select {
	case err := <-reply:
		return err != nil
	case <-c.lost:
		return true
	case <-time.After(keepaliveWait):
		return true
	}
}

// keepAlive asks the server every keepaliveEvery whether it is there, as
// OpenSSH's ServerAliveInterval does, and ends the connection when it does
// not answer: a host whose link is cut drops packets without a word, and
// TCP would wait many minutes before giving up, every command on the host
// (and its lock's heartbeat) hanging meanwhile. Ending it fails them, as
// ErrDisconnected, so the command stops and says which host is gone.
func (c *Client) keepAlive() {
	t := time.NewTicker(keepaliveEvery)
	defer t.Stop()
	for {
		select {
		case <-c.lost:
			return
		case <-t.C:
		}
		if c.Lost() {
			c.ssh.Close()
			return
		}
	}
}

// keepaliveEvery is how often keepAlive asks: with keepaliveWait, a host
// that vanished is known within 20 s, before its lock can be judged stale.
var keepaliveEvery = 5 * time.Second

// keepaliveWait is how long Lost waits for the server's answer. A loaded host
// (a build beside the live color) can take seconds; a slow host is not a lost
// one, and calling it lost would skip a switch-back that still works.
var keepaliveWait = 15 * time.Second

// Close ends the connection.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.dropSpare()
	c.mu.Lock()
	if c.sftp != nil {
		c.sftp.Close()
	}
	c.mu.Unlock()
	err := c.ssh.Close()
	for i := len(c.via) - 1; i >= 0; i-- {
		c.via[i].Close()
	}
	return err
}

// Name is the host's name in the inventory.
func (c *Client) Name() string { return c.cfg.Name }

// ExitError is a command that ran and failed. Stderr is kept whole; the message
// carries its last line only.
type ExitError struct {
	Argv   []string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	last := strings.TrimSpace(e.Stderr)
	if i := strings.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	name := strings.Join(e.Argv[:min(len(e.Argv), 3)], " ")
	if len(e.Argv) >= 3 && e.Argv[1] == "-c" {
		// A script is named by its first line, not printed whole.
		first, _, _ := strings.Cut(e.Argv[2], "\n")
		name = e.Argv[0] + " -c " + first
	}
	if last == "" {
		return fmt.Sprintf("%s: exit status %d", name, e.Code)
	}
	return fmt.Sprintf("%s: exit status %d: %s", name, e.Code, last)
}

// Cmd is one command to run on the host.
type Cmd struct {
	Argv   []string
	Env    []string  // NAME=VALUE, passed through env(1) since sshd rarely accepts SetEnv
	Stdin  io.Reader // optional
	Stdout io.Writer // optional: stream output here instead of returning it
	Stderr io.Writer // optional: stream stderr here as well as keeping it
}

// Run runs cmd and returns its standard output. A command that exits non-zero
// returns *ExitError. Cancelling ctx closes the session.
func (c *Client) Run(ctx context.Context, cmd Cmd) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // nothing starts on the host once the caller gave up
	}
	line, err := CommandLine(cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.cfg.Name, err)
	}
	s, spare, err := c.session()
	if err != nil {
		return nil, c.lostErr(fmt.Errorf("%s: new ssh session: %w", c.cfg.Name, err))
	}
	defer c.active.Add(-1)
	var out, errb bytes.Buffer
	wire := func(s *ssh.Session) {
		s.Stdin = cmd.Stdin
		s.Stdout = &out
		if cmd.Stdout != nil {
			s.Stdout = cmd.Stdout
		}
		s.Stderr = &errb
		if cmd.Stderr != nil {
			s.Stderr = io.MultiWriter(&errb, cmd.Stderr)
		}
	}
	wire(s)
	var cur atomic.Pointer[ssh.Session] // what a cancel ends
	cur.Store(s)
	done := make(chan error, 1)
	go func() {
		s := s
		err := s.Start(line)
		if err != nil && spare && ctx.Err() == nil {
			// The server ended the spare meanwhile (sshd's ChannelTimeout,
			// say): the command never started, so it starts on a new session.
			s.Close()
			if s, err = c.ssh.NewSession(); err != nil {
				done <- err
				return
			}
			wire(s)
			cur.Store(s)
			if ctx.Err() != nil {
				s.Close()
				done <- ctx.Err()
				return
			}
			err = s.Start(line)
		}
		if err != nil {
			done <- err
			return
		}
		done <- s.Wait()
	}()
	select {
	case <-ctx.Done():
		s := cur.Load()
		s.Signal(ssh.SIGTERM)
		s.Close()
		return nil, ctx.Err()
	case err = <-done:
	}
	cur.Load().Close()
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return out.Bytes(), &ExitError{Argv: cmd.Argv, Code: ee.ExitStatus(), Stderr: errb.String()}
		}
		return out.Bytes(), c.lostErr(fmt.Errorf("%s: %s: %w", c.cfg.Name, strings.Join(cmd.Argv[:min(len(cmd.Argv), 3)], " "), err))
	}
	return out.Bytes(), nil
}

// session is a new session channel for a command: the spare when there is
// one, and another spare is opened meanwhile. At most one spare waits, so a
// connection holds one session more than its commands do (sshd allows 10
// by default).
func (c *Client) session() (s *ssh.Session, spare bool, err error) {
	select {
	case s = <-c.spare:
		spare = true
	default:
		if s, err = c.ssh.NewSession(); err != nil {
			return nil, false, err
		}
	}
	c.active.Add(1)
	go c.refill()
	return s, spare, nil
}

// spareBelow is how many sessions may be in use for a spare to be opened:
// with it and the sessions just closed (sshd frees one half a round trip
// after its command ends), a connection stays under sshd's MaxSessions
// default of 10. A push uses up to 6 at once.
const spareBelow = 7

// refill opens a spare session unless one waits or is on its way.
func (c *Client) refill() {
	if !c.refilling.CompareAndSwap(false, true) {
		return
	}
	defer c.refilling.Store(false)
	if len(c.spare) > 0 || c.closed.Load() || c.active.Load() >= spareBelow {
		return
	}
	s, err := c.ssh.NewSession()
	if err != nil {
		return // the next command opens its own, and says why if it cannot
	}
	select {
	case c.spare <- s:
		if c.closed.Load() {
			// Close may have emptied spare before this one went in.
			c.dropSpare()
		}
	default:
		s.Close()
	}
}

func (c *Client) dropSpare() {
	for {
		select {
		case s := <-c.spare:
			s.Close()
		default:
			return
		}
	}
}

// Dial opens a connection from the host to addr: network "tcp" (host:port as the
// host resolves it) or "unix" (a socket path on the host).
func (c *Client) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		conn, err := c.ssh.Dial(network, addr)
		ch <- res{conn, err}
	}()
	select {
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	case r := <-ch:
		if r.err != nil {
			var oce *ssh.OpenChannelError
			if errors.As(r.err, &oce) && oce.Reason == ssh.Prohibited {
				what := map[string]string{"tcp": "AllowTcpForwarding", "unix": "AllowStreamLocalForwarding"}[network]
				return nil, fmt.Errorf("%s: tunnel to %s %s: %w: sshd on the host forbids it; set %s yes in its sshd_config (the default) and reload sshd, and check that the deploy key's line in authorized_keys has no restrict, no-port-forwarding or permitopen", c.cfg.Name, network, addr, ErrForwardingRefused, what)
			}
			return nil, c.lostErr(fmt.Errorf("%s: tunnel to %s %s: %w", c.cfg.Name, network, addr, r.err))
		}
		return r.c, nil
	}
}

// localFileError is an error about a local SSH file; it matches ErrLocalFile
// and keeps its own message.
type localFileError struct{ err error }

func (e localFileError) Error() string   { return e.err.Error() }
func (e localFileError) Unwrap() []error { return []error{e.err, ErrLocalFile} }

func localFile(err error) error { return localFileError{err} }
