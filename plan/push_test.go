package plan

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// The first push on an empty host starts the network and the stateful
// services, then blue; the gate admits blue and the record names it.
func TestPushOnEmptyHost(t *testing.T) {
	s := deployStack(t)
	h := hosttest.NewHost("one", s)
	ev := &events{}
	if err := push(t, deployer(h, s, "r1", ev)); err != nil {
		t.Fatal(err)
	}
	want := []string{"lock ok", "check ok", "upload ok", "preflight ok", "build ok", "stateful ok", "start ok", "verify ok", "switch ok", "record ok", "prune ok"}
	if got := ev.steps("one"); !slices.Equal(got, want) {
		t.Errorf("steps %q, want %q", got, want)
	}
	for step, msg := range map[string]string{
		"check":    "empty host: first push",
		"stateful": "started proxy, db",
		"verify":   "2 containers healthy, 1 routes answer",
		"switch":   "traffic to blue",
		"record":   "blue live with release r1",
	} {
		if got := ev.get(t, step).Message; !strings.Contains(got, msg) {
			t.Errorf("%s: %q, want %q", step, got, msg)
		}
	}
	if got, want := h.Docker.Built(), []string{"tale/platform:blue", "tale/rag:blue"}; !slices.Equal(got, want) {
		t.Errorf("built %q through the engine API, want %q", got, want)
	}
	wantCmds := []string{
		"docker compose -p tale up -d --no-deps --wait proxy db",
		"docker compose -p tale-blue up -d --no-deps --remove-orphans platform rag",
	}
	if got := changing(h); !slices.Equal(got, wantCmds) {
		t.Errorf("commands %q, want %q", got, wantCmds)
	}
	for _, n := range []string{"tale-blue", "tale-green"} {
		if !slices.Contains(h.Commands(), "docker network create --label taledeploy.project=tale "+n) {
			t.Errorf("network %s was not created: %q", n, h.Commands())
		}
	}
	st := record(t, h, s)
	if st.Active != stack.Blue || st.Release != "r1" || st.Previous != nil || st.DeployedBy != "alice@laptop" || st.GitRevision != "abc123" ||
		st.Stateful["db"] != "hash-db" || st.Images["platform"] == "" {
		t.Errorf("record %+v", st)
	}
	if e := lastHistory(t, h, s); e.Action != "push" || e.Result != "ok" || e.Color != stack.Blue || e.Release != "r1" || e.From != "" {
		t.Errorf("history %+v", e)
	}
	serves(t, h, s, stack.Blue)
	if _, err := h.ReadFile(context.Background(), s.Paths().Lock()+"/owner.json"); err == nil {
		t.Errorf("the lock is still held")
	}
}

