package host

import (
	"errors"
	"strings"
	"taledeploy/internal/stack"
	"testing"
	"time"
)

func TestRecordAgainstHost(t *testing.T) {
	s := &stack.Stack{Project: "p", RemoteDir: "/srv/p", Stateless: []string{"web", "api"}, Stateful: []string{"proxy"}, Proxy: "proxy"}
	// color makes the containers of one color, all with one state and release.
	color := func(c, state, release string) []Container {
		var cs []Container
		for _, svc := range s.Stateless {
			cs = append(cs, Container{Project: "p-" + c, Service: svc, Color: c, State: state, Release: release, Image: "img-" + svc})
		}
		return cs
	}
	join := func(parts ...[]Container) []Container {
		var out []Container
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	rec := func(active, release string, prev *Slot) *State {
		return &State{Project: "p", Active: active, Release: release, Previous: prev, DeployedBy: "me"}
	}
	cases := []struct {
		name     string
		cs       []Container
		caddy    string
		st       *State
		stErr    error
		live     string
		problems []string // substrings, one per problem
		rebuilt  *State   // Active, Release and Previous of the rebuilt record
	}{
		{name: "empty host", live: ""},
		{name: "agrees", cs: join(color("blue", "running", "r1"), color("green", "exited", "r0")), caddy: "blue",
			st: rec("blue", "r1", &Slot{"green", "r0"}), live: "blue",
			rebuilt: rec("blue", "r1", &Slot{"green", "r0"})},
		{name: "killed after the switch", cs: join(color("blue", "running", "r1"), color("green", "running", "r2")), caddy: "green",
			st: rec("blue", "r1", nil), live: "green",
			problems: []string{"record says blue (release r1) is live, but traffic goes to green (release r2)"},
			rebuilt:  rec("green", "r2", &Slot{"blue", "r1"})},
		{name: "killed after start: a half-started color is no rollback target", cs: join(color("blue", "running", "r1"), color("green", "running", "r2")),
			caddy: "blue", st: rec("blue", "r1", nil), live: "blue",
			rebuilt: rec("blue", "r1", nil)},
		{name: "state file missing", cs: join(color("green", "running", "r2"), color("blue", "exited", "r1")), caddy: "green", live: "green",
			problems: []string{"state.json is missing, but p-green serves release r2"},
			rebuilt:  rec("green", "r2", &Slot{"blue", "r1"})},
		{name: "state file corrupt", cs: color("green", "running", "r2"), caddy: "green", stErr: errors.New("state.json is corrupt"), live: "green",
			problems: []string{"corrupt"}, rebuilt: rec("green", "r2", nil)},
		{name: "live color taken down by hand", cs: color("green", "exited", "r1"), caddy: "blue", st: rec("blue", "r2", &Slot{"green", "r1"}),
			problems: []string{"no color serves"}},
		{name: "rollback color removed by hand", cs: color("blue", "running", "r2"), caddy: "blue", st: rec("blue", "r2", &Slot{"green", "r1"}), live: "blue",
			problems: []string{"rollback target green (release r1) is gone: p-green holds nothing"},
			rebuilt:  rec("blue", "r2", nil)},
		{name: "live color runs another release", cs: color("blue", "running", "r3"), caddy: "blue", st: rec("blue", "r2", nil), live: "blue",
			problems: []string{"record says release r2 is live, but p-blue runs release r3"},
			rebuilt:  rec("blue", "r3", nil)},
		{name: "proxy down: the only running color serves", cs: join(color("blue", "running", "r1"), color("green", "exited", "r0")),
			st: rec("blue", "r1", &Slot{"green", "r0"}), live: "blue", rebuilt: rec("blue", "r1", &Slot{"green", "r0"})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &Observed{Containers: c.cs, CaddyColor: c.caddy}
			o.Live = o.Serving(s)
			if o.Live != c.live {
				t.Fatalf("live = %q, want %q", o.Live, c.live)
			}
			got := o.Disagreements(s, c.st, c.stErr)
			if len(got) != len(c.problems) {
				t.Fatalf("problems %q, want %d like %q", got, len(c.problems), c.problems)
			}
			for i, want := range c.problems {
				if !strings.Contains(got[i], want) {
					t.Errorf("problem %q does not say %q", got[i], want)
				}
			}
			old := c.st
			if c.stErr != nil {
				old = nil
			}
			nst := o.Rebuild(s, old, "me")
			switch {
			case c.rebuilt == nil && nst != nil:
				t.Errorf("rebuilt %+v, want no record (nothing serves)", nst)
			case c.rebuilt != nil && nst == nil:
				t.Errorf("rebuilt no record, want %+v", c.rebuilt)
			case c.rebuilt != nil:
				if nst.Active != c.rebuilt.Active || nst.Release != c.rebuilt.Release || !sameSlot(nst.Previous, c.rebuilt.Previous) {
					t.Errorf("rebuilt %s %s prev %+v, want %s %s prev %+v", nst.Active, nst.Release, nst.Previous,
						c.rebuilt.Active, c.rebuilt.Release, c.rebuilt.Previous)
				}
				if nst.Images["web"] != "img-web" {
					t.Errorf("rebuilt images %v", nst.Images)
				}
			}
		})
	}
}

func sameSlot(a, b *Slot) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestLockStale(t *testing.T) {
	now := time.Now()
	fresh := &Lock{Machine: "elsewhere", PID: 1, Heartbeat: now.Add(-time.Second)}
	if why := fresh.Stale(now); why != "" {
		t.Errorf("a lock refreshed a second ago on another machine is stale: %s", why)
	}
	old := &Lock{Machine: "elsewhere", PID: 1, Heartbeat: now.Add(-time.Minute)}
	if why := old.Stale(now); !strings.Contains(why, "not been seen for 1m0s") {
		t.Errorf("a lock silent for a minute: %q", why)
	}
}
