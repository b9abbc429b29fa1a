package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"taledeploy/internal/stack"
	"taledeploy/plan"
)

// MigrateCmd is `taledeploy migrate contract ENV`.
type MigrateCmd struct {
	Contract MigrateContractCmd `cmd:"" help:"Apply the pending contract migrations (NAME.contract.sql) on every host of ENV, once no older release is left; rollback past them is refused afterwards."`
}

// MigrateContractCmd is `taledeploy migrate contract ENV`.
type MigrateContractCmd struct {
	Env       string `arg:"" predictor:"env" help:"Environment from the inventory."`
	RemoveOld bool   `help:"Remove the containers of older releases (the stopped color kept for rollback) first. Rollback to them is then impossible."`
}

func (c *MigrateContractCmd) Run(cli *CLI, ctx context.Context) error {
	// Every host, always: one host left on an older release would break.
	env, err := loadEnv(cli.Inventory, c.Env, nil)
	if err != nil {
		return err
	}
	return onFleet(ctx, cli, env, plan.Options{Who: who()}, "migrate contract", func(f *plan.Fleet) error {
		return c.contract(ctx, cli, env, f)
	})
}

// contract removes what older releases left, when allowed, then applies the
// contract migrations host by host.
func (c *MigrateContractCmd) contract(ctx context.Context, cli *CLI, env *stack.Environment, f *plan.Fleet) error {
	var older []string
	for i, d := range f.Hosts {
		for _, ctr := range f.Current(i).OlderReleases() {
			older = append(older, fmt.Sprintf("%s: %s (release %s, %s)", d.Host.Name(), ctr.Name, ctr.Release, ctr.State))
		}
	}
	if len(older) > 0 && !c.RemoveOld {
		what := strings.Join(older, "; ")
		if cli.JSON || !confirm(fmt.Sprintf("Contract migrations break the older release still on these hosts: %s.\nRemove those containers (no rollback to them afterwards)?", what)) {
			return fmt.Errorf("%w: %s. Contract migrations would break it, and a rollback would start it; `taledeploy migrate contract %s --remove-old` removes those containers first (rollback to them is then impossible)",
				plan.ErrOlderRelease, what, env.Name)
		}
	}
	err := f.Contract(ctx)
	var fe *plan.FleetError
	if !errors.As(err, &fe) {
		return err
	}
	err = fmt.Errorf("%s failed on %s: %w", fe.Action, fe.Failed, advice(env, fe.Err))
	if len(fe.Done) > 0 {
		return fmt.Errorf("%w; %w (the hosts before it have them applied)", errPartial, err)
	}
	return err
}

// confirm asks a yes/no question on the terminal; without one (stdin not a
// terminal, as in CI or a script) the answer is no.
func confirm(question string) bool {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return false
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		return false
	}
	fmt.Fprintf(tty, "%s [y/N] ", question)
	line, _ := bufio.NewReader(tty).ReadString('\n')
	return strings.EqualFold(strings.TrimSpace(line), "y") || strings.EqualFold(strings.TrimSpace(line), "yes")
}