// A push beside a live color starts the other one, switches to it, stops the
// old one and keeps it for rollback.
func TestPushReplacesTheLiveColor(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	blue := ids(h, "tale-blue")
	ev := &events{}
	if err := push(t, deployer(h, s, "r2", ev)); err != nil {
		t.Fatal(err)
	}
	want := []string{"lock ok", "check ok", "upload ok", "preflight ok", "build ok", "stateful ok", "start ok", "verify ok", "switch ok", "drain ok", "stop ok", "record ok", "prune ok"}
	if got := ev.steps("one"); !slices.Equal(got, want) {
		t.Errorf("steps %q, want %q", got, want)
	}
	for step, msg := range map[string]string{
		"check":     "live: blue, release r1",
		"upload":    "0 of 7 files changed",
		"preflight": "Caddyfile valid",
		"stateful":  "unchanged: proxy, db",
		"switch":    "traffic to green",
		"drain":     "no request in flight on blue",
		"stop":      "tale-blue stopped and kept for rollback",
		"record":    "green live with release r2",
	} {
		if got := ev.get(t, step).Message; !strings.Contains(got, msg) {
			t.Errorf("%s: %q, want %q", step, got, msg)
		}
	}
	wantCmds := []string{
		"docker compose -p tale-green up -d --no-deps --remove-orphans platform rag",
		"docker stop " + blue,
	}
	if got := changing(h); !slices.Equal(got, wantCmds) {
		t.Errorf("commands %q, want %q", got, wantCmds)
	}
	st := record(t, h, s)
	if st.Active != stack.Green || st.Release != "r2" || slot(st) != (host.Slot{Color: stack.Blue, Release: "r1"}) {
		t.Errorf("record %+v", st)
	}
	if e := lastHistory(t, h, s); e.Result != "ok" || e.Color != stack.Green || e.Release != "r2" || e.From != stack.Blue {
		t.Errorf("history %+v", e)
	}
	if got, want := states(h, s, stack.Blue), []string{"platform exited r1", "rag exited r1"}; !slices.Equal(got, want) {
		t.Errorf("blue: %q, want %q", got, want)
	}
	serves(t, h, s, stack.Green)

	// The next push replaces blue, which the record kept for rollback: the
	// record stops offering it before blue is touched.
	var prevAtUp *host.Slot
	h.Fail = func(argv []string) error {
		if slices.Contains(argv, "up") && slices.Contains(argv, "tale-blue") {
			prevAtUp = record(t, h, s).Previous
		}
		return nil
	}
	if err := push(t, deployer(h, s, "r3", &events{})); err != nil {
		t.Fatal(err)
	}
	if prevAtUp != nil {
		t.Errorf("blue was replaced while the record still offered it for rollback: %+v", prevAtUp)
	}
	if st := record(t, h, s); st.Active != stack.Blue || st.Release != "r3" || slot(st) != (host.Slot{Color: stack.Green, Release: "r2"}) {
		t.Errorf("record after the third push: %+v", st)
	}
	serves(t, h, s, stack.Blue)
}

// failCase is a push of r2 beside blue r1 that fails at one step.
type failCase struct {
	name    string
	fail    func(t *testing.T, h *hosttest.Host, s *stack.Stack, ev *events)
	steps   []string // after preflight
	wantErr string
	// ok: the push succeeds all the same (drain and stop may fail).
	ok bool
}

