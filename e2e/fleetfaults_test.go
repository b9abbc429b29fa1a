package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// sandboxFault does to one sandbox host what scripts/sandbox.sh fault does:
// stops or starts its Docker, fills or frees its disk, cuts or mends its link.
func sandboxFault(t testing.TB, host string, what ...string) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command("bash", append([]string{filepath.Join(repoRoot(t), "scripts/sandbox.sh"), "fault", host}, what...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sandbox.sh fault %s %s: %v\n%s", host, strings.Join(what, " "), err, out)
	}
	t.Logf("%s: %s (%.1fs)", host, strings.Join(what, " "), time.Since(start).Seconds())
}

// onLine is an io.Writer for taledeploy's output that calls do, once, in its
// own goroutine, when a line matches: a fault that strikes at a given step.
type onLine struct {
	re   *regexp.Regexp
	do   func()
	mu   sync.Mutex
	buf  bytes.Buffer
	hit  bool
	done sync.WaitGroup
}

func (o *onLine) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	if !o.hit && o.re.Match(o.buf.Bytes()) {
		o.hit = true
		o.done.Add(1)
		go func() { defer o.done.Done(); o.do() }()
	}
	return len(p), nil
}

// fired says whether the fault struck, once it is over.
func (o *onLine) fired() bool {
	o.mu.Lock()
	hit := o.hit
	o.mu.Unlock()
	o.done.Wait()
	return hit
}

// statusAll is `status --json` per host even when some host cannot answer
// (status then exits non-zero and says why in that host's error).
func (f *fleet) statusAll() map[string]hostStatus {
	f.t.Helper()
	r := f.taledeploy("status", "e2e", "--json")
	var doc struct{ Hosts []hostStatus }
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		f.t.Fatalf("status --json: %v: %s", err, r.out)
	}
	out := map[string]hostStatus{}
	for _, h := range doc.Hosts {
		out[h.Host] = h
	}
	return out
}

// summary is who runs what: "h1=r2 h2=r2 h3=error" per host.
func (f *fleet) summary() string {
	st := f.statusAll()
	var parts []string
	for _, h := range f.hosts {
		s := st[h.name]
		switch {
		case s.Error != "":
			parts = append(parts, h.name+"=error")
		default:
			parts = append(parts, h.name+"="+s.Release)
		}
	}
	return strings.Join(parts, " ")
}

