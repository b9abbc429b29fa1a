package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/term"

	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// dialOptions are the settings of every SSH connection that come from the
// command line and the environment.
type dialOptions struct {
	acceptNewHostKey bool
	key              []byte // remote.EnvKey: a private key's text
	knownHosts       []byte // remote.EnvKnownHosts: known_hosts lines
	passphrase       func(keyName string) ([]byte, error)
	sshConfig        *remote.SSHConfig // nil: none read
}

// errNoPrompt is a dial that needed a passphrase it was not to ask for.
var errNoPrompt = errors.New("passphrase not asked yet")

// envSSHConfig names the ssh config file to read instead of ~/.ssh/config;
// "none" reads none.
const envSSHConfig = "TALEDEPLOY_SSH_CONFIG"

func (cli *CLI) dialOptions() (dialOptions, error) {
	return newDialOptions(cli.AcceptNewHostKey, os.LookupEnv)
}

// newDialOptions reads the SSH settings from the environment through lookup.
func newDialOptions(acceptNew bool, lookup func(string) (string, bool)) (dialOptions, error) {
	o := dialOptions{acceptNewHostKey: acceptNew}
	if v, _ := lookup(remote.EnvKey); strings.TrimSpace(v) != "" {
		o.key = []byte(v)
	}
	if v, _ := lookup(remote.EnvKnownHosts); strings.TrimSpace(v) != "" {
		o.knownHosts = []byte(v)
	}
	var askMu sync.Mutex
	o.passphrase = func(keyName string) ([]byte, error) {
		if p, ok := lookup(remote.EnvPassphrase); ok {
			return []byte(p), nil
		}
		// Hosts are dialled in parallel: one prompt at a time.
		askMu.Lock()
		defer askMu.Unlock()
		return askPassphrase(keyName)
	}
	file, set := lookup(envSSHConfig)
	if !set || file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return o, nil // no home, no ~/.ssh/config
		}
		file = filepath.Join(home, ".ssh", "config")
	}
	if file == "none" {
		return o, nil
	}
	c, err := remote.LoadSSHConfig(file)
	if err != nil {
		return o, fmt.Errorf("%w: %v; fix it, or set %s=none to read no ssh config", stack.ErrBadInput, err, envSSHConfig)
	}
	o.sshConfig = c
	return o, nil
}

// hostConfig says how to reach one host of the inventory: its own settings,
// completed from the ssh config (the inventory's win where both are set).
func hostConfig(h *stack.Host, o dialOptions) (remote.Config, error) {
	cfg := remote.Config{
		Name: h.Name, Address: h.Address, Port: h.Port, User: h.User,
		KnownHostsFile: h.KnownHosts, Key: o.key, KnownHosts: o.knownHosts,
		AcceptNewHostKey: o.acceptNewHostKey, Passphrase: o.passphrase,
	}
	if h.IdentityFile != "" {
		cfg.IdentityFiles = []string{h.IdentityFile}
	}
	cfg, err := o.sshConfig.Apply(cfg)
	if err != nil {
		return cfg, fmt.Errorf("%w: %s: %v; fix it, or set %s=none to read no ssh config", stack.ErrBadInput, h.Name, err, envSSHConfig)
	}
	if cfg.User == "" {
		where := "the ssh config"
		if o.sshConfig != nil {
			where = o.sshConfig.File
		}
		return cfg, fmt.Errorf("%w: host %s has no user; add user: to the host in the inventory (the SSH login, in the docker group), or User for %s in %s",
			stack.ErrBadInput, h.Name, h.Address, where)
	}
	return cfg, nil
}

// connectAll opens one SSH connection per host, in parallel. On an error it
// returns the connections it made, to be closed, and an error that names every
// host that failed, each with its reason.
func connectAll(ctx context.Context, cli *CLI, env *stack.Environment) ([]*remote.Client, error) {
	conns, errs := connectEach(ctx, cli, env)
	var live []*remote.Client
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	return live, connectError(errs)
}

// connectError is what went wrong connecting to the hosts (errs[i] for host
// i), nil when nothing did.
func connectError(errs []error) error {
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return failed[0]
	}
	return fmt.Errorf("%d of %d hosts cannot be used:\n%w", len(failed), len(errs), errors.Join(failed...))
}