func TestFailedPushUndoes(t *testing.T) {
	failCommand := func(match func(argv []string) bool, stderr string) func(*testing.T, *hosttest.Host, *stack.Stack, *events) {
		return func(_ *testing.T, h *hosttest.Host, _ *stack.Stack, _ *events) {
			h.Fail = func(argv []string) error {
				if match(argv) {
					return errors.New(stderr)
				}
				return nil
			}
		}
	}
	has := func(words ...string) func([]string) bool {
		return func(argv []string) bool {
			for _, w := range words {
				if !slices.Contains(argv, w) {
					return false
				}
			}
			return true
		}
	}
	for _, tc := range []failCase{
		{name: "build", fail: func(_ *testing.T, h *hosttest.Host, _ *stack.Stack, _ *events) {
			h.Docker.BuildFail = func(string) error { return errors.New("failed to solve: no space left on device") }
		},
			steps: []string{"build failed"}, wantErr: "no space left on device"},
		{name: "stateful", fail: func(t *testing.T, h *hosttest.Host, s *stack.Stack, ev *events) {
			h.Docker.Remove("tale", "db") // removed by hand: the push starts it, and it never gets healthy
			h.Docker.Created = func(c *hosttest.Container) {
				if c.Service == "db" {
					c.Health = "unhealthy"
				}
			}
		}, steps: []string{"build ok", "stateful failed"}, wantErr: "container tale-db-1 is running unhealthy"},
		{name: "migrate", fail: func(t *testing.T, h *hosttest.Host, s *stack.Stack, ev *events) {
			os.WriteFile(filepath.Join(s.Root, "migrations", "0002_note.sql"), []byte("SET lock_timeout = '5s';\nALTER TABLE t ADD COLUMN note text;\n"), 0o644)
			failCommand(has("run", "0002_note.sql"), "ERROR: column \"note\" already exists")(t, h, s, ev)
		}, steps: []string{"build ok", "stateful ok", "migrate failed"}, wantErr: `migration failed: 0002_note.sql of platform (nothing after it was applied; traffic is untouched): ERROR: column "note" already exists`},
		{name: "start", fail: failCommand(has("up", "tale-green"), "Bind for 0.0.0.0:8080 failed: port is already allocated"),
			steps: []string{"build ok", "stateful ok", "migrate ok", "start failed", "remove-new ok"}, wantErr: "port is already allocated"},
		{name: "verify", fail: func(_ *testing.T, h *hosttest.Host, _ *stack.Stack, _ *events) {
			h.Docker.Created = func(c *hosttest.Container) {
				if c.Color == stack.Green && c.Service == "rag" {
					c.Health = "unhealthy"
				}
			}
		}, steps: []string{"build ok", "stateful ok", "migrate ok", "start ok", "verify failed", "remove-new ok"}, wantErr: "new color failed its health checks: tale-green-rag-1 is unhealthy"},
		{name: "switch", fail: func(_ *testing.T, h *hosttest.Host, s *stack.Stack, _ *events) {
			h.Refuse = func(op, p string) error {
				if op == "write" && p == s.Paths().Gate()+"/platform-green:8080" {
					return fs.ErrPermission
				}
				return nil
			}
		}, steps: []string{"build ok", "stateful ok", "migrate ok", "start ok", "verify ok", "switch failed", "switch-back ok", "remove-new ok"}, wantErr: "admit platform-green:8080"},
		{name: "window", fail: func(_ *testing.T, h *hosttest.Host, s *stack.Stack, ev *events) {
			s.VerifyWindow = stack.Duration{Duration: 5 * time.Second}
			ev.on = func(e Event) {
				if e.Step == "switch" && e.Status == "ok" {
					h.Docker.Change("tale-green", "platform", func(c *hosttest.Container) { c.Answer = 500 })
				}
			}
		}, steps: []string{"build ok", "stateful ok", "migrate ok", "start ok", "verify ok", "switch ok", "window failed", "switch-back ok", "remove-new ok"},
			wantErr: "new release failed after the switch: /api/health through caddy answers 500; traffic is back on blue (release r1)"},
		{name: "drain", fail: func(_ *testing.T, h *hosttest.Host, _ *stack.Stack, _ *events) {
			h.Caddy.Fail = func(_, p string) bool { return p == "/reverse_proxy/upstreams" }
		}, steps: []string{"build ok", "stateful ok", "migrate ok", "start ok", "verify ok", "switch ok", "drain failed", "stop ok", "record ok", "prune ok"}, ok: true},
		{name: "stop", fail: failCommand(has("docker", "stop"), "Error response from daemon: cannot stop container: permission denied"),
			steps: []string{"build ok", "stateful ok", "migrate ok", "start ok", "verify ok", "switch ok", "drain ok", "stop failed", "record ok", "prune ok"}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := readyStack(t, migrationStack(t, map[string]string{"0001_table.sql": "SET lock_timeout = '5s';\nCREATE TABLE t (id int);\n"}))
			h := liveHost(t, "one", s, "r1")
			before := recordBytes(h, s)
			ev := &events{}
			tc.fail(t, h, s, ev)
			err := push(t, deployer(h, s, "r2", ev))
			want := append([]string{"lock ok", "check ok", "upload ok", "preflight ok"}, tc.steps...)
			if got := ev.steps("one"); !slices.Equal(got, want) {
				t.Errorf("steps %q, want %q", got, want)
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("a failed %s failed the push: %v", tc.name, err)
				}
				if st := record(t, h, s); st.Active != stack.Green || st.Release != "r2" || slot(st) != (host.Slot{Color: stack.Blue, Release: "r1"}) {
					t.Errorf("record %+v", st)
				}
				serves(t, h, s, stack.Green)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("push: %v, want %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrAfterSwitch) {
				t.Errorf("the push says traffic moved: %v", err)
			}
			why, _, _ := strings.Cut(tc.wantErr, "; traffic is back")
			if failed := ev.get(t, tc.name); failed.Status != "failed" || !strings.Contains(failed.Message, why) {
				t.Errorf("%s event: %+v", tc.name, failed)
			}
			sameRecord(t, h, s, before)
			serves(t, h, s, stack.Blue)
			if got, want := states(h, s, stack.Blue), []string{"platform running r1", "rag running r1"}; !slices.Equal(got, want) {
				t.Errorf("blue: %q, want %q", got, want)
			}
			if got := states(h, s, stack.Green); len(got) > 0 {
				t.Errorf("green is left: %q", got)
			}
			undone := slices.Contains(tc.steps, "remove-new ok")
			if got := slices.Contains(changing(h), "docker compose -p tale-green down --remove-orphans"); got != undone {
				t.Errorf("compose down of green ran: %v, want %v (commands %q)", got, undone, changing(h))
			}
			if e := lastHistory(t, h, s); e.Result != "failed" || e.Release != "r2" || e.Error != err.Error() {
				t.Errorf("history %+v", e)
			}
		})
	}
}

