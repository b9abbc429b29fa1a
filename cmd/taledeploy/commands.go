package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/images"
	"taledeploy/internal/stack"
	"taledeploy/plan"
	"taledeploy/remote"

	"github.com/alecthomas/kong"
)

// PushCmd is `taledeploy push ENV`.
type PushCmd struct {
	Env               string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Hosts             hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated), in inventory order."`
	RollbackOnFailure bool     `help:"When a host fails, roll back the hosts that already run the new release."`
	RecreateStateful  bool     `help:"Allow recreating a stateful service (db, proxy) whose definition changed; it is interrupted briefly."`
	Release           string   `help:"Release id to record (default: time and git revision)."`
	Repair            bool     `help:"When the host's record disagrees with what runs (a hand-made change, a lost or corrupt state file), rebuild the record from what runs, then push."`
	SkipPreflight     bool     `help:"Start the new color even when the host's free memory or disk looks too small for two colors."`
	Build             string   `placeholder:"local|host|none" help:"Where the images come from, over the inventory's build: local (built here once, each host sent only the layers it lacks), host (built on each host) or none (pulled)."`
}

// RollbackCmd is `taledeploy rollback ENV [RELEASE]`.
type RollbackCmd struct {
	Env     string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Release string   `arg:"" optional:"" help:"Release to start again (default: the one before the live one). Its kept containers if they are there, else its images recorded in the history, while the host keeps them."`
	Hosts   hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
}

// StatusCmd is `taledeploy status ENV`.
type StatusCmd struct {
	Env   string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Hosts hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
}

// RenderCmd is `taledeploy render ENV`.
type RenderCmd struct {
	Env string `arg:"" predictor:"env" help:"Environment from the inventory."`
	Out string `type:"path" help:"Folder to write into (default: rendered/ENV beside the inventory). A file there that taledeploy did not render is never overwritten."`
}

func (c *PushCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env, c.Hosts)
	if err != nil {
		return err
	}
	if err := env.ResolveEnv(os.LookupEnv); err != nil {
		return err
	}
	if err := resolveBuild(ctx, env, c.Build); err != nil {
		return err
	}
	opts := plan.Options{Who: who(), GitRevision: gitRevision(env.Stack.Root), Release: c.Release, RecreateStateful: c.RecreateStateful,
		Repair: c.Repair, SkipPreflight: c.SkipPreflight}
	if opts.Release == "" {
		// One id for every host, and for the build here.
		opts.Release = plan.NewRelease(time.Now(), opts.GitRevision)
	}
	return deploy(ctx, cli, env, opts, "push", c.RollbackOnFailure)
}

func (c *RollbackCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env, c.Hosts)
	if err != nil {
		return err
	}
	return deploy(ctx, cli, env, plan.Options{Who: who(), RollbackTo: c.Release}, "rollback", false)
}

// errPartial marks a failure after some hosts already changed.
var errPartial = errors.New("some hosts changed")

// deploy runs a push or rollback on a fleet: connect to every host, lock, check
// and prepare them all in parallel, and only then act on one host after
// another, in inventory order, stopping at the first failure.
func deploy(ctx context.Context, cli *CLI, env *stack.Environment, opts plan.Options, action string, rollbackOnFailure bool) error {
	return onFleet(ctx, cli, env, opts, action, func(f *plan.Fleet) error {
		var err error
		if action == "rollback" {
			err = f.Rollback(ctx)
		} else {
			err = f.Push(ctx, rollbackOnFailure)
		}
		return fleetMessage(env, err)
	})
}

// fleetMessage says what a failed fleet command left, and the command that
// brings the fleet back together.
func fleetMessage(env *stack.Environment, err error) error {
	var fe *plan.FleetError
	if !errors.As(err, &fe) {
		return advice(env, err)
	}
	err = fmt.Errorf("%s failed on %s: %w", fe.Action, fe.Failed, advice(env, fe.Err))
	switch {
	case len(fe.Done) == 0:
		return err
	case !fe.RolledBack:
		return fmt.Errorf("%w; %s already run the new release and %s and later hosts were not touched (see the summary); `taledeploy rollback %s --hosts %s` brings them back: %w",
			errPartial, strings.Join(fe.Done, ", "), fe.Failed, env.Name, strings.Join(fe.Done, ","), err)
	case fe.RollbackErr != nil:
		return fmt.Errorf("%w: %w; rolling back the hosts before it failed too: %w", errPartial, err, advice(env, fe.RollbackErr))
	case errors.Is(err, plan.ErrAfterSwitch):
		return fmt.Errorf("%w; the %d host(s) before it were rolled back, but %s had already switched (see the summary)", err, len(fe.Done), fe.Failed)
	}
	return fmt.Errorf("%w; the %d host(s) before it were rolled back, so every host runs what it ran before", err, len(fe.Done))
}