// connectEach dials every host in parallel: conns[i] or errs[i] is set for host i.
func connectEach(ctx context.Context, cli *CLI, env *stack.Environment) ([]*remote.Client, []error) {
	return dialHosts(ctx, cli, env, false, nil)
}

// dialHosts dials, in parallel, host i of env for each i where redo(i) is
// true (every host when redo is nil), asking for no passphrase when
// noPrompt is set: conns[i] or errs[i] is set for each host dialled.
func dialHosts(ctx context.Context, cli *CLI, env *stack.Environment, noPrompt bool, redo func(i int) bool) ([]*remote.Client, []error) {
	conns := make([]*remote.Client, len(env.Hosts))
	errs := make([]error, len(env.Hosts))
	opts, err := cli.dialOptions()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return conns, errs
	}
	if noPrompt {
		// While images build the printer's live line would hide a prompt:
		// a key that needs one fails with errNoPrompt, to be dialled again.
		pass, ok := os.LookupEnv(remote.EnvPassphrase)
		opts.passphrase = func(string) ([]byte, error) {
			if ok {
				return []byte(pass), nil
			}
			return nil, errNoPrompt
		}
	}
	var wg sync.WaitGroup
	for i, h := range env.Hosts {
		if redo != nil && !redo(i) {
			continue
		}
		wg.Go(func() {
			cfg, err := hostConfig(h, opts)
			if err != nil {
				errs[i] = err
				return
			}
			conns[i], errs[i] = remote.Dial(ctx, cfg)
		})
	}
	wg.Wait()
	return conns, errs
}

// early is the hosts dialled while images build: connect waits for them and
// dials again, asking for passphrases now, those that needed one or whose
// connection was lost meanwhile (a laptop that slept through the build).
type early struct {
	done   chan struct{}
	cancel context.CancelFunc
	conns  []*remote.Client
	errs   []error
}

func dialEarly(ctx context.Context, cli *CLI, env *stack.Environment) *early {
	ctx, cancel := context.WithCancel(ctx)
	e := &early{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(e.done)
		e.conns, e.errs = dialHosts(ctx, cli, env, true, nil)
	}()
	return e
}

// abandon stops the dials and closes what they opened, without waiting.
func (e *early) abandon() {
	e.cancel()
	go func() {
		<-e.done
		closeAll(e.conns)
	}()
}

// connect is connectAll's result for the early dials.
func (e *early) connect(ctx context.Context, cli *CLI, env *stack.Environment) ([]*remote.Client, error) {
	<-e.done
	// Decided once: a connection can end while the others are dialled.
	redo := make([]bool, len(env.Hosts))
	for i := range redo {
		redo[i] = errors.Is(e.errs[i], errNoPrompt) || e.conns[i] != nil && e.conns[i].Gone()
	}
	conns, errs := dialHosts(ctx, cli, env, false, func(i int) bool { return redo[i] })
	var live []*remote.Client
	for i := range env.Hosts {
		if redo[i] {
			if e.conns[i] != nil {
				e.conns[i].Close()
			}
			e.conns[i], e.errs[i] = conns[i], errs[i]
		}
		if e.conns[i] != nil {
			live = append(live, e.conns[i])
		}
	}
	return live, connectError(e.errs)
}

// connectEnv loads environment name, limited to hosts when any are named, and
// connects to its hosts. The connections it returns must be closed, even with
// an error.
func connectEnv(ctx context.Context, cli *CLI, name string, hosts []string) (*stack.Environment, []*remote.Client, error) {
	env, err := loadEnv(cli.Inventory, name, hosts)
	if err != nil {
		return nil, nil, err
	}
	conns, err := connectAll(ctx, cli, env)
	return env, conns, err
}

// printJSON prints v as one indented JSON document on standard output.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func closeAll(conns []*remote.Client) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// askPassphrase prompts on the terminal; with no terminal it refuses, so a CI run
// never hangs on a prompt.
func askPassphrase(file string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return nil, fmt.Errorf("no terminal to ask on; set %s or load the key into ssh-agent", remote.EnvPassphrase)
	}
	defer tty.Close()
	fmt.Fprintf(tty, "taledeploy: passphrase for %s: ", file)
	pass, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	return pass, err
}
