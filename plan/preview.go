package plan

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/pmezard/go-difflib/difflib"

	"taledeploy/internal/host"
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
}

// FileChange is one file a push would write on the host.
type FileChange struct {
	Path   string `json:"path"`
	Change string `json:"change"`         // new, changed
	Diff   string `json:"diff,omitempty"` // unified diff; env values masked
}

// Preview reads the host and says what Push would do. It only reads: files over
// SFTP, `docker ps` and `docker inspect`, `compose config` with the local
// compose file on stdin, and Caddy's running config.
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
	o, err := host.Observe(ctx, d.Host, d.Stack)
	if err != nil {
		return nil, err
	}
	d.cs = o.Containers
	if probs := o.Disagreements(s, st, stErr); len(probs) > 0 {
		p.Refused = append(p.Refused, fmt.Sprintf("the record disagrees with the host (%s); --repair would rebuild it", strings.Join(probs, "; ")))
	}
	p.Live, p.NewColor = o.Live, stack.Blue
	if o.Live != "" {
		p.NewColor = stack.Other(o.Live)
		p.Release = o.Release(s, o.Live)
	}

	files, err := d.fileChanges(ctx, p.NewColor)
	if err != nil {
		return nil, err
	}
	p.Files = files
	p.Steps = append(p.Steps, fmt.Sprintf("upload: %d file(s) change", len(files)))
	changed, missing, err := d.statefulPreview(ctx)
	if err != nil {
		return nil, err
	}
	if len(changed) > 0 {
		p.Refused = append(p.Refused, fmt.Sprintf("stateful service %s changed; only --recreate-stateful recreates it", strings.Join(changed, ", ")))
	}
	p.Steps = append(p.Steps,
		"preflight: check stateful services, validate the Caddyfile with the running Caddy, free memory and disk",
		fmt.Sprintf("build: %s (%s)", strings.Join(s.Stateless, ", "), s.ColorProject(p.NewColor)))
	if len(missing) > 0 {
		p.Steps = append(p.Steps, "stateful: start "+strings.Join(missing, ", "))
	}
	if len(s.Migrations) > 0 {
		expand, contract, _, err := d.pendingMigrations(ctx)
		if err != nil {
			return nil, err
		}
		step := "migrate: none pending"
		if len(expand) > 0 {
			step = "migrate: apply " + names(expand) + " with the new release's image"
			if err := checkMigrations(expand); err != nil {
				p.Refused = append(p.Refused, err.Error())
			}
		}
		if len(contract) > 0 {
			step += "; " + names(contract) + " wait for `taledeploy migrate contract`"
		}
		p.Steps = append(p.Steps, step)
	}
	p.Steps = append(p.Steps,
		fmt.Sprintf("start: %s beside %s", s.ColorProject(p.NewColor), cmp.Or(p.Live, "nothing")),
		fmt.Sprintf("verify: wait up to %s for health checks and %d route(s)", s.HealthTimeout.Duration, len(s.Routes)),
		fmt.Sprintf("switch: Caddy sends traffic to %s: the gate admits it%s%s", p.NewColor, retireNote(p.Live), reloadNote(o, files, s.Remote(s.Caddyfile))))
	if p.Live != "" {
		if s.VerifyWindow.Duration > 0 {
			p.Steps = append(p.Steps, fmt.Sprintf("window: watch %s through Caddy for %s, switch back on failure", p.NewColor, s.VerifyWindow.Duration))
		}
		p.Steps = append(p.Steps,
			fmt.Sprintf("drain: wait up to %s for requests in flight on %s", s.DrainTimeout.Duration, p.Live),
			fmt.Sprintf("stop: %s, kept for rollback", s.ColorProject(p.Live)))
	}
	p.Steps = append(p.Steps, "record: state.json and history.jsonl")
	return p, nil
}

// fileChanges compares what a push would upload, and the Caddyfile the switch
// would write, with the host's files.
func (d *Deployer) fileChanges(ctx context.Context, newColor string) ([]FileChange, error) {
	s := d.Stack
	files, err := s.ReleaseFiles()
	if err != nil {
		return nil, err
	}
	// Files the last upload left as they are here need no reading.
	have := currentFiles(ctx, d.Host, s, files)
	files = append(files, stack.ReleaseFile{Rel: s.Caddyfile, Data: s.CaddyfileText()})
	var out []FileChange
	for _, f := range files {
		remotePath := s.Remote(f.Rel)
		if have[remotePath] {
			continue
		}
		old, err := d.Host.ReadFile(ctx, remotePath)
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
		case remotePath == s.EnvPath():
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
func (d *Deployer) statefulPreview(ctx context.Context) (changed, missing []string, err error) {
	s := d.Stack
	local, err := readLocal(s)
	if err != nil {
		return nil, nil, err
	}
	argv := append(host.LowPriority(), "docker", "compose", "--project-directory", s.RemoteDir, "-f", "-", "-p", s.Project)
	if _, err := d.Host.ReadFile(ctx, s.EnvPath()); err == nil {
		argv = append(argv, "--env-file", s.EnvPath())
	}
	argv = append(argv, "config", "--hash", strings.Join(s.Stateful, ","))
	out, err := d.Host.Run(ctx, remote.Cmd{Argv: argv, Env: host.ComposeEnv(d.Stack, "", ""), Stdin: bytes.NewReader(local)})
	if err != nil {
		return nil, nil, fmt.Errorf("compose config: %w", err)
	}
	return d.compareStateful(out)
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

// reloadNote says whether the switch reloads Caddy: only when Caddy does not run
// the stack's current Caddyfile.
func reloadNote(o *host.Observed, files []FileChange, caddyfile string) string {
	if o.Gated && !slices.ContainsFunc(files, func(f FileChange) bool { return f.Path == caddyfile }) {
		return " (no Caddy reload)"
	}
	return "; Caddy first loads the new Caddyfile (a reload)"
}
