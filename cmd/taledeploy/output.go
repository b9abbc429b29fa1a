package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"taledeploy/plan"
	"taledeploy/remote"
)

// printer writes one line per finished step, prefixed by the host's name.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	width int
}

func newPrinter(w io.Writer, env *plan.Environment) *printer {
	p := &printer{w: w}
	for _, h := range env.Hosts {
		p.width = max(p.width, len(h.Name))
	}
	return p
}

func (p *printer) event(e plan.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%-*s  %-10s %-6s %6.2fs  %s\n", p.width, e.Host, e.Step, e.Status, e.Duration.Seconds(), e.Message)
}

// summary prints which host runs which release, read back from each host.
func (p *printer) summary(ctx context.Context, conns []*remote.Client, env *plan.Environment, start time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\nsummary (%.1fs):\n", time.Since(start).Seconds())
	tw := tabwriter.NewWriter(p.w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  HOST\tLIVE\tRELEASE\tROLLBACK TO\n")
	for _, c := range conns {
		st, err := plan.ReadState(context.WithoutCancel(ctx), c, &env.Stack)
		switch {
		case err != nil:
			fmt.Fprintf(tw, "  %s\t?\t%v\t\n", c.Name(), err)
		case st == nil:
			fmt.Fprintf(tw, "  %s\t-\tnothing deployed\t-\n", c.Name())
		default:
			prev := "-"
			if st.Previous != nil {
				prev = st.Previous.Color + " " + st.Previous.Release
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Name(), st.Active, st.Release, prev)
		}
	}
	tw.Flush()
}
