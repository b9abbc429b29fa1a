package plan

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/pmezard/go-difflib/difflib"

	"taledeploy/internal/host"
	"taledeploy/internal/images"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// Preview is what a push would do on one host, found without changing anything.
type Preview struct {
	Host     string       `json:"host"`
	Live     string       `json:"live,omitempty"` // color serving now
	Release  string       `json:"release,omitempty"`
	NewColor string       `json:"new_color"`
	Refused  []string     `json:"refused,omitempty"` // why the push would stop
	Steps    []string     `json:"steps"`
	Files    []FileChange `json:"files"`
	// Neutralised is what of the compose file the color overlays reset.
	Neutralised []string `json:"neutralised,omitempty"`
	// CaddyConfig is the config Caddy will run (the team's Caddyfile adapted
	// by the running Caddy, gated), as a diff against what it runs now; ""
	// when they are the same or the proxy does not run yet.
	CaddyConfig string `json:"caddy_config,omitempty"`
}

// FileChange is one file a push would write on the host.
type FileChange struct {
	Path   string `json:"path"`
	Change string `json:"change"`         // new, changed
	Diff   string `json:"diff,omitempty"` // unified diff; env values masked
}

// Preview reads the host and says what Push would do, step by step from the
// push's own list. It only reads: files over SFTP, the Docker API, `compose
// config` with the local compose file on stdin, and Caddy's running config.
func (d *Deployer) Preview(ctx context.Context) (*Preview, error) {
	s := d.Stack
	p := &Preview{Host: d.Host.Name()}
	if l, err := host.ReadLock(ctx, d.Host, s); err != nil {
		p.Refused = append(p.Refused, err.Error())
	} else if l != nil {
		if why := l.Stale(time.Now()); why != "" {
			p.Steps = append(p.Steps, fmt.Sprintf("lock: take over the stale lock of %s (%s) and converge", l.Command, why))
		} else {
			p.Refused = append(p.Refused, "locked: "+l.Describe(time.Now()))
		}
	}
	st, stErr := host.ReadState(ctx, d.Host, s)
	o, err := host.Observe(ctx, d.Host, s)
	s.EngineAPI = host.Engine(d.Host).ClientVersion() // as Check: the overlay is the host's
	if err != nil {
		return nil, err
	}
	if probs := o.Disagreements(s, st, stErr); len(probs) > 0 {
		p.Refused = append(p.Refused, fmt.Sprintf("the record disagrees with the host (%s); --repair would rebuild it", strings.Join(probs, "; ")))
	}
	if stErr != nil {
		st = nil
	}
	r := d.newRun(&Current{State: st, Live: o.Live, Containers: o.Containers}, "push")
	v := &view{s: s, o: o, live: o.Live, color: stack.Blue}
	p.Live = o.Live
	if o.Live != "" {
		v.color = stack.Other(o.Live)
		p.Release = o.Release(s, o.Live)
	}
	p.NewColor = v.color
	p.Neutralised = s.Neutralised()

	if v.files, err = fileChanges(ctx, d.Host, d.Stack, v.color); err != nil {
		return nil, err
	}
	{
		// What the push's prune would remove: the new release is the newest.
		const next = "(this push)"
		hist, err := host.ReadHistory(ctx, d.Host, s)
		if err != nil {
			return nil, err
		}
		hist = append(hist, host.HistoryEntry{Result: "ok", Action: "push", Release: next})
		if v.prune, err = prunable(ctx, d.Host, s, keptReleases(s, hist, next, p.Release), o.Containers); err != nil {
			return nil, err
		}
	}
	p.Files = v.files
	if _, running := host.RunningProxy(s, o.Containers); running {
		if _, err := r.validateCaddyfile(ctx); err != nil {
			if errors.Is(err, remote.ErrDisconnected) {
				return nil, err
			}
			p.Refused = append(p.Refused, err.Error())
		} else if cur, err := r.proxy().Running(ctx); err != nil {
			return nil, err
		} else if !bytes.Equal(cur, r.caddyConfig) {
			v.reload = true
			p.CaddyConfig, _ = difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
				A: difflib.SplitLines(string(cur)), B: difflib.SplitLines(string(r.caddyConfig)),
				FromFile: "caddy config (running)", ToFile: "caddy config (after the push)", Context: 3})
			// Caddy fills the Caddyfile's {$VAR} in from its environment, which
			// the inventory's env feeds: never print those values.
			p.CaddyConfig = maskValues(p.CaddyConfig, s.Env)
		}
	} else {
		v.reload = true
	}
	changed, missing, err := r.statefulPreview(ctx)
	if err != nil {
		return nil, err
	}
	v.missing = missing
	if len(changed) > 0 {
		p.Refused = append(p.Refused, fmt.Sprintf("stateful service %s changed; only --recreate-stateful recreates it", strings.Join(changed, ", ")))
	}
	if len(s.Migrations) > 0 {
		if v.expand, v.contract, _, err = pendingMigrations(ctx, d.Host, d.Stack); err != nil {
			return nil, err
		}
		if err := checkMigrations(v.expand); err != nil {
			p.Refused = append(p.Refused, err.Error()+"; `taledeploy migrations check` lists the same")
		}
	}
	for _, st := range pushSteps() {
		if st.when != nil && !st.when(s, v.live) {
			continue
		}
		if line := st.describe(v); line != "" {
			p.Steps = append(p.Steps, st.name+": "+line)
		}
	}
	return p, nil
}

