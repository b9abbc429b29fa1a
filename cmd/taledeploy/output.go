package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/plan"
)

// printer reports steps as they finish: a line per step prefixed by the host's
// name, or one JSON object per line with --json. On a terminal a live line
// shows the steps running now and for how long.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	width int
	json  bool

	live     bool                 // draw the live line
	running  map[string]time.Time // "host step" -> start
	progress map[string]string    // "host step" -> bytes sent and rate
	drawn    int                  // live lines on screen
	stop     chan struct{}
}

func newPrinter(w io.Writer, hosts []*stack.Host, jsonLines bool) *printer {
	p := &printer{w: w, json: jsonLines, running: map[string]time.Time{}, progress: map[string]string{}, stop: make(chan struct{})}
	for _, h := range hosts {
		p.width = max(p.width, len(h.Name))
	}
	if f, ok := w.(*os.File); ok && !jsonLines && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		p.live = true
		go p.tick()
	}
	return p
}

// jsonEvent is one line of --json output.
type jsonEvent struct {
	Type     string  `json:"type"` // step
	Host     string  `json:"host"`
	Step     string  `json:"step"`
	Status   string  `json:"status"` // running, ok, failed
	Duration float64 `json:"duration_s"`
	Message  string  `json:"message,omitempty"`
	Log      string  `json:"log,omitempty"` // the failed containers' last log lines
}

// jsonProgress is one line of --json output during a transfer.
type jsonProgress struct {
	Type    string `json:"type"` // progress
	Host    string `json:"host"`
	Step    string `json:"step"`
	Sent    int64  `json:"sent_bytes"`
	Total   int64  `json:"total_bytes"`
	Message string `json:"message"`
}

func (p *printer) event(e plan.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := e.Host + " " + e.Step
	p.width = max(p.width, len(e.Host)) // this machine's own steps come first
	if e.Status == "progress" {
		// Shown on the live line, or as its own JSON line; a log that is not
		// a terminal gets the step's own line when it ends.
		p.progress[key] = e.Message
		if p.json {
			p.writeJSON(jsonProgress{Type: "progress", Host: e.Host, Step: e.Step, Sent: e.Sent, Total: e.Total, Message: e.Message})
		}
		return
	}
	delete(p.progress, key)
	if e.Status == "running" {
		p.running[key] = time.Now()
	} else {
		delete(p.running, key)
	}
	if p.json {
		p.writeJSON(jsonEvent{Type: "step", Host: e.Host, Step: e.Step, Status: e.Status, Duration: e.Duration.Seconds(), Message: e.Message, Log: e.Log})
		return
	}
	if e.Status == "running" {
		return
	}
	p.clearLive()
	fmt.Fprintf(p.w, "%-*s  %-10s %-6s %6.2fs  %s\n", p.width, e.Host, e.Step, e.Status, e.Duration.Seconds(), e.Message)
	if e.Log != "" {
		for _, line := range strings.Split(strings.TrimRight(e.Log, "\n"), "\n") {
			fmt.Fprintf(p.w, "%-*s  | %s\n", p.width, e.Host, line)
		}
	}
}

func (p *printer) writeJSON(v any) {
	data, _ := json.Marshal(v)
	fmt.Fprintf(p.w, "%s\n", data)
}

// tick redraws the live lines, one per host with a step running, while steps run.
func (p *printer) tick() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		p.clearLive()
		var lines []string
		for k, since := range p.running {
			host, step, _ := strings.Cut(k, " ")
			lines = append(lines, strings.TrimSpace(fmt.Sprintf("%-*s  %-10s %6.1fs … %s", p.width, host, step, time.Since(since).Seconds(), p.progress[k])))
		}
		sort.Strings(lines)
		if w, _, err := term.GetSize(int(p.w.(*os.File).Fd())); err == nil && w > 4 {
			for i, l := range lines {
				if len(l) > w-1 {
					lines[i] = l[:w-1]
				}
			}
		}
		fmt.Fprint(p.w, strings.Join(lines, "\n"))
		p.drawn = len(lines)
		p.mu.Unlock()
	}
}

// clearLive erases the live lines; the cursor ends where the first one began.
func (p *printer) clearLive() {
	if p.drawn == 0 {
		return
	}
	fmt.Fprint(p.w, "\r\033[K")
	for range p.drawn - 1 {
		fmt.Fprint(p.w, "\033[1A\033[K")
	}
	p.drawn = 0
}

// note prints a line that belongs to no host and step.
func (p *printer) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.writeJSON(map[string]string{"type": "note", "message": msg})
		return
	}
	p.clearLive()
	fmt.Fprintln(p.w, msg)
}

// close stops the live line.
func (p *printer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.clearLive()
}

// hostSummary is one host's end state, read back from the host.
type hostSummary struct {
	Host     string `json:"host"`
	Live     string `json:"live,omitempty"`
	Release  string `json:"release,omitempty"`
	Rollback string `json:"rollback,omitempty"`
	Error    string `json:"error,omitempty"`
}

// summary prints which host runs which release, read back from each host, and
// the command's result; with --json it is the last line.
func (p *printer) summary(ctx context.Context, conns []host.Conn, env *stack.Environment, start time.Time, err error) {
	// Every host is asked at once.
	hosts := make([]hostSummary, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			h := hostSummary{Host: c.Name()}
			st, rerr := host.ReadState(context.WithoutCancel(ctx), c, env.StackFor(c.Name()))
			switch {
			case rerr != nil:
				h.Error = rerr.Error()
			case st != nil:
				h.Live, h.Release = st.Active, st.Release
				if st.Previous != nil {
					h.Rollback = st.Previous.Color + " " + st.Previous.Release
				}
			}
			hosts[i] = h
		})
	}
	wg.Wait()
	p.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		doc := map[string]any{"type": "summary", "ok": err == nil, "duration_s": time.Since(start).Seconds(), "hosts": hosts, "exit_code": exitCode(err)}
		if err != nil {
			doc["error"] = err.Error()
		}
		p.writeJSON(doc)
		return
	}
	fmt.Fprintf(p.w, "\nsummary (%.1fs):\n", time.Since(start).Seconds())
	tw := tabwriter.NewWriter(p.w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  HOST\tLIVE\tRELEASE\tROLLBACK TO\n")
	for _, h := range hosts {
		switch {
		case h.Error != "":
			fmt.Fprintf(tw, "  %s\t?\t%s\t\n", h.Host, h.Error)
		case h.Live == "":
			fmt.Fprintf(tw, "  %s\t-\tnothing deployed\t-\n", h.Host)
		default:
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", h.Host, h.Live, h.Release, cmp.Or(h.Rollback, "-"))
		}
	}
	tw.Flush()
}
