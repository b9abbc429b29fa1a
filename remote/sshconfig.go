package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// SSHConfig is an OpenSSH client configuration file (ssh_config(5)), such as
// ~/.ssh/config. Of it taledeploy honours HostName, User, Port, IdentityFile
// and ProxyJump; a ProxyCommand is refused rather than bypassed.
type SSHConfig struct {
	File string
	cfg  *ssh_config.Config // nil for a missing file
}

// LoadSSHConfig reads an ssh config file; a missing one is an empty config.
func LoadSSHConfig(file string) (*SSHConfig, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return &SSHConfig{File: file}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ssh config: %w", err)
	}
	return ParseSSHConfig(file, data)
}

// ParseSSHConfig reads ssh config text; file names it in messages.
func ParseSSHConfig(file string, data []byte) (*SSHConfig, error) {
	cfg, err := ssh_config.DecodeBytes(data)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %w", file, err)
	}
	// OpenSSH matches host patterns without regard to case.
	for _, h := range cfg.Hosts {
		for i, p := range h.Patterns {
			if lower, err := ssh_config.NewPattern(strings.ToLower(p.String())); err == nil {
				h.Patterns[i] = lower
			}
		}
	}
	return &SSHConfig{File: file, cfg: cfg}, nil
}

// sshEntry is what the config says about one host, first value wins as in
// OpenSSH.
type sshEntry struct {
	hostName, user, proxyJump, proxyCommand string
	port                                    int
	identityFiles                           []string
}

func (sc *SSHConfig) entry(host string) (sshEntry, error) {
	var e sshEntry
	if sc == nil || sc.cfg == nil {
		return e, nil
	}
	// OpenSSH matches the host name in lower case.
	alias := strings.ToLower(host)
	get := func(key string) string {
		v, _ := sc.cfg.Get(alias, key)
		return strings.TrimSpace(v)
	}
	e.hostName, e.user = get("HostName"), get("User")
	e.proxyJump, e.proxyCommand = get("ProxyJump"), get("ProxyCommand")
	if p := get("Port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return e, fmt.Errorf("ssh config %s: host %s: Port %q is not a port number (1-65535)", sc.File, host, p)
		}
		e.port = n
	}
	files, _ := sc.cfg.GetAll(alias, "IdentityFile")
	for _, f := range files {
		if f = strings.TrimSpace(f); f != "" && !strings.EqualFold(f, "none") {
			e.identityFiles = append(e.identityFiles, f)
		}
	}
	return e, nil
}