// view is what Preview found, for the steps to describe themselves.
type view struct {
	s                *stack.Stack
	o                *host.Observed
	live, color      string
	files            []FileChange
	reload           bool // Caddy loads a new config first
	missing          []string
	expand, contract []stack.MigrationFile
	prune            []string // image tags the push would remove
}

func describeUpload(v *view) string { return fmt.Sprintf("%d file(s) change", len(v.files)) }

func describePreflight(*view) string {
	return "check stateful services, validate the Caddyfile with the running Caddy, free memory and disk"
}

func describeImages(v *view) string {
	var parts []string
	if v.s.Build == stack.BuildLocal && len(images.Built(v.s)) > 0 {
		parts = append(parts, fmt.Sprintf("%s: built on this machine once, the layers the host lacks sent over SSH", strings.Join(images.Built(v.s), ", ")))
	}
	for _, svc := range v.s.Pulled() {
		ref, err := v.s.PullRef(svc)
		if err != nil {
			ref = err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s: pull %s", svc, ref))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + "; tagged for " + v.s.ColorProject(v.color)
}

func describeBuild(v *view) string {
	if len(v.s.HostBuilt()) == 0 {
		return ""
	}
	return fmt.Sprintf("%s (%s)", strings.Join(v.s.HostBuilt(), ", "), v.s.ColorProject(v.color))
}

func describeStateful(v *view) string {
	if len(v.missing) == 0 {
		return ""
	}
	return "start " + strings.Join(v.missing, ", ")
}

func describeMigrate(v *view) string {
	line := "none pending"
	if len(v.expand) > 0 {
		line = "apply " + names(v.expand) + " with the new release's image"
	}
	if len(v.contract) > 0 {
		line += "; " + names(v.contract) + " wait for `taledeploy migrate contract`"
	}
	return line
}

func describeStart(v *view) string {
	return fmt.Sprintf("%s beside %s", v.s.ColorProject(v.color), cmp.Or(v.live, "nothing"))
}

func describeVerify(v *view) string {
	return fmt.Sprintf("wait up to %s for health checks and %d route(s)", v.s.HealthTimeout.Duration, len(v.s.Routes))
}

func describeSwitch(v *view) string {
	return fmt.Sprintf("Caddy sends traffic to %s: the gate admits it%s%s", v.color, retireNote(v.live), reloadNote(v))
}

func describeWindow(v *view) string {
	return fmt.Sprintf("watch %s through Caddy for %s, switch back on failure", v.color, v.s.VerifyWindow.Duration)
}

func describeDrain(v *view) string {
	return fmt.Sprintf("wait up to %s for requests in flight on %s", v.s.DrainTimeout.Duration, v.live)
}

func describeStop(v *view) string {
	return fmt.Sprintf("%s, kept for rollback", v.s.ColorProject(v.live))
}

func describeRecord(*view) string { return "state.json and history.jsonl" }

// fileChanges compares what a push would upload with the host's files.
func fileChanges(ctx context.Context, h host.Conn, s *stack.Stack, newColor string) ([]FileChange, error) {
	files, err := s.ReleaseFiles()
	if err != nil {
		return nil, err
	}
	// Files the last upload left as they are here need no reading.
	have, err := currentFiles(ctx, h, s, files, false)
	if err != nil {
		return nil, err
	}
	var out []FileChange
	for _, f := range files {
		remotePath := s.Remote(f.Rel)
		if have[remotePath] {
			continue
		}
		old, err := h.ReadFile(ctx, remotePath)
		change := "changed"
		switch {
		case err != nil && host.IsNotExist(err):
			change, old = "new", nil
		case err != nil:
			return nil, err
		case bytes.Equal(old, f.Data):
			continue
		}
		fc := FileChange{Path: remotePath, Change: change}
		switch {
		case remotePath == s.Paths().Env() || f.Mode.Perm() == 0o600: // env files: names, never values
			fc.Diff = envDiff(old, f.Data)
		case isText(old) && isText(f.Data):
			fc.Diff, _ = difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
				A: difflib.SplitLines(string(old)), B: difflib.SplitLines(string(f.Data)),
				FromFile: remotePath + " (host)", ToFile: f.Rel + " (after the push)", Context: 2})
		default:
			fc.Diff = fmt.Sprintf("binary: %s -> %s\n", units.BytesSize(float64(len(old))), units.BytesSize(float64(len(f.Data))))
		}
		out = append(out, fc)
	}
	return out, nil
}

