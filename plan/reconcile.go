package plan

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"taledeploy/internal/stack"
	"time"
)

// observed is what runs on a host, the truth a record is checked against.
type observed struct {
	cs []Container
	// caddy is the color Caddy sends traffic to, "" when the proxy does not run or
	// routes to no color. With the gate it is the admitted color that runs (blue
	// when both are, as Caddy tries blue first); with a Caddyfile written by an
	// older taledeploy, the color it lists first.
	caddy    string
	gated    bool     // Caddy's config takes its upstreams from the gate
	admitted []string // colors the gate admits
	live     string   // see serving
}

// observe lists the stack's containers and asks Caddy where traffic goes.
func (d *Deployer) observe(ctx context.Context) (*observed, error) {
	s := d.Stack
	cs, err := inspectStack(ctx, d.Host, s)
	if err != nil {
		return nil, err
	}
	o := &observed{cs: cs}
	if slices.ContainsFunc(cs, func(c Container) bool { return c.Project == s.Project && c.Service == s.Proxy && c.Running() }) {
		if o.gated, err = d.caddyGated(ctx); err != nil {
			return nil, fmt.Errorf("ask caddy where traffic goes: %w", err)
		}
		if !o.gated {
			if o.caddy, err = d.caddyColor(ctx); err != nil {
				return nil, fmt.Errorf("ask caddy where traffic goes: %w", err)
			}
		}
	}
	if o.gated {
		for _, c := range []string{stack.Blue, stack.Green} {
			ok, err := d.admitted(ctx, c)
			if err != nil {
				return nil, err
			}
			if ok {
				o.admitted = append(o.admitted, c)
				if o.caddy == "" && o.runs(s, c) {
					o.caddy = c
				}
			}
		}
	}
	o.live = o.serving(s)
	return o, nil
}

// serving is the color that serves: Caddy's when it runs, else the only color
// that runs, else "".
func (o *observed) serving(s *stack.Stack) string {
	switch {
	case o.caddy != "" && o.runs(s, o.caddy):
		return o.caddy
	case o.runs(s, stack.Blue) && !o.runs(s, stack.Green):
		return stack.Blue
	case o.runs(s, stack.Green) && !o.runs(s, stack.Blue):
		return stack.Green
	}
	return ""
}

// color returns the containers of one color.
func (o *observed) color(s *stack.Stack, color string) []Container {
	var out []Container
	for _, c := range o.cs {
		if c.Project == s.ColorProject(color) {
			out = append(out, c)
		}
	}
	return out
}

// runs tells whether every stateless service of the color has a running container.
func (o *observed) runs(s *stack.Stack, color string) bool {
	cs := o.color(s, color)
	for _, svc := range s.Stateless {
		if !slices.ContainsFunc(cs, func(c Container) bool { return c.Service == svc && c.Running() }) {
			return false
		}
	}
	return true
}

// release returns the release every stateless container of the color runs, or ""
// when a service has no container or they differ.
func (o *observed) release(s *stack.Stack, color string) string {
	cs := o.color(s, color)
	rel := ""
	for _, svc := range s.Stateless {
		i := slices.IndexFunc(cs, func(c Container) bool { return c.Service == svc })
		if i < 0 || cs[i].Release == "" || (rel != "" && cs[i].Release != rel) {
			return ""
		}
		rel = cs[i].Release
	}
	return rel
}