// Apply completes cfg from the config's entry for cfg.Address, which may be an
// alias (a Host of the config) or a host name. What cfg sets already wins:
// the config's Port, User and IdentityFile fill only what is unset (zero,
// empty). HostName replaces the address; ProxyJump sets the jump hosts. A
// config IdentityFile that does not exist is skipped, as OpenSSH does.
func (sc *SSHConfig) Apply(cfg Config) (Config, error) {
	alias := cfg.Address
	e, err := sc.entry(alias)
	if err != nil {
		return cfg, err
	}
	if err := sc.noProxyCommand(alias, e); err != nil {
		return cfg, err
	}
	if e.hostName != "" {
		if cfg.Address, err = expandTokens(e.hostName, map[byte]string{'h': alias}); err != nil {
			return cfg, fmt.Errorf("ssh config %s: host %s: HostName: %w", sc.File, alias, err)
		}
	}
	if cfg.Port == 0 {
		cfg.Port = e.port
	}
	if cfg.User == "" {
		cfg.User = e.user
	}
	if len(cfg.IdentityFiles) == 0 {
		if cfg.IdentityFiles, err = sc.identityFiles(alias, e, cfg.Address, cfg.User, cfg.port()); err != nil {
			return cfg, err
		}
	}
	if e.proxyJump != "" && !strings.EqualFold(e.proxyJump, "none") {
		if cfg.Jumps, err = sc.jumps(alias, e.proxyJump, 0); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func (sc *SSHConfig) noProxyCommand(host string, e sshEntry) error {
	if e.proxyCommand != "" && !strings.EqualFold(e.proxyCommand, "none") && e.proxyJump == "" {
		return fmt.Errorf("ssh config %s: host %s has a ProxyCommand, which taledeploy does not run; use ProxyJump (user@host:port, or an alias) instead", sc.File, host)
	}
	return nil
}

// maxJumpDepth bounds a ProxyJump whose first jump host has a ProxyJump of its
// own, and so on, so a loop in the config is reported, not followed.
const maxJumpDepth = 8

// jumps resolves a ProxyJump value: comma-separated [user@]host[:port] (or
// ssh://[user@]host[:port]), each host possibly an alias of the config. As in
// OpenSSH, the first jump host's own ProxyJump is followed; a jump host with no
// User logs in as the local user.
func (sc *SSHConfig) jumps(of, spec string, depth int) ([]Hop, error) {
	if depth >= maxJumpDepth {
		return nil, fmt.Errorf("ssh config %s: the ProxyJump of %s goes through more than %d hosts; does it loop?", sc.File, of, maxJumpDepth)
	}
	var hops []Hop
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		u, host, port, err := parseJump(part)
		if err != nil {
			return nil, fmt.Errorf("ssh config %s: host %s: ProxyJump %q: %w", sc.File, of, part, err)
		}
		e, err := sc.entry(host)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			// The others are reached through the one before, whatever their config says.
			if err := sc.noProxyCommand(host, e); err != nil {
				return nil, err
			}
		}
		h := Hop{Name: part, Address: host, Port: port, User: u}
		if e.hostName != "" {
			if h.Address, err = expandTokens(e.hostName, map[byte]string{'h': host}); err != nil {
				return nil, fmt.Errorf("ssh config %s: host %s: HostName: %w", sc.File, host, err)
			}
		}
		if h.Port == 0 {
			h.Port = e.port
		}
		if h.User == "" {
			h.User = e.user
		}
		if h.User == "" {
			h.User = localUser()
		}
		if h.IdentityFiles, err = sc.identityFiles(host, e, h.Address, h.User, Config{Port: h.Port}.port()); err != nil {
			return nil, err
		}
		if i == 0 && e.proxyJump != "" && !strings.EqualFold(e.proxyJump, "none") {
			before, err := sc.jumps(host, e.proxyJump, depth+1)
			if err != nil {
				return nil, err
			}
			hops = append(hops, before...)
		}
		hops = append(hops, h)
	}
	return hops, nil
}

// parseJump splits one ProxyJump host: [ssh://][user@]host[:port], with an
// IPv6 address in brackets when a port follows.
func parseJump(s string) (user, host string, port int, err error) {
	s = strings.TrimPrefix(s, "ssh://")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		user, s = s[:i], s[i+1:]
	}
	host = s
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		var p string
		if host, p, err = net.SplitHostPort(s); err != nil {
			if !strings.HasSuffix(s, "]") {
				return "", "", 0, fmt.Errorf("write it as [user@]host[:port]")
			}
			host, p = strings.Trim(s, "[]"), ""
		}
		if p != "" {
			if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
				return "", "", 0, fmt.Errorf("port %q is not a port number (1-65535)", p)
			}
		}
	}
	if host == "" || strings.HasPrefix(host, "-") || strings.ContainsAny(host, " \t/\\") || strings.ContainsAny(user, " \t:/") {
		return "", "", 0, fmt.Errorf("write it as [user@]host[:port]")
	}
	return user, host, port, nil
}

// identityFiles expands the entry's IdentityFile values (~ and the %d, %h,
// %n, %p, %r, %u tokens) and keeps those that exist.
func (sc *SSHConfig) identityFiles(alias string, e sshEntry, hostName, remoteUser string, port int) ([]string, error) {
	home, _ := os.UserHomeDir()
	tokens := map[byte]string{'d': home, 'h': hostName, 'n': alias, 'p': strconv.Itoa(port), 'r': remoteUser, 'u': localUser()}
	var files []string
	for _, f := range e.identityFiles {
		p, err := expandTokens(f, tokens)
		if err != nil {
			return nil, fmt.Errorf("ssh config %s: host %s: IdentityFile %s: %w", sc.File, alias, f, err)
		}
		if p == "~" || strings.HasPrefix(p, "~/") {
			p = filepath.Join(home, p[1:])
		}
		if !filepath.IsAbs(p) {
			// OpenSSH reads a relative IdentityFile from the home folder.
			p = filepath.Join(home, p)
		}
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	return files, nil
}

// expandTokens replaces %x tokens from values, and %% by %.
func expandTokens(s string, values map[byte]string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("a lone %% at the end; write %%%% for a %%")
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := values[s[i]]
		if !ok {
			return "", fmt.Errorf("token %%%c is not supported here", s[i])
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