// Once traffic moved, a record that cannot be written fails the push with a
// *RecordError: the new color serves and nothing is undone.
func TestPushRecordFailure(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	before := recordBytes(h, s)
	h.Refuse = func(op, p string) error {
		if op == "write" && p == s.Paths().State() {
			return errors.New("no space left on device")
		}
		return nil
	}
	ev := &events{}
	err := push(t, deployer(h, s, "r2", ev))
	var re *RecordError
	if !errors.As(err, &re) || !errors.Is(err, ErrAfterSwitch) || re.Color != stack.Green || re.Release != "r2" {
		t.Fatalf("push: %v, want a *RecordError wrapping ErrAfterSwitch", err)
	}
	if !strings.Contains(err.Error(), "green serves release r2, but the record was not written") || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("error %q", err)
	}
	if got := ev.steps("one"); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "switch-back") || strings.HasPrefix(s, "remove-new") }) {
		t.Errorf("a push whose traffic moved was undone: %q", got)
	}
	sameRecord(t, h, s, before)
	serves(t, h, s, stack.Green)
	if e := lastHistory(t, h, s); e.Result != "failed" || e.Release != "r2" {
		t.Errorf("history %+v", e)
	}
}

// With a verify window, a release that fails through Caddy after the switch
// gets no more traffic: the old color takes it back and the new one goes.
func TestWindowSwitchesBack(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	s.VerifyWindow = stack.Duration{Duration: 5 * time.Second}
	before := recordBytes(h, s)
	ev := &events{}
	var servedDuringWindow string
	ev.on = func(e Event) {
		if e.Step == "switch" && e.Status == "ok" {
			_, servedDuringWindow = h.Caddy.Get("/api/health")
			h.Docker.Change("tale-green", "platform", func(c *hosttest.Container) { c.Answer = 503 })
		}
	}
	start := time.Now()
	err := push(t, deployer(h, s, "r2", ev))
	if !errors.Is(err, ErrWindow) || errors.Is(err, ErrAfterSwitch) || !strings.HasSuffix(err.Error(), "; traffic is back on blue (release r1)") {
		t.Fatalf("push: %v, want ErrWindow with traffic back on blue", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the window took %s to give up on a failing release", took)
	}
	if servedDuringWindow != "tale-green-platform-1" {
		t.Errorf("after the switch Caddy sent a request to %q", servedDuringWindow)
	}
	w := ev.get(t, "window")
	if w.Status != "failed" || !strings.Contains(w.Message, "/api/health through caddy answers 503") || !strings.Contains(w.Log, "last log lines of tale-green") {
		t.Errorf("window event %+v", w)
	}
	if got := ev.get(t, "switch-back").Message; got != "traffic back to blue; no request in flight on green" {
		t.Errorf("switch-back: %q", got)
	}
	tail := last(ev.steps("one"), 4)
	if want := []string{"switch ok", "window failed", "switch-back ok", "remove-new ok"}; !slices.Equal(tail, want) {
		t.Errorf("steps end %q, want %q", tail, want)
	}
	sameRecord(t, h, s, before)
	serves(t, h, s, stack.Blue)
	if got := states(h, s, stack.Green); len(got) > 0 {
		t.Errorf("green is left: %q", got)
	}
	if e := lastHistory(t, h, s); e.Result != "failed" || !strings.Contains(e.Error, "traffic is back on blue") {
		t.Errorf("history %+v", e)
	}
}

// Containers that stop during the window fail it, even when Caddy does not
// route to them; a window with nothing wrong lets the push go on.
func TestWindowWatchesContainers(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	s.VerifyWindow = stack.Duration{Duration: 300 * time.Millisecond}
	ev := &events{}
	if err := push(t, deployer(h, s, "r2", ev)); err != nil {
		t.Fatal(err)
	}
	if w := ev.get(t, "window"); w.Status != "ok" || !strings.Contains(w.Message, "through caddy in 300ms, all answered") {
		t.Errorf("window event %+v", w)
	}
	serves(t, h, s, stack.Green)

	s.VerifyWindow = stack.Duration{Duration: 5 * time.Second}
	ev = &events{on: func(e Event) {
		if e.Step == "switch" && e.Status == "ok" {
			h.Docker.Change("tale-blue", "rag", func(c *hosttest.Container) { c.State = "exited" })
		}
	}}
	err := push(t, deployer(h, s, "r3", ev))
	if !errors.Is(err, ErrWindow) || !strings.Contains(err.Error(), "tale-blue-rag-1 exited") || !strings.Contains(err.Error(), "traffic is back on green (release r2)") {
		t.Fatalf("push: %v, want the window to fail on the exited container", err)
	}
	serves(t, h, s, stack.Green)
}

// drain waits while Caddy counts requests in flight on the old color, and
// stops it once none is left.
func TestDrainWaitsForRequestsInFlight(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	var polls, pollsAtStop atomic.Int32
	h.Caddy.InFlight = func(u string) int {
		switch u {
		case "platform-blue:8080":
			return max(3-int(polls.Add(1)-1), 0)
		case "platform-green:8080":
			return 7 // the new color's requests do not count
		}
		return 0
	}
	h.Fail = func(argv []string) error {
		if slices.Contains(argv, "stop") {
			pollsAtStop.Store(polls.Load())
		}
		return nil
	}
	ev := &events{}
	if err := push(t, deployer(h, s, "r2", ev)); err != nil {
		t.Fatal(err)
	}
	if d := ev.get(t, "drain"); d.Status != "ok" || d.Message != "no request in flight on blue" {
		t.Errorf("drain event %+v", d)
	}
	if polls.Load() != 4 || pollsAtStop.Load() != 4 {
		t.Errorf("Caddy was asked %d times, blue stopped after %d: want 4 (3, 2, 1, 0 in flight) before the stop", polls.Load(), pollsAtStop.Load())
	}
	if got := states(h, s, stack.Blue); !slices.Equal(got, []string{"platform exited r1", "rag exited r1"}) {
		t.Errorf("blue: %q", got)
	}
}

// drain gives up at drain_timeout and says so; the old color is stopped
// gracefully all the same.
func TestDrainGivesUpAtTheTimeout(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	s.DrainTimeout = stack.Duration{Duration: 150 * time.Millisecond}
	h.Caddy.InFlight = func(u string) int {
		if u == "platform-blue:8080" {
			return 2 // a long-lived stream
		}
		return 0
	}
	ev := &events{}
	if err := push(t, deployer(h, s, "r2", ev)); err != nil {
		t.Fatal(err)
	}
	d := ev.get(t, "drain")
	if d.Status != "ok" || d.Message != "drain timeout 150ms reached with 2 requests in flight on blue; stopping it gracefully anyway" {
		t.Errorf("drain event %+v", d)
	}
	if d.Duration < 150*time.Millisecond || d.Duration > 2*time.Second {
		t.Errorf("drain took %s, want about the drain timeout", d.Duration)
	}
	if ev.get(t, "stop").Status != "ok" || record(t, h, s).Active != stack.Green {
		t.Errorf("the push did not go on after the drain timeout: %q", ev.steps("one"))
	}
}

// Preflight refuses a push that would recreate a changed stateful service or
// load a Caddyfile Caddy rejects, before anything is built.
func TestPreflightRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *hosttest.Host)
		want  error
		msg   string
	}{
		{"stateful changed", func(h *hosttest.Host) { h.Docker.Hashes = map[string]string{"db": "hash-db-2"} }, ErrStateful, "db changed"},
		{"caddyfile rejected", func(h *hosttest.Host) {
			h.Caddy.Reject = "adapting config using caddyfile: unknown directive: revers_proxy"
		}, ErrCaddyfile, "unknown directive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := deployStack(t)
			h := liveHost(t, "one", s, "r1")
			// A compose file that changed since r1: the stateful services are compared again.
			os.WriteFile(filepath.Join(s.Root, "compose.yml"), []byte(strings.Replace(mustRead(t, filepath.Join(s.Root, "compose.yml")), "volumes:", "# edited\nvolumes:", 1)), 0o644)
			before := recordBytes(h, s)
			tc.setup(h)
			ev := &events{}
			err := push(t, deployer(h, s, "r2", ev))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("push: %v, want %v with %q", err, tc.want, tc.msg)
			}
			if got := last(ev.steps("one"), 1); !slices.Equal(got, []string{"preflight failed"}) {
				t.Errorf("steps %q", got)
			}
			if got := changing(h); len(got) > 0 {
				t.Errorf("a refused push ran %q", got)
			}
			sameRecord(t, h, s, before)
			serves(t, h, s, stack.Blue)
		})
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Preview says what a push would do, reading the host only.
func TestPreviewOfAPush(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	s.Env["SECRET"] = "rotated"
	s.VerifyWindow = stack.Duration{Duration: time.Minute}
	files := len(h.Files)
	p, err := (&Deployer{Host: h, Stack: s}).Preview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Live != stack.Blue || p.Release != "r1" || p.NewColor != stack.Green || len(p.Refused) > 0 {
		t.Errorf("preview %+v", p)
	}
	want := []string{
		"upload: 1 file(s) change",
		"preflight: check stateful services, validate the Caddyfile with the running Caddy, free memory and disk",
		"build: platform, rag (tale-green)",
		"start: tale-green beside blue",
		"verify: wait up to 2s for health checks and 1 route(s)",
		"switch: Caddy sends traffic to green: the gate admits it, then retires blue (no Caddy reload)",
		"window: watch green through Caddy for 1m0s, switch back on failure",
		"drain: wait up to 200ms for requests in flight on blue",
		"stop: tale-blue, kept for rollback",
		"record: state.json and history.jsonl",
		"prune: nothing: the host holds no images of releases before the last 3",
	}
	if !slices.Equal(p.Steps, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(p.Steps, "\n"), strings.Join(want, "\n"))
	}
	if len(p.Files) != 1 || p.Files[0].Path != s.Paths().Env() || p.Files[0].Diff != "~ SECRET=••• (value changed)\n" {
		t.Errorf("files %+v", p.Files)
	}
	if got := changing(h); len(got) > 0 || len(h.Files) != files {
		t.Errorf("preview changed the host: ran %q", got)
	}
}

