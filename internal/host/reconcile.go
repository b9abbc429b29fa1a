package host

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"taledeploy/internal/stack"
	"time"
)

// Observed is what runs on a host, the truth a record is checked against.
type Observed struct {
	Containers []Container
	// CaddyColor is the color Caddy sends traffic to, "" when the proxy does not run or
	// routes to no color. With the gate it is the admitted color that runs (blue
	// when both are, as Caddy tries blue first); with a Caddyfile written by an
	// older taledeploy, the color it lists first.
	CaddyColor string
	Gated      bool     // Caddy's config takes its upstreams from the gate
	Admitted   []string // colors the gate admits
	Live       string   // see serving
}

// Observe lists the stack's containers and asks Caddy where traffic goes.
func Observe(ctx context.Context, h Conn, s *stack.Stack) (*Observed, error) {
	// Caddy's config and the gate are asked with the containers, though
	// only a running proxy's answers count: one round trip less.
	var (
		admitted          []string
		gated             bool
		gateErr, caddyErr error
		wg                sync.WaitGroup
	)
	asked, stop := context.WithCancel(ctx)
	defer stop()
	wg.Go(func() { admitted, gateErr = NewCaddy(h, s).AdmittedColors(asked) })
	wg.Go(func() { gated, caddyErr = NewCaddy(h, s).Gated(asked) })
	cs, err := InspectStack(ctx, h, s)
	if _, ok := RunningProxy(s, cs); err != nil || !ok {
		// No proxy: its admin socket is not there, and asking it retries
		// for seconds.
		stop()
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	o := &Observed{Containers: cs}
	if _, ok := RunningProxy(s, cs); ok {
		o.Gated, err = gated, caddyErr
		if err != nil {
			return nil, fmt.Errorf("ask caddy where traffic goes: %w", err)
		}
		if !o.Gated {
			if o.CaddyColor, err = NewCaddy(h, s).ConfigColor(ctx); err != nil {
				return nil, fmt.Errorf("ask caddy where traffic goes: %w", err)
			}
		} else if gateErr != nil {
			return nil, gateErr
		}
		if o.Gated {
			for _, c := range admitted {
				o.Admitted = append(o.Admitted, c)
				if o.CaddyColor == "" && o.Runs(s, c) {
					o.CaddyColor = c
				}
			}
		}
	}
	o.Live = o.Serving(s)
	return o, nil
}

// Serving is the color that serves: Caddy's when it runs, else the only color
// that runs, else "".
func (o *Observed) Serving(s *stack.Stack) string {
	switch {
	case o.CaddyColor != "" && o.Runs(s, o.CaddyColor):
		return o.CaddyColor
	case o.Runs(s, stack.Blue) && !o.Runs(s, stack.Green):
		return stack.Blue
	case o.Runs(s, stack.Green) && !o.Runs(s, stack.Blue):
		return stack.Green
	}
	return ""
}

// Color returns the containers of one Color.
func (o *Observed) Color(s *stack.Stack, color string) []Container {
	var out []Container
	for _, c := range o.Containers {
		if c.Project == s.ColorProject(color) {
			out = append(out, c)
		}
	}
	return out
}

// Runs tells whether every stateless service of the color has a running container.
func (o *Observed) Runs(s *stack.Stack, color string) bool {
	cs := o.Color(s, color)
	for _, svc := range s.Stateless {
		if !slices.ContainsFunc(cs, func(c Container) bool { return c.Service == svc && c.Running() }) {
			return false
		}
	}
	return true
}

// Release returns the Release every stateless container of the color runs, or ""
// when a service has no container or they differ.
func (o *Observed) Release(s *stack.Stack, color string) string {
	cs := o.Color(s, color)
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

// Disagreements lists where the record and the host differ.
func (o *Observed) Disagreements(s *stack.Stack, st *State, stErr error) []string {
	var out []string
	if stErr != nil {
		out = append(out, stErr.Error())
	}
	switch {
	case st == nil && o.Live != "":
		if stErr == nil {
			out = append(out, fmt.Sprintf("%s is missing, but %s serves release %s", s.Paths().State(), s.ColorProject(o.Live), o.Release(s, o.Live)))
		}
	case st == nil:
	case o.Live == "":
		out = append(out, fmt.Sprintf("the record says %s is live, but no color serves: %s is not running", st.Active, s.ColorProject(st.Active)))
	case st.Active != o.Live:
		out = append(out, fmt.Sprintf("the record says %s (release %s) is live, but traffic goes to %s (release %s)", st.Active, st.Release, o.Live, o.Release(s, o.Live)))
	case o.Release(s, o.Live) != st.Release:
		out = append(out, fmt.Sprintf("the record says release %s is live, but %s runs release %s", st.Release, s.ColorProject(o.Live), cmp.Or(o.Release(s, o.Live), "unknown")))
	}
	if o.Gated && o.Live != "" {
		switch {
		case !slices.Contains(o.Admitted, o.Live):
			out = append(out, fmt.Sprintf("the gate admits no color that runs, so Caddy sends %s no traffic (%s is empty)", o.Live, s.Paths().Gate()))
		case len(o.Admitted) == 2:
			out = append(out, "the gate admits both colors (a switch was interrupted)")
		}
	}
	if st != nil && st.Previous != nil && st.Active == o.Live {
		if got := o.Release(s, st.Previous.Color); got != st.Previous.Release {
			out = append(out, fmt.Sprintf("the rollback target %s (release %s) is gone: %s holds %s", st.Previous.Color, st.Previous.Release,
				s.ColorProject(st.Previous.Color), cmp.Or(got, "nothing")))
		}
	}
	return out
}

// Rebuild makes the record that matches what runs. old is the record it
// replaces, nil when missing or corrupt. A nil result means nothing serves.
func (o *Observed) Rebuild(s *stack.Stack, old *State, who string) *State {
	if o.Live == "" {
		return nil
	}
	st := &State{Project: s.Project, Active: o.Live, Release: o.Release(s, o.Live), Images: map[string]string{},
		DeployedBy: who + " (record rebuilt from the host)", DeployedAt: time.Now().UTC()}
	for _, c := range o.Color(s, o.Live) {
		st.Images[c.Service] = c.Image
	}
	if old != nil && old.Active == o.Live && old.Release == st.Release {
		st.DeployedBy, st.DeployedAt, st.GitRevision = old.DeployedBy, old.DeployedAt, old.GitRevision
	}
	// The other color is a rollback target only when the record knew its release:
	// a color left half-started by an interrupted push was never verified.
	other := Slot{Color: stack.Other(o.Live), Release: o.Release(s, stack.Other(o.Live))}
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