// disagreements lists where the record and the host differ.
func (o *observed) disagreements(s *stack.Stack, st *State, stErr error) []string {
	var out []string
	if stErr != nil {
		out = append(out, stErr.Error())
	}
	switch {
	case st == nil && o.live != "":
		if stErr == nil {
			out = append(out, fmt.Sprintf("%s is missing, but %s serves release %s", s.StatePath(), s.ColorProject(o.live), o.release(s, o.live)))
		}
	case st == nil:
	case o.live == "":
		out = append(out, fmt.Sprintf("the record says %s is live, but no color serves: %s is not running", st.Active, s.ColorProject(st.Active)))
	case st.Active != o.live:
		out = append(out, fmt.Sprintf("the record says %s (release %s) is live, but traffic goes to %s (release %s)", st.Active, st.Release, o.live, o.release(s, o.live)))
	case o.release(s, o.live) != st.Release:
		out = append(out, fmt.Sprintf("the record says release %s is live, but %s runs release %s", st.Release, s.ColorProject(o.live), cmp.Or(o.release(s, o.live), "unknown")))
	}
	if o.gated && o.live != "" {
		switch {
		case !slices.Contains(o.admitted, o.live):
			out = append(out, fmt.Sprintf("the gate admits no color that runs, so Caddy sends %s no traffic (%s is empty)", o.live, s.GateDir()))
		case len(o.admitted) == 2:
			out = append(out, "the gate admits both colors (a switch was interrupted)")
		}
	}
	if st != nil && st.Previous != nil && st.Active == o.live {
		if got := o.release(s, st.Previous.Color); got != st.Previous.Release {
			out = append(out, fmt.Sprintf("the rollback target %s (release %s) is gone: %s holds %s", st.Previous.Color, st.Previous.Release,
				s.ColorProject(st.Previous.Color), cmp.Or(got, "nothing")))
		}
	}
	return out
}

// rebuild makes the record that matches what runs. old is the record it
// replaces, nil when missing or corrupt. A nil result means nothing serves.
func (o *observed) rebuild(s *stack.Stack, old *State, who string) *State {
	if o.live == "" {
		return nil
	}
	st := &State{Project: s.Project, Active: o.live, Release: o.release(s, o.live), Images: map[string]string{},
		DeployedBy: who + " (record rebuilt from the host)", DeployedAt: time.Now().UTC()}
	for _, c := range o.color(s, o.live) {
		st.Images[c.Service] = c.Image
	}
	if old != nil && old.Active == o.live && old.Release == st.Release {
		st.DeployedBy, st.DeployedAt, st.GitRevision = old.DeployedBy, old.DeployedAt, old.GitRevision
	}
	// The other color is a rollback target only when the record knew its release:
	// a color left half-started by an interrupted push was never verified.
	other := Slot{Color: stack.Other(o.live), Release: o.release(s, stack.Other(o.live))}
	switch {
	case other.Release == "":
	case old == nil:
		st.Previous = &other
	case old.Previous != nil && *old.Previous == other:
		st.Previous = &other
	case old.Active == other.Color && old.Release == other.Release:
		st.Previous = &other
	}
	return st
}

// caddyColor reads the running config of a Caddy that an older taledeploy set
// up, which switched by reloading, and returns the color its reverse proxies try first.
func (d *Deployer) caddyColor(ctx context.Context) (string, error) {
	data, err := d.admin(ctx, http.MethodGet, "/config/apps/http/servers", "", nil)
	if err != nil {
		return "", err
	}
	var cfg any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("caddy config: %w", err)
	}
	colors := map[string]bool{}
	walkJSON(cfg, func(m map[string]any) {
		if m["handler"] != "reverse_proxy" {
			return
		}
		ups, _ := m["upstreams"].([]any)
		if len(ups) == 0 {
			return
		}
		first, _ := ups[0].(map[string]any)
		dial, _ := first["dial"].(string)
		host, _, _ := strings.Cut(dial, ":")
		for _, svc := range d.Stack.Stateless {
			if c, ok := strings.CutPrefix(host, svc+"-"); ok && (c == stack.Blue || c == stack.Green) {
				colors[c] = true
			}
		}
	})
	if len(colors) != 1 {
		return "", nil
	}
	for c := range colors {
		return c, nil
	}
	return "", nil
}

// walkJSON calls fn on every object in a decoded JSON document.
func walkJSON(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(v)
		for _, e := range v {
			walkJSON(e, fn)
		}
	case []any:
		for _, e := range v {
			walkJSON(e, fn)
		}
	}
}