// A switch-back that fails leaves traffic where it may be, on the failing
// color: nothing more is undone, and the error says traffic had moved.
func TestFailedSwitchBackUndoesNothingMore(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	s.VerifyWindow = stack.Duration{Duration: 5 * time.Second}
	ev := &events{on: func(e Event) {
		if e.Step == "switch" && e.Status == "ok" {
			h.Docker.Change("tale-green", "platform", func(c *hosttest.Container) { c.Answer = 500 })
			h.Refuse = func(op, p string) error {
				if op == "write" && p == s.Paths().Gate()+"/platform-blue:8080" {
					return fs.ErrPermission
				}
				return nil
			}
		}
	}}
	err := push(t, deployer(h, s, "r2", ev))
	if !errors.Is(err, ErrAfterSwitch) || !errors.Is(err, ErrWindow) || !strings.Contains(err.Error(), "admit platform-blue:8080") {
		t.Fatalf("push: %v, want ErrAfterSwitch with the window's and the switch-back's errors", err)
	}
	tail := last(ev.steps("one"), 3)
	if want := []string{"switch ok", "window failed", "switch-back failed"}; !slices.Equal(tail, want) {
		t.Errorf("steps end %q, want %q", tail, want)
	}
	if got := states(h, s, stack.Green); !slices.Equal(got, []string{"platform running r2", "rag running r2"}) {
		t.Errorf("green: %q: it may be what serves, it must stay", got)
	}
	if got := h.Caddy.Admitted(); !slices.Equal(got, []string{stack.Green}) {
		t.Errorf("the gate admits %v", got)
	}
}

