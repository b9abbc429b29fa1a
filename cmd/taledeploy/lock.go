package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"taledeploy/internal/host"
)

// LockCmd is `taledeploy lock status|release ENV`.
type LockCmd struct {
	Status  LockStatusCmd  `cmd:"" help:"Show who holds each host's lock, since when, at which step, and whether the holder still runs."`
	Release LockReleaseCmd `cmd:"" help:"Remove a lock left by a deploy that died. A lock whose holder may still run needs --force."`
}

// LockStatusCmd is `taledeploy lock status ENV`.
type LockStatusCmd struct {
	Env   string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Hosts hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
}

// LockReleaseCmd is `taledeploy lock release ENV`.
type LockReleaseCmd struct {
	Env   string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Hosts hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
	Force bool     `help:"Remove the lock even if its holder may still be running (two deploys at once can break the host)."`
}

func (c *LockStatusCmd) Run(cli *CLI, ctx context.Context) error {
	env, conns, err := connectEnv(ctx, cli, c.Env, c.Hosts)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range conns {
		l, err := host.ReadLock(ctx, h, env.StackFor(h.Name()))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
			fmt.Printf("%s: %v\n", h.Name(), err)
		case l == nil:
			fmt.Printf("%s: not locked\n", h.Name())
		default:
			state := "its holder may still be running"
			if why := l.Stale(time.Now()); why != "" {
				state = "stale: " + why + "; `taledeploy lock release " + env.Name + "` clears it"
			}
			fmt.Printf("%s: locked: %s (%s)\n", h.Name(), l.Describe(time.Now()), state)
		}
	}
	return errors.Join(errs...)
}

func (c *LockReleaseCmd) Run(cli *CLI, ctx context.Context) error {
	env, conns, err := connectEnv(ctx, cli, c.Env, c.Hosts)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range conns {
		msg, err := host.ReleaseLock(ctx, h, env.StackFor(h.Name()), c.Force)
		if err != nil {
			errs = append(errs, advice(env, err))
			continue
		}
		fmt.Printf("%s: %s\n", h.Name(), msg)
	}
	return errors.Join(errs...)
}