// maskValues hides every value of env in text.
func maskValues(text string, env map[string]string) string { return stack.MaskValues(text, env) }

// envDiff says which variables are added, removed or changed, never their values.
func envDiff(old, new []byte) string {
	parse := func(b []byte) map[string]string {
		m := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				m[k] = v
			}
		}
		return m
	}
	a, b := parse(old), parse(new)
	var lines []string
	for k, v := range b {
		switch ov, ok := a[k]; {
		case !ok:
			lines = append(lines, "+ "+k+"=••• (new)")
		case ov != v:
			lines = append(lines, "~ "+k+"=••• (value changed)")
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			lines = append(lines, "- "+k+" (removed)")
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func isText(b []byte) bool {
	return len(b) < 256<<10 && !bytes.ContainsRune(b, 0)
}

// statefulPreview compares the local compose file's stateful services with their
// containers, giving compose the file on stdin so nothing is written.
func (r *run) statefulPreview(ctx context.Context) (changed, missing []string, err error) {
	s := r.Stack
	local, err := readLocal(s)
	if err != nil {
		return nil, nil, err
	}
	argv := append(host.LowPriority(), "docker", "compose", "--project-directory", s.RemoteDir, "-f", "-", "-p", s.Project)
	if _, err := r.Host.ReadFile(ctx, s.Paths().Env()); err == nil {
		argv = append(argv, "--env-file", s.Paths().Env())
	}
	argv = append(argv, "config", "--hash", strings.Join(s.Stateful, ","))
	out, err := r.Host.Run(ctx, remote.Cmd{Argv: argv, Env: host.ComposeEnv(r.Stack, "", ""), Stdin: bytes.NewReader(local)})
	if err != nil {
		return nil, nil, fmt.Errorf("compose config: %w", err)
	}
	return r.compareStateful(out)
}

func readLocal(s *stack.Stack) ([]byte, error) {
	files, err := s.ReleaseFiles()
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Rel == s.ComposeFile {
			return f.Data, nil
		}
	}
	return nil, fmt.Errorf("%w: compose file %s is not among the files a push uploads", stack.ErrBadInput, s.ComposeFile)
}

func retireNote(live string) string {
	if live == "" {
		return ""
	}
	return ", then retires " + live
}

// reloadNote says whether the switch reloads Caddy: only when Caddy does not
// run the config of the team's current Caddyfile yet.
func reloadNote(v *view) string {
	if v.o.Gated && !v.reload {
		return " (no Caddy reload)"
	}
	return "; Caddy first loads the config of the Caddyfile (a reload; see caddy config below)"
}