// A Caddy that starts with a config that is not the gated one of the team's
// Caddyfile (edited on the host, say) is loaded with the gated one at the
// switch, with the live color admitted first so traffic stays put until then.
func TestPushLoadsTheGatedConfig(t *testing.T) {
	s := deployStack(t)
	h := liveHost(t, "one", s, "r1")
	ctx := context.Background()
	old := []byte(`{"apps":{"http":{"servers":{"srv0":{"listen":[":80"],"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"platform-blue:8080"},{"dial":"platform-green:8080"}]}]}]}}}}}`)
	h.WriteFile(ctx, s.Paths().CaddyConfig(), old, 0o644)
	var proxy string
	for _, proxyOnly := range h.Docker.Containers("tale") {
		if proxyOnly.Service == "proxy" {
			proxy = proxyOnly.ID
		}
	}
	for _, verb := range []string{"stop", "start"} { // the proxy restarts with the old file
		if _, err := h.Run(ctx, remote.Cmd{Argv: []string{"docker", verb, proxy}}); err != nil {
			t.Fatal(err)
		}
	}
	if string(h.Caddy.Running()) != string(old) {
		t.Fatalf("Caddy runs %q", h.Caddy.Running())
	}
	ev := &events{}
	if err := push(t, deployer(h, s, "r2", ev)); err != nil {
		t.Fatal(err)
	}
	if got := h.Caddy.Running(); !strings.Contains(string(got), `"upstream": "127.0.0.1:2020"`) || !strings.Contains(string(got), "platform-green:8080") {
		t.Errorf("Caddy runs %s", got)
	}
	calls := h.Caddy.Calls()
	if i, j := slices.Index(calls, "POST /adapt"), slices.Index(calls, "POST /load"); i < 0 || j < i {
		t.Errorf("admin calls %q: the Caddyfile must be validated before it is loaded", calls)
	}
	serves(t, h, s, stack.Green)
}

