package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/term"

	"taledeploy/plan"
	"taledeploy/remote"
)

// dialOptions are the command line's settings for every SSH connection.
type dialOptions struct {
	acceptNewHostKey bool
}

func (cli *CLI) dialOptions() dialOptions {
	return dialOptions{acceptNewHostKey: cli.AcceptNewHostKey}
}

// hostConfig says how to reach one host of the inventory.
func hostConfig(h *plan.Host, o dialOptions) remote.Config {
	return remote.Config{
		Name: h.Name, Address: h.Address, Port: h.Port, User: h.User,
		IdentityFile: h.IdentityFile, KnownHostsFile: h.KnownHosts,
		AcceptNewHostKey: o.acceptNewHostKey,
	}
}

// connectAll opens one SSH connection per host, in parallel. On an error it
// returns the connections it made, to be closed, and the first error.
func connectAll(ctx context.Context, cli *CLI, env *plan.Environment) ([]*remote.Client, error) {
	conns, errs := connectEach(ctx, cli, env)
	var live []*remote.Client
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	for _, err := range errs {
		if err != nil {
			return live, err
		}
	}
	return live, nil
}

// connectEach dials every host in parallel: conns[i] or errs[i] is set for host i.
func connectEach(ctx context.Context, cli *CLI, env *plan.Environment) ([]*remote.Client, []error) {
	conns := make([]*remote.Client, len(env.Hosts))
	errs := make([]error, len(env.Hosts))
	var wg sync.WaitGroup
	var askMu sync.Mutex
	for i, h := range env.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := hostConfig(h, cli.dialOptions())
			cfg.Passphrase = func(file string) ([]byte, error) {
				askMu.Lock()
				defer askMu.Unlock()
				return askPassphrase(file)
			}
			conns[i], errs[i] = remote.Dial(ctx, cfg)
		}()
	}
	wg.Wait()
	return conns, errs
}

func closeAll(conns []*remote.Client) {
	for _, c := range conns {
		c.Close()
	}
}

// askPassphrase prompts on the terminal; with no terminal it refuses, so a CI run
// never hangs on a prompt.
func askPassphrase(file string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		return nil, fmt.Errorf("no terminal to ask on; set TALEDEPLOY_SSH_PASSPHRASE or load the key into ssh-agent")
	}
	defer tty.Close()
	fmt.Fprintf(tty, "taledeploy: passphrase for %s: ", file)
	pass, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	return pass, err
}
