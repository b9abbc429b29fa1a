package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"taledeploy/plan"
)

// PushCmd is `taledeploy push ENV`.
type PushCmd struct {
	Env              string `arg:"" help:"Environment from the inventory."`
	RecreateStateful bool   `help:"Allow recreating a stateful service (db, proxy) whose definition changed; it is interrupted briefly."`
	Release          string `help:"Release id to record (default: time and git revision)."`
}

// RollbackCmd is `taledeploy rollback ENV`.
type RollbackCmd struct {
	Env string `arg:"" help:"Environment from the inventory."`
}

// StatusCmd is `taledeploy status ENV`.
type StatusCmd struct {
	Env  string `arg:"" help:"Environment from the inventory."`
	JSON bool   `name:"json" help:"Print one JSON document instead of text."`
}

// RenderCmd is `taledeploy render ENV`.
type RenderCmd struct {
	Env string `arg:"" help:"Environment from the inventory."`
	Out string `type:"path" help:"Folder to write into (default: the inventory's folder)."`
}

func (c *PushCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env)
	if err != nil {
		return err
	}
	opts := plan.Options{Who: who(), GitRevision: gitRevision(env.Stack.Root), Release: c.Release, RecreateStateful: c.RecreateStateful}
	return deploy(ctx, env, cli.dialOptions(), opts, "push")
}

func (c *RollbackCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env)
	if err != nil {
		return err
	}
	return deploy(ctx, env, cli.dialOptions(), plan.Options{Who: who()}, "rollback")
}

// deploy runs a push or rollback: connect to every host, lock and check them all,
// then act on one host after another, stopping at the first failure.
func deploy(ctx context.Context, env *plan.Environment, dial dialOptions, opts plan.Options, action string) error {
	out := newPrinter(os.Stdout, env)
	conns, err := connectAll(ctx, env, dial)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	ds := make([]*plan.Deployer, len(conns))
	defer func() {
		for _, d := range ds {
			if d != nil {
				d.Unlock(ctx)
			}
		}
	}()
	for i, c := range conns {
		ds[i] = &plan.Deployer{Host: c, Stack: &env.Stack, Opts: opts, Report: out.event, Log: os.Stderr}
		if err := ds[i].Lock(ctx, "taledeploy "+action+" "+env.Name); err != nil {
			return err
		}
		if err := ds[i].Check(ctx); err != nil {
			return err
		}
	}
	start := time.Now()
	for i, d := range ds {
		var err error
		if action == "rollback" {
			err = d.Rollback(ctx)
		} else {
			err = d.Push(ctx)
		}
		if err != nil {
			out.summary(ctx, conns, env, start)
			if i > 0 {
				return fmt.Errorf("%s failed on %s after %d host(s) changed; see the summary above for which host runs which release: %w", action, d.Host.Name(), i, err)
			}
			return fmt.Errorf("%s failed on %s: %w", action, d.Host.Name(), err)
		}
	}
	out.summary(ctx, conns, env, start)
	return nil
}

func (c *StatusCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env)
	if err != nil {
		return err
	}
	conns, err := connectAll(ctx, env, cli.dialOptions())
	defer closeAll(conns)
	if err != nil {
		return err
	}
	var all []plan.HostStatus
	for _, h := range conns {
		all = append(all, plan.Status(ctx, h, &env.Stack))
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"environment": env.Name, "hosts": all})
	}
	for _, hs := range all {
		printStatus(hs)
	}
	return nil
}

func printStatus(hs plan.HostStatus) {
	fmt.Printf("%s:\n", hs.Host)
	if hs.Error != "" {
		fmt.Printf("  error: %s\n", hs.Error)
	}
	if hs.Active == "" {
		fmt.Printf("  nothing deployed yet\n")
	} else {
		fmt.Printf("  live:     %s, release %s\n", hs.Active, hs.Release)
		fmt.Printf("  deployed: %s by %s", hs.DeployedAt, hs.DeployedBy)
		if hs.GitRevision != "" {
			fmt.Printf(" (git %s)", hs.GitRevision)
		}
		fmt.Println()
		if hs.Previous != nil {
			fmt.Printf("  rollback: %s, release %s (stopped, kept)\n", hs.Previous.Color, hs.Previous.Release)
		}
	}
	if hs.Lock != nil {
		fmt.Printf("  locked:   by %s since %s (%s)\n", hs.Lock.Who, hs.Lock.Since.Local().Format(time.DateTime), hs.Lock.Command)
	}
	if len(hs.Containers) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  SERVICE\tCOLOR\tSTATE\tHEALTH\tRELEASE\tCONTAINER\n")
		for _, c := range hs.Containers {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.Service, dash(c.Color), c.State, dash(c.Health), dash(c.Release), c.Name)
		}
		tw.Flush()
	}
	for _, p := range hs.Problems {
		fmt.Printf("  problem:  %s\n", p)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *RenderCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env)
	if err != nil {
		return err
	}
	out := c.Out
	if out == "" {
		out = env.Stack.Root
	}
	files, err := env.Stack.RenderTo(out)
	for _, f := range files {
		fmt.Printf("taledeploy: wrote %s\n", f)
	}
	return err
}

func loadEnv(file, name string) (*plan.Environment, error) {
	inv, err := plan.Load(file)
	if err != nil {
		return nil, err
	}
	return inv.Env(name)
}

func who() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func gitRevision(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += "-dirty"
	}
	return rev
}