// A first push that fails at the switch has nothing to switch back to: the
// new color is removed and the host holds no record.
func TestFirstPushFailingAtTheSwitch(t *testing.T) {
	s := deployStack(t)
	h := hosttest.NewHost("one", s)
	h.Refuse = func(op, p string) error {
		if op == "write" && strings.HasPrefix(p, s.Paths().Gate()+"/") {
			return fs.ErrPermission
		}
		return nil
	}
	ev := &events{}
	err := push(t, deployer(h, s, "r1", ev))
	if err == nil || !strings.Contains(err.Error(), "admit platform-blue:8080") || errors.Is(err, ErrAfterSwitch) {
		t.Fatalf("push: %v", err)
	}
	if got, want := last(ev.steps("one"), 3), []string{"verify ok", "switch failed", "remove-new ok"}; !slices.Equal(got, want) {
		t.Errorf("steps end %q, want %q", got, want)
	}
	if _, err := h.ReadFile(context.Background(), s.Paths().State()); err == nil {
		t.Errorf("a failed first push wrote a record")
	}
	if got := states(h, s, stack.Blue); len(got) > 0 || len(h.Caddy.Admitted()) > 0 {
		t.Errorf("blue: %q, admitted %v", got, h.Caddy.Admitted())
	}
	if e := lastHistory(t, h, s); e.Result != "failed" || e.From != "" {
		t.Errorf("history %+v", e)
	}
}
