package remote

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyError is a refused host key, with what the user needs to decide.
type hostKeyError struct {
	kind        error
	host        string // as written in known_hosts: address, or [address]:port
	via         string // "jump host " for a host on the way, else ""
	address     string
	port        int
	file        string // the known_hosts file; "" when only EnvKnownHosts is read
	env         bool   // EnvKnownHosts was read too
	fingerprint string
	keyType     string
	known       []string // keys on file for a changed key, each with where it is
	knownInFile bool     // one of them is in file
	knownInEnv  bool     // one of them is in EnvKnownHosts
}

func (e *hostKeyError) Unwrap() error { return e.kind }

// sources names where known keys were looked for.
func (e *hostKeyError) sources() string {
	switch {
	case e.file != "" && e.env:
		return e.file + " or " + EnvKnownHosts
	case e.file != "":
		return e.file
	}
	return EnvKnownHosts
}

func (e *hostKeyError) Error() string {
	if e.kind == ErrHostKeyMismatch {
		var fix []string
		if e.knownInFile {
			fix = append(fix, fmt.Sprintf("remove the old line from %s (ssh-keygen -R %q -f %s)", e.file, e.host, e.file))
		}
		if e.knownInEnv {
			fix = append(fix, fmt.Sprintf("replace the old line in %s", EnvKnownHosts))
		}
		return fmt.Sprintf("%v for %s%s: WARNING: the host now shows %s key %s but %s has %s. "+
			"Someone may be intercepting the connection, or the host was reinstalled. "+
			"Check the new fingerprint with the host's owner, then %s and connect again",
			e.kind, e.via, e.host, e.keyType, e.fingerprint, e.sources(), strings.Join(e.known, ", "), strings.Join(fix, " and "))
	}
	if e.file == "" {
		return fmt.Sprintf("%v for %s%s: %s key %s is not in %s. Check the fingerprint with the host's owner, then add the line "+
			"that `ssh-keyscan -p %d %s` prints to %s (in CI, the secret it comes from), or set known_hosts for the host in the inventory",
			e.kind, e.via, e.host, e.keyType, e.fingerprint, EnvKnownHosts, e.port, e.address, EnvKnownHosts)
	}
	return fmt.Sprintf("%v for %s%s: %s key %s is not in %s. Check the fingerprint with the host's owner, then add it: "+
		"ssh-keyscan -p %d %s >> %s (or pass --accept-new-host-key to trust it on this first connection)",
		e.kind, e.via, e.host, e.keyType, e.fingerprint, e.sources(), e.port, e.address, e.file)
}

// knownHostsMu serialises the check-and-append of a new host key: hosts dialled
// in parallel may share one known_hosts file.
var knownHostsMu sync.Mutex

// hostKeyCheck returns a callback that accepts only keys listed in the known_hosts
// file or the KnownHosts lines (or, with cfg.AcceptNewHostKey, also a key for a
// host they do not know yet, which it adds to the file), and the key algorithms
// on file for the host so the server is asked for a key we can check
// (otherwise a host with several keys may offer one we lack).
func hostKeyCheck(cfg Config) (ssh.HostKeyCallback, []string, error) {
	if cfg.KnownHostsFile == "" && len(cfg.KnownHosts) == 0 {
		return nil, nil, fmt.Errorf("%s: no known_hosts file set and %s is empty; host keys are always verified, so set known_hosts for the host in the inventory, or %s to the host's known_hosts lines",
			cfg.Name, EnvKnownHosts, EnvKnownHosts)
	}
	check, err := readKnownHosts(cfg)
	if err != nil {
		return nil, nil, err
	}
	cas := authorities(cfg)
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := refusal(cfg, key, cas, check(hostname, remote, key))
		if errors.Is(err, ErrHostKeyUnknown) && cfg.AcceptNewHostKey && cfg.KnownHostsFile != "" {
			return acceptNew(cfg, hostname, remote, key)
		}
		return err
	}
	return cb, algorithmsOnFile(cfg, check, cas), nil
}

// authorities lists the keys of the @cert-authority lines of the host's
// known_hosts sources. x/crypto's known_hosts check lists such a CA among a
// host's known keys; a CA is not a host key, so it must not narrow the key
// types asked for, nor make a plain key look "changed".
func authorities(cfg Config) map[string]bool {
	cas := map[string]bool{}
	sources := [][]byte{cfg.KnownHosts}
	if cfg.KnownHostsFile != "" {
		if data, err := os.ReadFile(cfg.KnownHostsFile); err == nil {
			sources = append(sources, data)
		}
	}
	for _, src := range sources {
		for _, line := range strings.Split(string(src), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 || f[0] != "@cert-authority" {
				continue
			}
			if key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(f[2:], " "))); err == nil {
				cas[string(key.Marshal())] = true
			}
		}
	}
	return cas
}