// TestFleetFaults pushes to three hosts, each a machine with its own Docker,
// disk and link, while one of them fails in the ways real hosts do: its
// Docker stops in the middle of the fleet, its disk is full, or it vanishes
// (its link cut) after an earlier host has switched. The hosts that serve
// answer every request, and status says exactly who runs what; once the host
// is back, a push to it completes.
func TestFleetFaults(t *testing.T) {
	f := newFleet(t, "tale-ffault", 18130)
	if r := f.taledeploy("push", "e2e", "--release", "a1"); r.failed() {
		t.Fatalf("first push failed: %v", r.err)
	}
	// check runs a load on the hosts named while fn runs, and fails the test
	// on any failed request among them.
	check := func(phase string, hosts []int, fn func()) {
		t.Helper()
		var loads []*load
		for _, i := range hosts {
			l := startLoad(t, f.hosts[i].port, 30, 10)
			l.phase(phase)
			loads = append(loads, l)
		}
		fn()
		time.Sleep(time.Second)
		for n, l := range loads {
			l.stopOnce()
			sent, failed := l.totals()
			t.Logf("%s: load on %s: %d sent, %d failed", phase, f.hosts[hosts[n]].name, sent, failed)
			if failed > 0 || sent == 0 {
				t.Errorf("%s: %s failed %d of %d requests:\n%s", phase, f.hosts[hosts[n]].name, failed, sent, l.report())
				logDB(t, f.hosts[hosts[n]].sandbox, f.hosts[hosts[n]].project)
			}
		}
	}
	stepDone := func(host, step string) *regexp.Regexp {
		return regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+%s\s+ok\s`, host, step))
	}

	t.Run("docker stops mid-fleet", func(t *testing.T) {
		f.buildServices("-X main.build=2")
		stop := &onLine{re: stepDone("h1", "switch"), do: func() { sandboxFault(t, "host3", "docker-stop") }}
		var r result
		check("docker stops on h3", []int{0, 1}, func() {
			f.watch = stop
			r = f.taledeploy("push", "e2e", "--release", "a2")
			f.watch = nil
		})
		if !stop.fired() {
			t.Fatalf("h1 never switched:\n%s", r.out)
		}
		if exitCode(r.err) != 4 || !strings.Contains(r.out, "h1, h2 already run the new release") {
			t.Errorf("push with h3's Docker stopped: exit %d, want 4 saying h1 and h2 run the new release:\n%s", exitCode(r.err), r.out)
		}
		if !regexp.MustCompile(`(?i)h3.*docker`).MatchString(r.out) {
			t.Errorf("the push does not say h3's Docker failed:\n%s", r.out)
		}
		if got := f.summary(); got != "h1=a2 h2=a2 h3=a1" && got != "h1=a2 h2=a2 h3=error" {
			t.Errorf("with h3's Docker stopped: %s, want h1=a2 h2=a2 and h3 on a1 or saying why not", got)
		}
		sandboxFault(t, "host3", "docker-start")
		waitServing(t, f.hosts[2].port)
		check("h3's Docker back", []int{0, 1, 2}, func() {
			if got := f.summary(); got != "h1=a2 h2=a2 h3=a1" {
				t.Errorf("after h3's Docker started again: %s", got)
			}
			if r := f.taledeploy("push", "e2e", "--hosts", "h3", "--release", "a2"); r.failed() {
				t.Errorf("push to h3 once its Docker is back: %v", r.err)
			}
		})
		if got := f.summary(); got != "h1=a2 h2=a2 h3=a2" {
			t.Errorf("after pushing h3 again: %s", got)
		}
	})

	t.Run("disk full", func(t *testing.T) {
		f.buildServices("-X main.build=3")
		// The disk keeps 16 MB: the live stack goes on writing (its
		// database counts visits), but no new release fits.
		sandboxFault(t, "host2", "disk-fill", "16777216")
		defer sandboxFault(t, "host2", "disk-free")
		var r result
		check("h2's disk full", []int{0, 1, 2}, func() {
			r = f.taledeploy("push", "e2e", "--release", "a3")
		})
		if !r.failed() || !regexp.MustCompile(`h2.*disk: .* free on`).MatchString(r.out) {
			t.Errorf("push with h2's disk full: %v, want a refusal naming h2's disk:\n%s", r.err, r.out)
		}
		if strings.Contains(r.out, "already run the new release") {
			t.Errorf("a host switched although h2 could not take the release:\n%s", r.out)
		}
		if got := f.summary(); got != "h1=a2 h2=a2 h3=a2" {
			t.Errorf("after a push refused for h2's disk: %s, want every host on a2", got)
		}
	})

	t.Run("host vanishes after an earlier host switched", func(t *testing.T) {
		f.buildServices("-X main.build=4")
		cut := &onLine{re: stepDone("h1", "switch"), do: func() { sandboxFault(t, "host3", "cut") }}
		defer sandboxFault(t, "host3", "mend")
		var r result
		check("h3 cut", []int{0, 1}, func() {
			f.watch = cut
			r = f.taledeploy("push", "e2e", "--release", "a4")
			f.watch = nil
		})
		if !cut.fired() {
			t.Fatalf("h1 never switched:\n%s", r.out)
		}
		if exitCode(r.err) != 4 || !strings.Contains(r.out, "h1, h2 already run the new release") {
			t.Errorf("push with h3 cut off: exit %d, want 4 saying h1 and h2 run the new release:\n%s", exitCode(r.err), r.out)
		}
		if got := f.summary(); got != "h1=a4 h2=a4 h3=error" {
			t.Errorf("with h3 cut off: %s, want h1=a4 h2=a4 and h3 unreachable", got)
		}
		sandboxFault(t, "host3", "mend")
		waitServing(t, f.hosts[2].port)
		check("h3 back", []int{0, 1, 2}, func() {
			if got := f.summary(); got != "h1=a4 h2=a4 h3=a2" {
				t.Errorf("once h3 is back: %s, want h3 still on a2", got)
			}
			if r := f.taledeploy("push", "e2e", "--hosts", "h3", "--release", "a4"); r.failed() {
				t.Errorf("push to h3 once it is back: %v", r.err)
			}
		})
		if got := f.summary(); got != "h1=a4 h2=a4 h3=a4" {
			t.Errorf("after pushing h3 again: %s", got)
		}
	})
}

// waitServing waits until the proxy on port answers (a host whose Docker or
// link came back), for at most a minute.
func waitServing(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := siteGet(t, port, "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d does not answer: %v", port, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