// onFleet connects to every host of env in parallel, then locks and checks each
// (and prepares each, for a push) before body changes any; at the end it
// releases the locks and prints the summary.
func onFleet(ctx context.Context, cli *CLI, env *stack.Environment, opts plan.Options, action string, body func(*plan.Fleet) error) (err error) {
	start := time.Now()
	out := newPrinter(os.Stdout, env.Hosts, cli.JSON)
	defer out.close()
	// The hosts are connected while the images build here: at a VPS's
	// distance a connection takes several round trips.
	dials := dialEarly(ctx, cli, env)
	var imgs *images.Release
	if action == "push" {
		if imgs, err = buildImages(ctx, env, opts.Release, out.event); err != nil {
			dials.abandon()
			if cli.JSON {
				out.summary(ctx, nil, env, start, err)
			}
			return fmt.Errorf("push stopped before any host was touched: %w", err)
		}
		defer imgs.Close()
	}
	conns, err := dials.connect(ctx, cli, env)
	defer closeAll(conns)
	if err != nil {
		if cli.JSON {
			// The last line is always a summary, even when no host was reached.
			out.summary(ctx, nil, env, start, err)
		}
		return err
	}
	hosts := asConns(conns)
	f := &plan.Fleet{}
	for _, c := range conns {
		d := &plan.Deployer{Host: c, Stack: env.StackFor(c.Name()), Opts: opts, Report: killHook(out.event)}
		if d.Stack.Build == stack.BuildLocal {
			d.Images = imgs
		}
		f.Hosts = append(f.Hosts, d)
	}
	defer func() {
		// The locks are released while the summary reads each host's
		// record: the two ask the hosts at once.
		var (
			uerrs []error
			wg    sync.WaitGroup
		)
		wg.Go(func() { uerrs = f.End(ctx) })
		out.summary(ctx, hosts, env, start, err)
		wg.Wait()
		for _, uerr := range uerrs {
			if errors.Is(uerr, host.ErrLockLost) {
				fmt.Fprintf(os.Stderr, "taledeploy: %v\n", uerr)
			}
		}
	}()

	if err := f.Begin(ctx, "taledeploy "+action+" "+env.Name, action == "push"); err != nil {
		return fmt.Errorf("%s stopped before any host changed: %w", action, advice(env, err))
	}
	out.note(fmt.Sprintf("all %d host(s) connected, locked, checked and prepared in %.2fs", len(f.Hosts), time.Since(start).Seconds()))
	return body(f)
}