// readKnownHosts parses the host's known_hosts file and the KnownHosts lines.
// A missing file is an empty one when new keys may be added to it, or when
// KnownHosts has lines (a CI runner has no ~/.ssh/known_hosts).
func readKnownHosts(cfg Config) (ssh.HostKeyCallback, error) {
	var files []string
	if f := cfg.KnownHostsFile; f != "" {
		_, err := os.Stat(f)
		switch {
		case errors.Is(err, fs.ErrNotExist) && (cfg.AcceptNewHostKey || len(cfg.KnownHosts) > 0):
		case errors.Is(err, fs.ErrNotExist):
			return nil, localFile(fmt.Errorf("%s: known_hosts %s does not exist; create it with the host's key (ssh-keyscan -p %d %s >> %s) after checking its fingerprint, or pass --accept-new-host-key",
				cfg.Name, f, cfg.port(), cfg.Address, f))
		default:
			files = append(files, f)
		}
	}
	if len(cfg.KnownHosts) > 0 {
		// knownhosts reads files only. These lines are public keys, not secrets;
		// the file lives for the parse alone.
		tmp, err := os.CreateTemp("", "taledeploy-known-hosts-*")
		if err != nil {
			return nil, fmt.Errorf("%s: read %s: %w", cfg.Name, EnvKnownHosts, err)
		}
		defer os.Remove(tmp.Name())
		_, err = tmp.Write(cfg.KnownHosts)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: read %s: %w", cfg.Name, EnvKnownHosts, err)
		}
		files = append(files, tmp.Name())
		check, err := knownhosts.New(files...)
		if err != nil {
			// Name the variable, not the temporary file.
			msg := strings.ReplaceAll(err.Error(), tmp.Name(), EnvKnownHosts)
			return nil, localFile(fmt.Errorf("%s: read known_hosts: %s", cfg.Name, msg))
		}
		return check, nil
	}
	check, err := knownhosts.New(files...)
	if err != nil {
		return nil, localFile(fmt.Errorf("%s: read known_hosts: %w", cfg.Name, err))
	}
	return check, nil
}

// refusal turns the known_hosts verdict on key into a *hostKeyError when the key
// is unknown or changed; other results pass through.
func refusal(cfg Config, key ssh.PublicKey, cas map[string]bool, err error) error {
	var re *knownhosts.RevokedError
	if errors.As(err, &re) {
		where := fmt.Sprintf("%s line %d", EnvKnownHosts, re.Revoked.Line)
		if re.Revoked.Filename == cfg.KnownHostsFile {
			where = fmt.Sprintf("%s:%d", re.Revoked.Filename, re.Revoked.Line)
		}
		return &knownHostsError{fmt.Errorf("%w: %s (%s) shows %s key %s, which %s marks @revoked; it is refused. Ask the host's owner for its current key",
			ErrHostKeyRevoked, cfg.Name, cfg.addr(), key.Type(), ssh.FingerprintSHA256(key), where)}
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return err
	}
	// A CA on file is no known host key: a plain key it did not sign is
	// unknown, not changed.
	ke.Want = slices.DeleteFunc(slices.Clone(ke.Want), func(w knownhosts.KnownKey) bool { return cas[string(w.Key.Marshal())] })
	he := &hostKeyError{kind: ErrHostKeyUnknown, host: knownhosts.Normalize(cfg.addr()), address: cfg.Address, port: cfg.port(),
		file: cfg.KnownHostsFile, env: len(cfg.KnownHosts) > 0, fingerprint: ssh.FingerprintSHA256(key), keyType: key.Type()}
	if cfg.hop {
		he.via = "jump host "
	}
	if len(ke.Want) > 0 {
		he.kind = ErrHostKeyMismatch
		for _, w := range ke.Want {
			where := fmt.Sprintf("%s line %d", EnvKnownHosts, w.Line)
			if w.Filename == cfg.KnownHostsFile {
				where = fmt.Sprintf("%s:%d", w.Filename, w.Line)
				he.knownInFile = true
			} else {
				he.knownInEnv = true
			}
			he.known = append(he.known, fmt.Sprintf("%s %s (%s)", w.Key.Type(), ssh.FingerprintSHA256(w.Key), where))
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
	if err := refusal(cfg, key, authorities(cfg), check(hostname, remote, key)); !errors.Is(err, ErrHostKeyUnknown) {
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
func algorithmsOnFile(cfg Config, check ssh.HostKeyCallback, cas map[string]bool) []string {
	_, probe, _ := ed25519.GenerateKey(nil)
	pk, _ := ssh.NewSignerFromKey(probe)
	var algos, plain []string
	var ke *knownhosts.KeyError
	if err := check(cfg.addr(), &net.TCPAddr{IP: net.ParseIP(cfg.Address)}, pk.PublicKey()); errors.As(err, &ke) {
		for _, w := range ke.Want {
			if cas[string(w.Key.Marshal())] {
				// A CA signs host certificates of any key type: ask for those first.
				algos = append(algos, ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
					ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01)
				continue
			}
			plain = append(plain, algorithmsFor(w.Key.Type())...)
		}
	}
	if len(algos) > 0 && len(plain) == 0 {
		// Only a CA on file: the host's plain keys are asked for too, so that a
		// host without a certificate is told apart from one that cannot talk.
		plain = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	var out []string
	for _, a := range append(algos, plain...) {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
