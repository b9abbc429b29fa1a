package plan

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
)

// rollback is `taledeploy rollback`: lock, check, rollback, unlock.
func rollback(t *testing.T, d *Deployer) error {
	t.Helper()
	cur, err := lockCheck(t, d, "taledeploy rollback demo")
	if err != nil {
		return err
	}
	err = d.Rollback(context.Background(), cur)
	if uerr := d.Unlock(context.Background()); uerr != nil {
		t.Errorf("unlock: %v", uerr)
	}
	return err
}

// A rollback starts the previous color's stopped containers, verifies and
// watches them, switches, and stops the color it replaces; the record swaps.
func TestRollback(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1", "r2")
	s.VerifyWindow = stack.Duration{Duration: 250 * time.Millisecond}
	blue, green := ids(h, "tale-blue"), ids(h, "tale-green")
	ev := &events{}
	if err := rollback(t, deployer(h, s, "", ev)); err != nil {
		t.Fatal(err)
	}
	want := []string{"lock ok", "check ok", "start ok", "verify ok", "switch ok", "window ok", "drain ok", "stop ok", "record ok"}
	if got := ev.steps("one"); !slices.Equal(got, want) {
		t.Errorf("steps %q, want %q", got, want)
	}
	for step, msg := range map[string]string{
		"start":  "tale-blue (release r1)",
		"switch": "traffic to blue",
		"drain":  "no request in flight on green",
		"stop":   "tale-green stopped and kept for rollback",
		"record": "blue live with release r1",
	} {
		if got := ev.get(t, step).Message; !strings.Contains(got, msg) {
			t.Errorf("%s: %q, want %q", step, got, msg)
		}
	}
	if got, want := changing(h), []string{"docker start " + blue, "docker stop " + green}; !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	st := record(t, h, s)
	if st.Active != stack.Blue || st.Release != "r1" || slot(st) != (host.Slot{Color: stack.Green, Release: "r2"}) || st.GitRevision != "" {
		t.Errorf("record %+v", st)
	}
	if e := lastHistory(t, h, s); e.Action != "rollback" || e.Result != "ok" || e.Color != stack.Blue || e.Release != "r1" || e.From != stack.Green {
		t.Errorf("history %+v", e)
	}
	serves(t, h, s, stack.Blue)
	if got := states(h, s, stack.Green); !slices.Equal(got, []string{"platform exited r2", "rag exited r2"}) {
		t.Errorf("green: %q", got)
	}

	// A second rollback goes back to green.
	if err := rollback(t, deployer(h, s, "", &events{})); err != nil {
		t.Fatal(err)
	}
	if st := record(t, h, s); st.Active != stack.Green || st.Release != "r2" || slot(st) != (host.Slot{Color: stack.Blue, Release: "r1"}) {
		t.Errorf("record after rolling back twice: %+v", st)
	}
	serves(t, h, s, stack.Green)
}

// A rollback whose previous color fails its health checks stops it again:
// traffic stays where it was.
func TestRollbackUndoesTheStart(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1", "r2")
	before := recordBytes(h, s)
	blue := ids(h, "tale-blue")
	ev := &events{on: func(e Event) {
		if e.Step == "start" && e.Status == "ok" {
			h.Docker.Change("tale-blue", "platform", func(c *hosttest.Container) { c.Health = "unhealthy" })
		}
	}}
	err := rollback(t, deployer(h, s, "", ev))
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("rollback: %v, want ErrUnhealthy", err)
	}
	if got, want := ev.steps("one"), []string{"lock ok", "check ok", "start ok", "verify failed", "stop-previous ok"}; !slices.Equal(got, want) {
		t.Errorf("steps %q, want %q", got, want)
	}
	if got, want := changing(h), []string{"docker start " + blue, "docker stop " + blue}; !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	sameRecord(t, h, s, before)
	serves(t, h, s, stack.Green)
	if e := lastHistory(t, h, s); e.Action != "rollback" || e.Result != "failed" {
		t.Errorf("history %+v", e)
	}
}

