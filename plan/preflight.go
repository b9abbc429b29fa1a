package plan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// preflight checks, before anything is built or started, what would make the
// push fail or hurt later: a changed stateful service, a Caddyfile Caddy
// rejects, and too little memory or disk for a second color.
func preflight(ctx context.Context, r *run) (string, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		msgs = make([]string, 4)
	)
	checks := []func() (string, error){
		func() (string, error) { return r.checkPendingMigrations(ctx) },
		func() (string, error) { return r.checkStateful(ctx, r.release) },
		func() (string, error) { return r.validateCaddyfile(ctx) },
		func() (string, error) {
			if r.Opts.SkipPreflight {
				return "memory and disk not checked (--skip-preflight)", nil
			}
			return host.CheckResources(ctx, r.Host, r.Stack, r.cs, r.live)
		},
	}
	for i, check := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, err := check()
			mu.Lock()
			defer mu.Unlock()
			msgs[i] = msg
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return strings.Join(slices.DeleteFunc(msgs, func(m string) bool { return m == "" }), "; "), nil
}

// checkStateful compares each stateful service's definition with the one its
// container was made from. A changed one is refused unless allowed, since
// recreating it interrupts what depends on it.
func (r *run) checkStateful(ctx context.Context, release string) (string, error) {
	s := r.Stack
	r.composeSum = s.ComposeSum()
	if r.statefulAsRecorded() {
		// Same compose file and env as the last push, same containers: Compose
		// would print the hashes the containers carry.
		r.changed, r.missing = nil, nil
		return "", nil
	}
	out, err := host.RunCompose(ctx, r.Host, r.Stack, "", host.ComposeEnv(r.Stack, "", release), "config", "--hash", strings.Join(s.Stateful, ","))
	if err != nil {
		return "", fmt.Errorf("compose config: %w", err)
	}
	r.changed, r.missing, err = r.compareStateful(out)
	if err != nil {
		return "", err
	}
	if len(r.changed) > 0 && !r.Opts.RecreateStateful {
		return "", &StatefulError{Changed: r.changed, Proxy: s.Proxy, ComposeFile: s.ComposeFile}
	}
	if len(r.changed) > 0 {
		return "will recreate " + strings.Join(r.changed, ", "), nil
	}
	return "", nil
}

// statefulAsRecorded tells whether the compose file and env are those of the
// last push and every stateful container still carries the hash recorded then.
func (r *run) statefulAsRecorded() bool {
	st, s := r.state, r.Stack
	if st == nil || r.composeSum == "" || st.ComposeSum != r.composeSum {
		return false
	}
	for _, svc := range s.Stateful {
		i := slices.IndexFunc(r.cs, func(c host.Container) bool { return c.Project == s.Project && c.Service == svc })
		if i < 0 || !r.cs[i].Running() || r.cs[i].ConfigHash == "" || r.cs[i].ConfigHash != st.Stateful[svc] {
			return false
		}
	}
	return true
}

// compareStateful reads `compose config --hash` output and says which stateful
// services changed since their container was made, and which do not run.
func (r *run) compareStateful(out []byte) (changed, missing []string, err error) {
	s := r.Stack
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			want[f[0]] = f[1]
		}
	}
	for _, svc := range s.Stateful {
		if want[svc] == "" {
			return nil, nil, fmt.Errorf("compose config printed no hash for %s", svc)
		}
		i := slices.IndexFunc(r.cs, func(c host.Container) bool { return c.Project == s.Project && c.Service == svc })
		switch {
		case i < 0:
			missing = append(missing, svc)
		case r.cs[i].ConfigHash != want[svc]:
			changed = append(changed, svc)
		case !r.cs[i].Running():
			missing = append(missing, svc)
		}
	}
	return changed, missing, nil
}

// validateCaddyfile has the running Caddy check the stack's Caddyfile before
// anything is started. On an empty host the proxy does not run yet and validates
// it when it starts.
func (r *run) validateCaddyfile(ctx context.Context) (string, error) {
	s := r.Stack
	proxy, ok := host.RunningProxy(s, r.cs)
	if !ok {
		return "", nil
	}
	if !slices.ContainsFunc(proxy.Mounts, func(m host.Mount) bool {
		return m.Source == s.Paths().Admin() && m.Destination == stack.ProxyAdminDir
	}) {
		return "", fmt.Errorf("the proxy container does not share %s as %s, so taledeploy cannot reach Caddy: it was made without taledeploy's overlay; recreate it with the next push", s.Paths().Admin(), stack.ProxyAdminDir)
	}
	caddyfile, err := s.ReadCaddyfile()
	if err != nil {
		return "", err
	}
	if bytes.HasPrefix(caddyfile, []byte("# Rendered by `taledeploy render`")) {
		return "", fmt.Errorf("%w: %s was rendered by an older taledeploy from routes; the Caddyfile is now yours: write the sites as you want them served, with reverse_proxy to each stateless service by its compose name (reverse_proxy platform:8080), as in the example's services/proxy/Caddyfile", ErrCaddyfile, s.Caddyfile)
	}
	// What the switch and the window need of Caddy (the config it runs and
	// would start from, its CA's root) is asked beside the check rather than
	// after it, or while traffic moves.
	var (
		wg                 sync.WaitGroup
		file, running      []byte
		loadedErr, rootErr error
	)
	wg.Go(func() { file, running, loadedErr = r.proxy().Loaded(ctx) })
	if slices.ContainsFunc(s.Routes, func(rt *stack.Route) bool { return siteScheme(rt.Site) == "https" }) {
		wg.Go(func() { r.roots, rootErr = r.proxy().Roots(ctx) })
	}
	// The running Caddy adapts the team's Caddyfile (POST /adapt) without
	// loading it: the same parser the proxy would use. A config that adapts
	// but fails to start is refused by /load itself, which keeps the running one.
	cfg, warnings, err := r.proxy().Prepare(ctx, caddyfile)
	wg.Wait()
	if err != nil {
		if errors.Is(err, remote.ErrDisconnected) {
			return "", err
		}
		return "", fmt.Errorf("%w: %v. Fix %s; traffic is untouched", ErrCaddyfile, err, s.Caddyfile)
	}
	r.caddyConfig = cfg
	if err := errors.Join(loadedErr, rootErr); err != nil {
		return "", err
	}
	r.caddyCurrent = host.RunsConfig(file, running, cfg)
	if len(warnings) > 0 {
		// Caddy takes the file, but something in it may not be what the team
		// meant: an import relative to the Caddyfile, say, which Caddy
		// resolves from its own working folder.
		return "Caddyfile valid; caddy warns: " + strings.Join(warnings, "; "), nil
	}
	return "Caddyfile valid", nil
}

// StatefulError is a stateful service whose definition changed since its
// container was made: a push never recreates one on its own.
type StatefulError struct {
	Changed     []string
	Proxy       string // the proxy service: recreating it drops connections
	ComposeFile string
}

func (e *StatefulError) Error() string {
	return fmt.Sprintf("%v: %s changed since it was started, and a push never recreates a stateful service on its own", ErrStateful, strings.Join(e.Changed, ", "))
}

func (e *StatefulError) Unwrap() error { return ErrStateful }

// Costs says what recreating each changed service would interrupt.
func (e *StatefulError) Costs() []string {
	var costs []string
	for _, svc := range e.Changed {
		if svc == e.Proxy {
			costs = append(costs, fmt.Sprintf("recreating %s drops every connection and refuses new ones for a second or two", svc))
		} else {
			costs = append(costs, fmt.Sprintf("recreating %s stops it for a few seconds, and requests that need it fail meanwhile", svc))
		}
	}
	return costs
}
