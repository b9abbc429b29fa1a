// Command taledeploy deploys a Docker Compose stack to VPS hosts over SSH with a
// blue/green switch behind Caddy, so no request fails during a deploy.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/alecthomas/kong"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/plan"
	"taledeploy/remote"
)

// version is set at release time with -ldflags "-X main.version=v1.2.3";
// otherwise buildVersion reads what Go recorded in the binary.
var version = ""

// CLI is the command line; each command's Run does the work.
type CLI struct {
	Inventory string           `short:"i" default:"inventory.yaml" type:"path" help:"Inventory file (environments, hosts, stack settings)."`
	Version   kong.VersionFlag `help:"Print the version and exit."`
	JSON      bool             `name:"json" help:"Machine-readable output: push and rollback print one JSON event per line and a summary last; status prints one JSON document."`

	AcceptNewHostKey bool `name:"accept-new-host-key" help:"Trust the key of a host its known_hosts file does not list yet, and add it there (like ssh -o StrictHostKeyChecking=accept-new). A changed key is refused all the same."`

	Plan     PlanCmd     `cmd:"" help:"Show what a push to ENV would do on each host, step by step, with a diff of every file it would change (env values masked). Changes nothing."`
	Push     PushCmd     `cmd:"" help:"Deploy the working tree to every host of ENV: start the idle color, verify, switch, drain, stop the old one."`
	Rollback RollbackCmd `cmd:"" help:"Switch ENV back to the previous release (or the one named): its kept color, or its recorded images on the idle color; start, verify, switch, drain."`
	Status   StatusCmd   `cmd:"" help:"Show per host the live color, release, containers and health, and where the record and the host disagree."`
	Render   RenderCmd   `cmd:"" help:"Write the rendered compose overlays for ENV locally (the Caddyfile is yours; plan shows the config Caddy will run)."`
	Lock     LockCmd     `cmd:"" help:"Show or clear the deploy lock of ENV's hosts."`
	History  HistoryCmd  `cmd:"" help:"Show the deploys recorded on each host: release, color, who, when, git revision, result, duration."`
	Doctor   DoctorCmd   `cmd:"" help:"Check each host of ENV: SSH, Docker Engine and Compose versions, free memory and disk, the proxy and its admin socket, the lock and the record; each problem with its fix."`
	Logs     LogsCmd     `cmd:"" help:"Stream a service's logs from every host (the live color's for a stateless service), prefixed by host."`

	Migrations MigrationsCmd `cmd:"" help:"Check SQL migrations for blue/green safety: taledeploy migrations check [DIR...]."`
	Migrate    MigrateCmd    `cmd:"" help:"Apply the contract migrations once no older release is left: taledeploy migrate contract ENV."`
	Init       InitCmd       `cmd:"" help:"Write a first inventory.yaml from this folder's compose file and Caddyfile: services, routes and the variables it reads (never overwrites a file)."`
	Completion CompletionCmd `cmd:"" help:"Print a shell completion script for bash or zsh: source <(taledeploy completion bash)."`
}

func main() {
	var cli CLI
	parser := newParser(&cli)
	completeLine(parser)
	k, err := parser.Parse(os.Args[1:])
	if err != nil {
		parser.FatalIfErrorf(usageError{err})
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops what can stop safely: a push that has switched
		// traffic still finishes its drain, stop and record. A second exits now.
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "taledeploy: interrupted twice: exiting now. Traffic stays where the gate sends it; "+
			"the host keeps this command's lock, and the next push or rollback takes it over and converges (`taledeploy status ENV` shows where each host stands)")
		os.Exit(130)
	}()
	k.BindTo(ctx, (*context.Context)(nil))
	err = k.Run(&cli)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "taledeploy: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// newParser reads the command line into cli.
func newParser(cli *CLI) *kong.Kong {
	return kong.Must(cli,
		kong.Name("taledeploy"),
		kong.Description("Zero-downtime blue/green deploys of a Docker Compose stack to VPS hosts over SSH."),
		kong.UsageOnError(),
		kong.Vars{"version": buildVersion(version)},
	)
}

// usageError is a command line kong cannot parse: bad input, exit status 2
// (kong's own would be 80).
type usageError struct{ error }

func (usageError) ExitCode() int   { return exitBadInput }
func (e usageError) Unwrap() error { return e.error }

// Exit codes, distinct so scripts can tell them apart.
const (
	exitFailed   = 1 // the command failed and no host changed (or all were rolled back)
	exitBadInput = 2 // inventory, compose file or flags are wrong
	exitLocked   = 3 // another deploy holds a host's lock
	exitPartial  = 4 // the command failed after some hosts changed: the fleet is mixed
)

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errPartial), errors.Is(err, plan.ErrAfterSwitch):
		// Some host changed: the summary says which runs what.
		return exitPartial
	case errors.Is(err, stack.ErrBadInput), errors.Is(err, remote.ErrLocalFile):
		return exitBadInput
	case errors.Is(err, host.ErrLocked):
		return exitLocked
	}
	return exitFailed
}

// buildVersion names the binary's version and the revision it was built from:
// the module version (go install of a tagged module) and the VCS revision Go
// records when it builds inside a git checkout, with "-dirty" for local
// changes.
func buildVersion(set string) string {
	info, ok := debug.ReadBuildInfo()
	v := set
	if v == "" && ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	if v == "" {
		v = "dev"
	}
	if !ok {
		return "taledeploy " + v
	}
	var rev, when, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	out := "taledeploy " + v
	if rev != "" {
		out += fmt.Sprintf(" (revision %.12s%s, %s)", rev, dirty, when)
	}
	return out + ", " + info.GoVersion
}