// A rollback is refused when there is nothing to roll back to, and nothing
// runs.
func TestRollbackRefused(t *testing.T) {
	t.Run("no previous color", func(t *testing.T) {
		s := deployStack(t)
		h := liveHost(t, "one", s, "r1")
		err := rollback(t, deployer(h, s, "", &events{}))
		if !errors.Is(err, ErrNoRollback) || !strings.Contains(err.Error(), "no previous color is recorded") {
			t.Fatalf("rollback: %v", err)
		}
		if got := changing(h); len(got) > 0 {
			t.Errorf("a refused rollback ran %q", got)
		}
		serves(t, h, s, stack.Blue)
	})
	t.Run("containers and images gone", func(t *testing.T) {
		s := deployStack(t)
		h := liveHost(t, "one", s, "r1", "r2")
		d := deployer(h, s, "", &events{})
		cur, err := lockCheck(t, d, "taledeploy rollback demo")
		if err != nil {
			t.Fatal(err)
		}
		// Someone removed blue's rag by hand after the check, and every image.
		h.Docker.Remove("tale-blue", "rag")
		h.Docker.ImagesGone = true
		cur.Containers = slices.DeleteFunc(cur.Containers, func(c host.Container) bool { return c.Project == "tale-blue" && c.Service == "rag" })
		err = d.Rollback(context.Background(), cur)
		if !errors.Is(err, ErrNoRollback) || !strings.Contains(err.Error(), "the containers of tale-blue are gone (have [platform]), and the images of release r1 are no longer on the host (platform, rag") {
			t.Fatalf("rollback: %v", err)
		}
		if got := changing(h); len(got) > 0 {
			t.Errorf("a refused rollback ran %q", got)
		}
		serves(t, h, s, stack.Green)
	})
	t.Run("a failed push replaced the kept color", func(t *testing.T) {
		s := deployStack(t)
		h := liveHost(t, "one", s, "r1", "r2")
		h.Docker.Created = func(c *hosttest.Container) {
			if c.Color == stack.Blue {
				c.Health = "unhealthy"
			}
		}
		if err := push(t, deployer(h, s, "r3", &events{})); !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("push r3: %v", err)
		}
		h.Docker.Created = nil
		h.ResetCmds()
		ev := &events{}
		if err := rollback(t, deployer(h, s, "", ev)); err != nil {
			t.Fatalf("rollback from the recorded images: %v", err)
		}
		if got := ev.get(t, "start").Message; !strings.Contains(got, "tale-blue (release r1) from its recorded images") {
			t.Errorf("start: %q", got)
		}
		if got, want := changing(h), "docker compose -p tale-blue up -d --no-deps --remove-orphans platform rag"; !slices.Contains(got, want) {
			t.Errorf("commands %q lack %q", got, want)
		}
		serves(t, h, s, stack.Blue)
		if st := record(t, h, s); st.Active != stack.Blue || st.Release != "r1" {
			t.Errorf("record %+v", st)
		}
	})
	t.Run("contract migrations ran", func(t *testing.T) {
		s := readyStack(t, migrationStack(t, map[string]string{
			"0001_table.sql":         "SET lock_timeout = '5s';\nCREATE TABLE t (id int, note text);\n",
			"0002_drop.contract.sql": "SET lock_timeout = '5s';\nALTER TABLE t DROP COLUMN note;\n",
		}))
		h := liveHost(t, "one", s, "r1", "r2")
		ev := &events{}
		f := &Fleet{Hosts: []*Deployer{deployer(h, s, "", ev)}}
		ctx := context.Background()
		if err := f.Begin(ctx, "taledeploy migrate contract demo", false); err != nil {
			t.Fatal(err)
		}
		err := f.Contract(ctx)
		f.End(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ev.steps("one"), []string{"lock ok", "check ok", "remove-old ok", "contract ok"}; !slices.Equal(got, want) {
			t.Errorf("steps %q, want %q", got, want)
		}
		if got := changing(h); !slices.Contains(got, "docker compose -p tale-blue down --remove-orphans") ||
			!slices.ContainsFunc(got, func(c string) bool {
				return strings.HasPrefix(c, "docker compose -p tale-green run") && strings.HasSuffix(c, "0002_drop.contract.sql")
			}) {
			t.Errorf("commands %q", got)
		}
		if st := record(t, h, s); st.Previous != nil {
			t.Errorf("the record still offers %+v for rollback", st.Previous)
		}
		err = rollback(t, deployer(h, s, "", &events{}))
		var ce *ContractedError
		if !errors.As(err, &ce) || !errors.Is(err, ErrNoRollback) || ce.Contract.Release != "r2" || !slices.Equal(ce.Contract.Files, []string{"0002_drop.contract.sql"}) {
			t.Fatalf("rollback: %v, want a *ContractedError", err)
		}
		if !strings.Contains(err.Error(), "contract migrations (0002_drop.contract.sql) ran with release r2") {
			t.Errorf("error %q", err)
		}
		serves(t, h, s, stack.Green)
	})
}

// A rollback moves traffic, not config: Caddy keeps the config the last push
// loaded, whatever the Caddyfile here says now.
func TestRollbackKeepsCaddysConfig(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1", "r2")
	s.VerifyWindow = stack.Duration{}
	running := string(h.Caddy.Running())
	h.Caddy.Reject = "the Caddyfile here was edited and no longer adapts"
	before := len(h.Caddy.Calls())
	if err := rollback(t, deployer(h, s, "", &events{})); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	for _, c := range h.Caddy.Calls()[before:] {
		if c == "POST /adapt" || c == "POST /load" {
			t.Errorf("the rollback called %s", c)
		}
	}
	if string(h.Caddy.Running()) != running {
		t.Errorf("Caddy's config changed")
	}
	serves(t, h, s, stack.Blue)
}
