package remote

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyError is a refused host key, with what the user needs to decide.
type hostKeyError struct {
	kind        error
	host        string // as written in known_hosts: address, or [address]:port
	address     string
	port        int
	file        string
	fingerprint string
	keyType     string
	known       []string // fingerprints on file for a changed key
}

func (e *hostKeyError) Unwrap() error { return e.kind }

func (e *hostKeyError) Error() string {
	if e.kind == ErrHostKeyMismatch {
		return fmt.Sprintf("%v for %s: WARNING: the host now shows %s key %s but %s has %s. "+
			"Someone may be intercepting the connection, or the host was reinstalled. "+
			"Check the new fingerprint with the host's owner, then remove the old line (ssh-keygen -R %q -f %s) and connect again",
			e.kind, e.host, e.keyType, e.fingerprint, e.file, strings.Join(e.known, ", "), e.host, e.file)
	}
	return fmt.Sprintf("%v for %s: %s key %s is not in %s. Check the fingerprint with the host's owner, then add it: "+
		"ssh-keyscan -p %d %s >> %s (or pass --accept-new-host-key to trust it on this first connection)",
		e.kind, e.host, e.keyType, e.fingerprint, e.file, e.port, e.address, e.file)
}

// knownHostsMu serialises the check-and-append of a new host key: hosts dialled
// in parallel may share one known_hosts file.
var knownHostsMu sync.Mutex

// hostKeyCheck returns a callback that accepts only keys listed in the known_hosts
// file (or, with cfg.AcceptNewHostKey, also a key for a host the file does not
// know yet, which it adds), and the key algorithms on file for the host so the
// server is asked for a key we can check (otherwise a host with several keys may
// offer one we lack).
func hostKeyCheck(cfg Config) (ssh.HostKeyCallback, []string, error) {
	if cfg.KnownHostsFile == "" {
		return nil, nil, fmt.Errorf("%s: no known_hosts file set; host keys are always verified, so set known_hosts for the host in the inventory", cfg.Name)
	}
	check, err := readKnownHosts(cfg)
	if err != nil {
		return nil, nil, err
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := refusal(cfg, key, check(hostname, remote, key))
		if errors.Is(err, ErrHostKeyUnknown) && cfg.AcceptNewHostKey {
			return acceptNew(cfg, hostname, remote, key)
		}
		return err
	}
	return cb, algorithmsOnFile(cfg, check), nil
}

// readKnownHosts parses the host's known_hosts file. A missing file is an empty
// one when new keys may be added to it.
func readKnownHosts(cfg Config) (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(cfg.KnownHostsFile); errors.Is(err, fs.ErrNotExist) && cfg.AcceptNewHostKey {
		return knownhosts.New()
	}
	check, err := knownhosts.New(cfg.KnownHostsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: known_hosts %s does not exist; create it with the host's key (ssh-keyscan -p %d %s >> %s) after checking its fingerprint, or pass --accept-new-host-key",
			cfg.Name, cfg.KnownHostsFile, cfg.port(), cfg.Address, cfg.KnownHostsFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read known_hosts: %w", cfg.Name, err)
	}
	return check, nil
}

// refusal turns the known_hosts verdict on key into a *hostKeyError when the key
// is unknown or changed; other results pass through.
func refusal(cfg Config, key ssh.PublicKey, err error) error {
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return err
	}
	he := &hostKeyError{kind: ErrHostKeyUnknown, host: knownhosts.Normalize(cfg.addr()), address: cfg.Address, port: cfg.port(),
		file: cfg.KnownHostsFile, fingerprint: ssh.FingerprintSHA256(key), keyType: key.Type()}
	if len(ke.Want) > 0 {
		he.kind = ErrHostKeyMismatch
		for _, w := range ke.Want {
			he.known = append(he.known, w.Key.Type()+" "+ssh.FingerprintSHA256(w.Key))
		}
	}
	return he
}

// knownHostsError is a known_hosts file that failed us during the handshake: it
// is reported as it is, not as an unreachable host.
type knownHostsError struct{ error }

func (e *knownHostsError) Unwrap() error { return e.error }

