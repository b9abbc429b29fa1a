package plan

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"taledeploy/internal/host"
	"time"
)

// recordInterrupted adds the command whose stale lock this one took over to the
// history: it died before it could, and what it did (a migration, say) stays on
// the host.
func (d *Deployer) recordInterrupted(ctx context.Context) {
	l := d.stale
	action := l.Command
	if f := strings.Fields(l.Command); len(f) > 1 {
		action = f[1]
	}
	e := host.HistoryEntry{Time: l.Heartbeat, Action: action, Release: l.Release, Color: l.Color, By: l.Who, Result: "interrupted",
		Error: fmt.Sprintf("interrupted at step %s (its process died or lost its connection)", cmp.Or(l.Step, "unknown")), Seconds: l.Heartbeat.Sub(l.Since).Seconds()}
	if log, err := host.ReadMigrations(ctx, d.Host, d.Stack); err == nil {
		for _, a := range log.Applied {
			if a.Release == l.Release && !a.At.Before(l.Since) {
				e.Migrations = append(e.Migrations, a.File)
			}
		}
	}
	_ = host.AppendHistory(ctx, d.Host, d.Stack, e)
}

// history adds the command to the host's history, failed or not.
// The record step writes it with the record, when that succeeds.
func (r *run) history(ctx context.Context, err error) {
	if err == nil && r.historyDone {
		return
	}
	_ = host.AppendHistory(ctx, r.Host, r.Stack, r.historyEntry(err))
}

// historyEntry is the command's line in the history, ending with err.
func (r *run) historyEntry(err error) host.HistoryEntry {
	e := host.HistoryEntry{Time: time.Now().UTC(), Action: r.action, Release: r.release, Color: r.color, From: r.before,
		By: r.Opts.Who, GitRevision: r.Opts.GitRevision, Result: "ok", Seconds: time.Since(r.began).Seconds(), Migrations: r.applied}
	if err != nil {
		e.Result, e.Error = "failed", err.Error()
	}
	// The record step sets the images that run; a push that failed before
	// it names the images it built here.
	if r.Images != nil && r.action == "push" {
		e.Images = map[string]string{}
		for _, img := range r.Images.Images {
			e.Images[img.Service] = cmp.Or(r.shipped[img.Service], img.ID)
		}
	}
	return e
}

// NewRelease makes a release id from the time and the git revision.
func NewRelease(t time.Time, rev string) string {
	id := t.UTC().Format("20060102-150405")
	if rev != "" {
		id += "-" + rev
	}
	return id
}