func asConns(cs []*remote.Client) []host.Conn {
	out := make([]host.Conn, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

// Run reads every host at once. A host that cannot be reached is in the
// output with the reason, beside the others: which hosts run what matters
// most when one is gone. The command then fails with that reason.
func (c *StatusCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env, c.Hosts)
	if err != nil {
		return err
	}
	conns, errs := connectEach(ctx, cli, env)
	defer closeAll(conns)
	all := make([]host.HostStatus, len(env.Hosts))
	var wg sync.WaitGroup
	for i, h := range env.Hosts {
		if errs[i] != nil {
			all[i] = host.HostStatus{Host: h.Name, Error: errs[i].Error()}
			continue
		}
		wg.Go(func() { all[i] = host.Status(ctx, conns[i], env.StackFor(h.Name)) })
	}
	wg.Wait()
	if cli.JSON {
		if err := printJSON(map[string]any{"environment": env.Name, "hosts": all}); err != nil {
			return err
		}
	} else {
		for _, hs := range all {
			printStatus(hs)
		}
	}
	return connectError(errs)
}

func printStatus(hs host.HostStatus) {
	fmt.Printf("%s:\n", hs.Host)
	if hs.Error != "" {
		fmt.Printf("  error: %s\n", hs.Error)
	}
	if hs.Active == "" {
		if hs.Error == "" {
			fmt.Printf("  nothing deployed yet\n")
		}
	} else {
		fmt.Printf("  live:     %s, release %s\n", hs.Active, hs.Release)
		fmt.Printf("  deployed: %s by %s", hs.DeployedAt, hs.DeployedBy)
		if hs.GitRevision != "" {
			fmt.Printf(" (git %s)", hs.GitRevision)
		}
		fmt.Println()
		if len(hs.Images) > 0 {
			fmt.Printf("  images:   %s\n", shortImages(hs.Images, ", "))
		}
		if hs.Previous != nil {
			fmt.Printf("  rollback: %s, release %s (stopped, kept)\n", hs.Previous.Color, hs.Previous.Release)
		}
	}
	if len(hs.Migrations) > 0 {
		var rels []string
		for r := range hs.Migrations {
			rels = append(rels, r)
		}
		sort.Strings(rels)
		for _, r := range rels {
			fmt.Printf("  migrated: release %s applied %s\n", r, strings.Join(hs.Migrations[r], ", "))
		}
	}
	if hs.Contract != nil {
		fmt.Printf("  contract: %s with release %s at %s; no rollback past it\n", strings.Join(hs.Contract.Files, ", "), hs.Contract.Release, hs.Contract.At.Format("2006-01-02 15:04:05 UTC"))
	}
	if hs.Serving != "" && hs.Serving != hs.Active {
		fmt.Printf("  serving:  %s (as Caddy says)\n", hs.Serving)
	}
	if hs.Lock != nil {
		state := "running"
		if hs.Lock.Stale != "" {
			state = "stale: " + hs.Lock.Stale
		}
		fmt.Printf("  locked:   %s (%s)\n", hs.Lock.Describe(time.Now()), state)
	}
	if len(hs.Containers) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  SERVICE\tCOLOR\tSTATE\tHEALTH\tRELEASE\tCONTAINER\n")
		for _, c := range hs.Containers {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.Service, cmp.Or(c.Color, "-"), c.State, cmp.Or(c.Health, "-"), cmp.Or(c.Release, "-"), c.Name)
		}
		tw.Flush()
	}
	for _, p := range hs.Problems {
		fmt.Printf("  problem:  %s\n", p)
	}
}

func (c *RenderCmd) Run(cli *CLI, ctx context.Context) error {
	// Rendering connects to nothing: no host needs its SSH files here.
	inv, err := stack.LoadWith(cli.Inventory, stack.LoadOptions{NoSSH: true})
	if err != nil {
		return err
	}
	env, err := inv.Env(c.Env)
	if err != nil {
		return err
	}
	out := c.Out
	if out == "" {
		out = filepath.Join(env.Stack.Root, "rendered", env.Name)
	}
	files, err := env.Stack.RenderTo(out)
	for _, f := range files {
		fmt.Printf("taledeploy: wrote %s\n", f)
	}
	return err
}

// loadEnv reads the inventory and returns environment name, limited to the
// named hosts when there are any.
func loadEnv(file, name string, hosts []string) (*stack.Environment, error) {
	// With host keys in the environment, a host may go without a known_hosts file.
	kh, _ := os.LookupEnv(remote.EnvKnownHosts)
	inv, err := stack.LoadWith(file, stack.LoadOptions{KnownHostsFromEnv: strings.TrimSpace(kh) != ""})
	if err != nil {
		return nil, err
	}
	env, err := inv.Env(name)
	if err != nil || len(hosts) == 0 {
		return env, err
	}
	var keep []*stack.Host
	var known []string
	for _, h := range env.Hosts {
		known = append(known, h.Name)
		if slices.Contains(hosts, h.Name) {
			keep = append(keep, h)
		}
	}
	for _, n := range hosts {
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("%w: --hosts: environment %s has no host %q; its hosts are %s", stack.ErrBadInput, name, n, strings.Join(known, ", "))
		}
	}
	env.Hosts = keep
	return env, nil
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

// hostList is --hosts: host names, comma-separated. An empty name is refused:
// an unset CI variable (`--hosts "$HOSTS"`) must not turn a push to one host
// into a push to every host of the environment.
type hostList []string

func (h *hostList) Decode(ctx *kong.DecodeContext) error {
	var v string
	if err := ctx.Scan.PopValueInto("hosts", &v); err != nil {
		return err
	}
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return fmt.Errorf("%q holds an empty host name; name the hosts (--hosts h1,h2), or leave --hosts out to act on every host of ENV", v)
		}
		*h = append(*h, name)
	}
	return nil
}

// shortImages lists service=ID, IDs shortened as docker shows them.
func shortImages(imgs map[string]string, sep string) string {
	var out []string
	for svc, id := range imgs {
		id = strings.TrimPrefix(id, "sha256:")
		out = append(out, svc+"="+id[:min(len(id), 12)])
	}
	sort.Strings(out)
	return strings.Join(out, sep)
}
