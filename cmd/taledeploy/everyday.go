package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"taledeploy/internal/host"
	"taledeploy/plan"
)

// HistoryCmd is `taledeploy history ENV`.
type HistoryCmd struct {
	Env   string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Hosts hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
	Last  int      `default:"20" help:"Show this many entries per host (0: all)."`
}

func (c *HistoryCmd) Run(cli *CLI, ctx context.Context) error {
	env, conns, err := connectEnv(ctx, cli, c.Env, c.Hosts)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	all := map[string][]host.HistoryEntry{}
	var errs []error
	for _, h := range conns {
		hist, err := host.ReadHistory(ctx, h, env.StackFor(h.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
		}
		if c.Last > 0 && len(hist) > c.Last {
			hist = hist[len(hist)-c.Last:]
		}
		all[h.Name()] = hist
	}
	if cli.JSON {
		if err := printJSON(map[string]any{"environment": env.Name, "hosts": all}); err != nil {
			return err
		}
		return errors.Join(errs...)
	}
	for _, h := range conns {
		fmt.Printf("%s:\n", h.Name())
		hist := all[h.Name()]
		if len(hist) == 0 {
			fmt.Println("  no deploys recorded")
			continue
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  WHEN\tACTION\tRELEASE\tCOLOR\tBY\tGIT\tMIGRATIONS\tRESULT\tTOOK\tIMAGES\n")
		for _, e := range hist {
			result := e.Result
			if e.Error != "" {
				result += ": " + truncate(e.Error, 80)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1fs\t%s\n", e.Time.Local().Format(time.DateTime), e.Action, e.Release,
				fromTo(e.From, e.Color), e.By, cmp.Or(e.GitRevision, "-"), cmp.Or(strings.Join(e.Migrations, ","), "-"),
				result, e.Seconds, cmp.Or(shortImages(e.Images, ","), "-"))
		}
		tw.Flush()
	}
	return errors.Join(errs...)
}

func fromTo(from, to string) string {
	if from == "" || from == to {
		return to
	}
	return from + "→" + to
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// LogsCmd is `taledeploy logs ENV SERVICE`.
type LogsCmd struct {
	Env     string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Service string   `arg:"" predictor:"service" help:"A service of the stack; for a stateless one, the live color's containers."`
	Follow  bool     `short:"f" help:"Keep streaming new lines until interrupted."`
	Since   string   `help:"Only lines newer than this (10m, 2h, or a timestamp)."`
	Tail    string   `default:"100" help:"Lines to show from the end of each log, or all."`
	Hosts   hostList `aliases:"host" predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
}

func (c *LogsCmd) Run(cli *CLI, ctx context.Context) error {
	env, conns, err := connectEnv(ctx, cli, c.Env, c.Hosts)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	width := 0
	for _, h := range conns {
		width = max(width, len(h.Name()))
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, h := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &prefixWriter{w: os.Stdout, mu: &mu, prefix: fmt.Sprintf("%-*s | ", width, h.Name())}
			err := host.Logs(ctx, h, env.StackFor(h.Name()), host.LogOptions{Service: c.Service, Follow: c.Follow, Since: c.Since, Tail: c.Tail}, w)
			w.flush()
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prefixWriter writes whole lines, each prefixed, to a writer shared by hosts.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
	}
}

func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		p.Write([]byte("\n"))
	}
}

// PlanCmd is `taledeploy plan ENV`.
type PlanCmd struct {
	Env   string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Hosts hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
}

func (c *PlanCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env, c.Hosts)
	if err != nil {
		return err
	}
	// The plan compares the env file a push would write: its values, too.
	if err := env.ResolveEnv(os.LookupEnv); err != nil {
		return err
	}
	if err := resolveBuild(ctx, env, ""); err != nil {
		return err
	}
	conns, err := connectAll(ctx, cli, env)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	var all []*plan.Preview
	var errs []error
	for _, h := range conns {
		d := &plan.Deployer{Host: h, Stack: env.StackFor(h.Name())}
		p, err := d.Preview(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
			continue
		}
		all = append(all, p)
	}
	if cli.JSON {
		if err := printJSON(map[string]any{"environment": env.Name, "hosts": all}); err != nil {
			return err
		}
		return errors.Join(errs...)
	}
	for i, p := range all {
		fmt.Printf("%d. %s: live %s (release %s) -> a push deploys %s\n", i+1, p.Host, cmp.Or(p.Live, "-"), cmp.Or(p.Release, "-"), p.NewColor)
		for _, r := range p.Refused {
			fmt.Printf("   REFUSED: %s\n", r)
		}
		for _, s := range p.Steps {
			fmt.Printf("   - %s\n", s)
		}
		for _, n := range p.Neutralised {
			fmt.Printf("   compose: each color resets %s\n", n)
		}
		for _, f := range p.Files {
			fmt.Printf("   %s %s\n", f.Change, f.Path)
			for _, line := range strings.Split(strings.TrimRight(f.Diff, "\n"), "\n") {
				fmt.Printf("     %s\n", line)
			}
		}
		if p.CaddyConfig != "" {
			fmt.Println("   caddy config: the Caddyfile as the running Caddy adapts it, gated by taledeploy")
			for _, line := range strings.Split(strings.TrimRight(p.CaddyConfig, "\n"), "\n") {
				fmt.Printf("     %s\n", line)
			}
		}
	}
	fmt.Println("Nothing was changed on any host.")
	return errors.Join(errs...)
}

// DoctorCmd is `taledeploy doctor ENV`.
type DoctorCmd struct {
	Env   string   `arg:"" predictor:"env" help:"Environment from the inventory."`
	Hosts hostList `predictor:"hosts" help:"Only these hosts of ENV (names, comma-separated)."`
}

func (c *DoctorCmd) Run(cli *CLI, ctx context.Context) error {
	env, err := loadEnv(cli.Inventory, c.Env, c.Hosts)
	if err != nil {
		return err
	}
	conns, errs := connectEach(ctx, cli, env)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	all := map[string][]host.Finding{}
	problems := 0
	for i, h := range env.Hosts {
		var fs []host.Finding
		if errs[i] != nil {
			fs = []host.Finding{{Check: "ssh", Detail: errs[i].Error(), Fix: "see the message: it says what to change"}}
		} else {
			fs = host.Doctor(ctx, conns[i], env.StackFor(h.Name))
		}
		for _, f := range fs {
			if !f.OK {
				problems++
			}
		}
		all[h.Name] = fs
	}
	if cli.JSON {
		printJSON(map[string]any{"environment": env.Name, "hosts": all, "problems": problems})
	} else {
		for _, h := range env.Hosts {
			fmt.Printf("%s:\n", h.Name)
			for _, f := range all[h.Name] {
				mark := "ok "
				if !f.OK {
					mark = "BAD"
				}
				fmt.Printf("  %s %-8s %s\n", mark, f.Check, f.Detail)
				if f.Fix != "" {
					fmt.Printf("      fix: %s\n", f.Fix)
				}
			}
		}
	}
	if problems > 0 {
		return fmt.Errorf("doctor found %d problem(s)", problems)
	}
	return nil
}