// acceptNew adds the key of a host known_hosts does not list, like OpenSSH's
// StrictHostKeyChecking=accept-new. The file is read again under the lock, so a
// parallel dial that added this host first is honoured: its key must match.
func acceptNew(cfg Config, hostname string, remote net.Addr, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	check, err := readKnownHosts(cfg)
	if err != nil {
		return &knownHostsError{err}
	}
	if err := refusal(cfg, key, check(hostname, remote, key)); !errors.Is(err, ErrHostKeyUnknown) {
		return err
	}
	host := knownhosts.Normalize(hostname)
	if err := appendLine(cfg.KnownHostsFile, knownhosts.Line([]string{host}, key)); err != nil {
		return &knownHostsError{fmt.Errorf("%s: add the host key to %s: %w; fix the file's permissions, or add the key yourself", cfg.Name, cfg.KnownHostsFile, err)}
	}
	log := cfg.Log
	if log == nil {
		log = os.Stderr
	}
	fmt.Fprintf(log, "taledeploy: %s: trusted new host key for %s: %s %s, added to %s\n",
		cfg.Name, host, key.Type(), ssh.FingerprintSHA256(key), cfg.KnownHostsFile)
	return nil
}

// appendLine appends one line to a known_hosts file, creating it (0600) and its
// folder (0700) when missing.
func appendLine(file, line string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// A last line without its newline would swallow ours.
	last := []byte{'\n'}
	if info, err := f.Stat(); err == nil && info.Size() > 0 {
		f.ReadAt(last, info.Size()-1)
	}
	if last[0] != '\n' {
		line = "\n" + line
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// algorithmsOnFile asks the file which key types it holds for this host, by
// checking a throwaway key. None on file leaves the choice to the server.
func algorithmsOnFile(cfg Config, check ssh.HostKeyCallback) []string {
	_, probe, _ := ed25519.GenerateKey(nil)
	pk, _ := ssh.NewSignerFromKey(probe)
	var algos []string
	var ke *knownhosts.KeyError
	if err := check(cfg.addr(), &net.TCPAddr{IP: net.ParseIP(cfg.Address)}, pk.PublicKey()); errors.As(err, &ke) {
		for _, w := range ke.Want {
			algos = append(algos, algorithmsFor(w.Key.Type())...)
		}
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// authMethods offers the identity file's key and the ssh-agent's keys.
func authMethods(cfg Config) ([]ssh.AuthMethod, func(), error) {
	var signers []ssh.Signer
	closeFn := func() {}
	if cfg.IdentityFile != "" {
		s, err := loadKey(cfg)
		if err != nil {
			return nil, closeFn, err
		}
		signers = append(signers, s)
	}
	var agentSigners func() ([]ssh.Signer, error)
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			closeFn = func() { conn.Close() }
			agentSigners = agent.NewClient(conn).Signers
		}
	}
	if len(signers) == 0 && agentSigners == nil {
		return nil, closeFn, fmt.Errorf("%w: %s: no identity_file in the inventory and no ssh-agent (SSH_AUTH_SOCK); set one", ErrAuth, cfg.Name)
	}
	return []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		all := signers
		if agentSigners != nil {
			if more, err := agentSigners(); err == nil {
				all = append(append([]ssh.Signer{}, signers...), more...)
			}
		}
		return all, nil
	})}, closeFn, nil
}

func loadKey(cfg Config) (ssh.Signer, error) {
	pem, err := os.ReadFile(cfg.IdentityFile)
	if err != nil {
		return nil, fmt.Errorf("%s: read identity_file: %w", cfg.Name, err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		if err != nil {
			return nil, fmt.Errorf("%s: parse identity_file %s: %w", cfg.Name, cfg.IdentityFile, err)
		}
		return s, nil
	}
	var pass []byte
	if p, ok := os.LookupEnv("TALEDEPLOY_SSH_PASSPHRASE"); ok {
		pass = []byte(p)
	} else if cfg.Passphrase != nil {
		if pass, err = cfg.Passphrase(cfg.IdentityFile); err != nil {
			return nil, fmt.Errorf("%w for %s: %v", ErrPassphrase, cfg.IdentityFile, err)
		}
	} else {
		return nil, fmt.Errorf("%w: %s is encrypted; set TALEDEPLOY_SSH_PASSPHRASE or load it into ssh-agent", ErrPassphrase, cfg.IdentityFile)
	}
	s, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
	if err != nil {
		// The passphrase itself is never part of the message.
		return nil, fmt.Errorf("%w: %s: wrong passphrase or unreadable key", ErrPassphrase, cfg.IdentityFile)
	}
	return s, nil
}
