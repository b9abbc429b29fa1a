package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestInterruptedPush kills taledeploy (SIGKILL) after each step of a push and at
// a random moment, and cuts its SSH connection mid-push, under load. After each
// fault no request failed, status says a push was interrupted, and the next push
// converges.
func TestInterruptedPush(t *testing.T) {
	s := newStack(t, "tale-kill", 18090)
	if r := s.taledeploy("push", "e2e", "--release", "k0"); r.failed() {
		t.Fatalf("first push failed: %v", r.err)
	}
	l := startLoad(t, s.port, 60, 15)
	defer l.stopOnce()
	var table []string
	n := 0
	// converge checks what status says after a fault, then pushes again.
	converge := func(fault string, wantInterrupted bool) {
		t.Helper()
		st := s.status()
		if wantInterrupted && (st.Lock == nil || st.Lock.Stale == "" || !anyContains(st.Problems, "interrupted")) {
			t.Errorf("%s: status does not say a push was interrupted: lock %+v, problems %q", fault, st.Lock, st.Problems)
		}
		get(t, s.port) // still served
		n++
		release := fmt.Sprintf("k%d", n)
		r := s.taledeploy("push", "e2e", "--release", release)
		converged := !r.failed()
		if !converged {
			t.Errorf("%s: the next push did not converge: %v", fault, r.err)
		} else {
			st = s.status()
			if st.Release != release || len(st.Problems) > 0 || st.Lock != nil {
				t.Errorf("%s: after the next push status says %s %s, lock %+v, problems %q", fault, st.Active, st.Release, st.Lock, st.Problems)
			}
			expectServing(t, s.port, fmt.Sprintf("%s/%s/build k%d", st.Active, release, n-1))
		}
		table = append(table, fmt.Sprintf("%-28s converged=%v", fault, converged))
	}

	// images/progress: killed in the middle of sending the images.
	for _, step := range []string{"lock", "check", "upload", "preflight", "images/progress", "stateful", "migrate", "start", "verify", "switch", "window", "drain", "stop", "record"} {
		fault := "kill after " + step
		l.phase(fault)
		n++
		s.buildServices(fmt.Sprintf("-X main.build=k%d", n))
		r := s.taledeployEnv([]string{"TALEDEPLOY_KILL_AFTER=" + step}, "push", "e2e", "--release", fmt.Sprintf("k%d", n))
		if !killed(r.err) {
			t.Fatalf("%s: taledeploy was not killed: %v", fault, r.err)
		}
		converge(fault, true)
	}

	// Ctrl-C once traffic has moved: the push still watches, drains, stops and
	// records, so the record names the color the gate admits.
	fault := "ctrl-c after switch"
	l.phase(fault)
	n++
	s.buildServices(fmt.Sprintf("-X main.build=k%d", n))
	release := fmt.Sprintf("k%d", n)
	bg := s.start(nil, "push", "e2e", "--release", release)
	if !bg.waitForStep("switch", 60*time.Second) {
		t.Fatalf("%s: the push never reached the switch:\n%s", fault, bg.output())
	}
	bg.cmd.Process.Signal(os.Interrupt)
	finished := bg.wait() == nil
	if !finished {
		t.Errorf("%s: the push did not finish:\n%s", fault, bg.output())
	}
	t.Logf("%s:\n%s", fault, bg.output())
	for _, step := range []string{"drain", "stop", "record"} {
		if !contains(result{out: bg.output()}.steps(), step) {
			t.Errorf("%s: step %s did not run", fault, step)
		}
	}
	if st := s.status(); st.Release != release || len(st.Problems) > 0 || st.Lock != nil || st.Previous == nil {
		t.Errorf("%s: status says %s %s, lock %+v, problems %q, previous %+v", fault, st.Active, st.Release, st.Lock, st.Problems, st.Previous)
	} else {
		expectServing(t, s.port, fmt.Sprintf("%s/%s/build k%d", st.Active, release, n))
	}
	table = append(table, fmt.Sprintf("%-28s finished=%v", fault, finished))

	fault = "kill at a random moment"
	l.phase(fault)
	n++
	s.buildServices(fmt.Sprintf("-X main.build=k%d", n))
	bg = s.start(nil, "push", "e2e", "--release", fmt.Sprintf("k%d", n))
	// The build here comes first and touches no host: the moment is counted
	// from the lock. The rest takes 6 s or more: any moment up to 4.5 s is
	// mid-push.
	if !bg.waitForStep("lock", 60*time.Second) {
		t.Fatalf("%s: the push never took the lock:\n%s", fault, bg.output())
	}
	at := time.Duration(300+rand.IntN(4200)) * time.Millisecond
	time.Sleep(at)
	bg.cmd.Process.Kill()
	bg.wait()
	t.Logf("killed at %s after:\n%s", at, bg.output())
	converge(fault, true)

	for _, after := range []string{"preflight", "start", "switch"} {
		fault := "ssh cut after " + after
		l.phase(fault)
		n++
		s.buildServices(fmt.Sprintf("-X main.build=k%d", n))
		bg := s.start(nil, "push", "e2e", "--release", fmt.Sprintf("k%d", n))
		if !bg.waitForStep(after, 60*time.Second) {
			t.Fatalf("%s: the push never reached %s:\n%s", fault, after, bg.output())
		}
		cutSSH(t)
		cut := time.Now()
		err := bg.wait()
		t.Logf("%s: taledeploy exited %s after the cut:\n%s", fault, time.Since(cut).Round(time.Millisecond), bg.output())
		if !strings.Contains(bg.output(), "ssh connection lost") {
			t.Errorf("%s: taledeploy does not say its connection was lost", fault)
		}
		if err == nil || killed(err) {
			t.Errorf("%s: want a failed push, got %v:\n%s", fault, err, bg.output())
		}
		converge(fault, true)
	}

	l.phase("after")
	time.Sleep(2 * time.Second)
	l.stopOnce()
	sent, failed := l.totals()
	t.Logf("load: %d requests sent, %d failed\n%s", sent, failed, l.report())
	t.Logf("faults:\n%s", strings.Join(table, "\n"))
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, sent)
	}
}

// TestRefusedPushes runs, under load, the pushes that must be refused or undone
// without losing a request: two at once, a live lock released, a Caddyfile Caddy
// rejects, a changed stateful service, a host short of memory or disk, a release
// that fails after the switch, a record that disagrees with the host. It also
// checks Caddy's admin API cannot be reached from a container, and that no
// secret (env value, key passphrase) appears anywhere.
func TestRefusedPushes(t *testing.T) {
	s := newStack(t, "tale-refuse", 18091)
	// An encrypted key, its passphrase from the environment.
	const passphrase = "e2e-planted-passphrase"
	key := filepath.Join(s.work, "id_encrypted")
	copyFile(t, filepath.Join(s.repo, ".sandbox/id_ed25519"), key)
	run(t, s.work, nil, "ssh-keygen", "-q", "-p", "-N", passphrase, "-f", key)
	s.editInventory(filepath.Join(s.repo, ".sandbox/id_ed25519"), key)
	os.Setenv("TALEDEPLOY_SSH_PASSPHRASE", passphrase)
	defer os.Unsetenv("TALEDEPLOY_SSH_PASSPHRASE")

	if r := s.taledeploy("push", "e2e", "--release", "a1"); r.failed() {
		t.Fatalf("first push failed: %v", r.err)
	}
	l := startLoad(t, s.port, 60, 15)
	defer l.stopOnce()
	release, build := "a1", "1"
	serving := func() string {
		st := s.status()
		return fmt.Sprintf("%s/%s/build %s", st.Active, release, build)
	}
	unchanged := func(what, want string) {
		t.Helper()
		expectServing(t, s.port, want)
		st := s.status()
		if len(st.Problems) > 0 || st.Lock != nil {
			t.Errorf("%s: status afterwards: problems %q, lock %+v", what, st.Problems, st.Lock)
		}
	}

	t.Run("two pushes at once", func(t *testing.T) {
		l.phase("two pushes")
		a := s.start(nil, "push", "e2e", "--release", "a2")
		b := s.start(nil, "push", "e2e", "--release", "a3")
		ea, eb := a.wait(), b.wait()
		codes := []int{exitCode(ea), exitCode(eb)}
		outs := []string{a.output(), b.output()}
		won := 0
		for i, code := range codes {
			switch code {
			case 0:
				won++
			case 3:
				for _, want := range []string{"holds it", "since", "taledeploy lock release"} {
					if !strings.Contains(outs[i], want) {
						t.Errorf("the refused push does not say %q:\n%s", want, outs[i])
					}
				}
			default:
				t.Errorf("push exited %d:\n%s", code, outs[i])
			}
		}
		if won != 1 {
			t.Fatalf("want one push to win and one to be refused, exit codes %v", codes)
		}
		release = map[bool]string{true: "a2", false: "a3"}[codes[0] == 0]
		unchanged("two pushes", serving())
	})

	t.Run("live lock release refused", func(t *testing.T) {
		l.phase("lock release")
		bg := s.start(nil, "push", "e2e", "--release", "a4")
		if !bg.waitForStep("check", 30*time.Second) {
			t.Fatalf("push never got the lock:\n%s", bg.output())
		}
		ls := s.taledeploy("lock", "status", "e2e")
		if !strings.Contains(ls.out, "may still be running") {
			t.Errorf("lock status during a push:\n%s", ls.out)
		}
		r := s.taledeploy("lock", "release", "e2e")
		if exitCode(r.err) != 3 || !strings.Contains(r.out, "--force") {
			t.Errorf("releasing a live lock without --force: exit %d:\n%s", exitCode(r.err), r.out)
		}
		if err := bg.wait(); err != nil {
			t.Fatalf("the push whose lock was left alone failed: %v\n%s", err, bg.output())
		}
		release = "a4"
		unchanged("lock release", serving())
		if r := s.taledeploy("lock", "status", "e2e"); !strings.Contains(r.out, "not locked") {
			t.Errorf("lock status after the push:\n%s", r.out)
		}
	})

	t.Run("caddyfile rejected", func(t *testing.T) {
		l.phase("caddyfile rejected")
		before := serving()
		config := readFile(t, s.host.path(s.remote)+"/run/caddy/caddy.json")
		for _, tc := range []struct {
			name, old, new string
			want           []string
		}{
			{"Caddy refuses it", "\nlocalhost {", "\nlocalhost:99999 {", []string{"rejects the new Caddyfile", "out of range"}},
			{"it would break the switch", "\thandle {\n\t\treverse_proxy platform:8080\n", "\thandle {\n\t\treverse_proxy platform:8080 {\n\t\t\thealth_uri /api/health\n\t\t}\n",
				[]string{"rejects the new Caddyfile", "has its own active health check", "health_path: /api/health"}},
		} {
			restore := s.editFile("services/proxy/Caddyfile", tc.old, tc.new)
			r := s.taledeploy("push", "e2e", "--release", "bad-caddy")
			restore()
			if !r.failed() {
				t.Errorf("%s: the push went on", tc.name)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.out, w) {
					t.Errorf("%s: the output lacks %q:\n%s", tc.name, w, r.out)
				}
			}
			for _, step := range []string{"images", "build", "start", "switch"} {
				if contains(r.steps(), step) {
					t.Errorf("%s: the refused push ran %s: %v", tc.name, step, r.steps())
				}
			}
			if after := readFile(t, s.host.path(s.remote)+"/run/caddy/caddy.json"); !bytes.Equal(after, config) {
				t.Errorf("%s: the proxy's config on the host changed", tc.name)
			}
		}
		unchanged("caddyfile rejected", before)
	})

	t.Run("stateful service changed", func(t *testing.T) {
		l.phase("stateful changed")
		before := serving()
		dbID := containerID(s.status(), "db")
		for _, c := range []struct{ service, edit, cost string }{
			{"db", "  db:\n", "stops it for a few seconds"},
			{"proxy", "  proxy:\n", "drops every connection"},
		} {
			restore := s.editFile("compose.yml", c.edit, c.edit+"    labels: [e2e.changed=yes]\n")
			r := s.taledeploy("push", "e2e", "--release", "changed-"+c.service)
			restore()
			if !r.failed() || !strings.Contains(r.out, c.service+" changed") || !strings.Contains(r.out, "--recreate-stateful") || !strings.Contains(r.out, c.cost) {
				t.Errorf("push with a changed %s: %v:\n%s", c.service, r.err, r.out)
			}
			if contains(r.steps(), "images") || contains(r.steps(), "build") {
				t.Errorf("the refused push sent or built images: %v", r.steps())
			}
		}
		if id := containerID(s.status(), "db"); id != dbID {
			t.Errorf("db was recreated: %s -> %s", dbID, id)
		}
		unchanged("stateful changed", before)
	})

	t.Run("low memory or disk", func(t *testing.T) {
		l.phase("preflight")
		before := serving()
		for _, c := range []struct{ setting, want string }{
			{"reserve_memory: 100TiB", "memory:"},
			{"reserve_disk: 100TiB", "disk:"},
		} {
			restore := s.editInventory("      verify_window: 2s\n", "      verify_window: 2s\n      "+c.setting+"\n")
			r := s.taledeploy("push", "e2e", "--release", "short")
			if !r.failed() || !strings.Contains(r.out, c.want) || !strings.Contains(r.out, "100TiB") || !strings.Contains(r.out, "--skip-preflight") {
				t.Errorf("push with %s: %v:\n%s", c.setting, r.err, r.out)
			}
			if contains(r.steps(), "images") || contains(r.steps(), "build") {
				t.Errorf("the refused push sent or built images: %v", r.steps())
			}
			unchanged("preflight", before)
			if c.want == "memory:" {
				r := s.taledeploy("push", "e2e", "--release", "a5", "--skip-preflight")
				if r.failed() {
					t.Errorf("push --skip-preflight failed: %v", r.err)
				}
				release = "a5"
				before = serving()
			}
			restore()
		}
	})

	t.Run("release fails after the switch", func(t *testing.T) {
		l.phase("verify window")
		before := serving()
		s.buildServices("-X main.build=w -X main.failAfter=20")
		start := time.Now()
		r := s.taledeploy("push", "e2e", "--release", "w1")
		took := time.Since(start)
		if !r.failed() || !strings.Contains(r.out, "failed after the switch") || !strings.Contains(r.out, "traffic is back on") {
			t.Errorf("push of a release that breaks under traffic: %v:\n%s", r.err, r.out)
		}
		for _, step := range []string{"switch", "window", "switch-back"} {
			if !contains(r.steps(), step) {
				t.Errorf("steps %v lack %s", r.steps(), step)
			}
		}
		s.buildServices("-X main.build=" + build)
		unchanged("verify window", before)
		for _, c := range s.status().Containers {
			if c.Release == "w1" {
				t.Errorf("container %s of the failed release is left (%s)", c.Name, c.State)
			}
		}
		l.mu.Lock()
		bad := l.appFailed["w"]
		l.mu.Unlock()
		// The release takes traffic from the switch on (its settle is a
		// designed wait, longer when the host is far away); detection then
		// takes windowFailures probe rounds 200 ms apart plus the switch back:
		// at this load, under 2 s of traffic beyond the switch.
		rate := 75
		limit := int(float64(rate) * (2 + r.stepSeconds()["switch"]))
		t.Logf("the failing release answered %d requests with 500 before traffic went back (push took %s, limit %d)", bad, took, limit)
		if bad > limit {
			t.Errorf("the failing release served %d failed requests, more than 2 s of traffic beyond the switch (%d)", bad, limit)
		}
	})

	t.Run("record disagrees with the host", func(t *testing.T) {
		state := s.host.path(s.remote) + "/.taledeploy/state.json"
		for _, c := range []struct {
			name    string
			break_  func()
			problem string
		}{
			{"state file missing", func() { os.Remove(state) }, "missing"},
			{"state file corrupt", func() { os.WriteFile(state, []byte("{not json"), 0o600) }, "corrupt"},
			{"rollback color removed by hand", func() {
				prev := s.status().Previous
				if prev == nil {
					t.Fatalf("no rollback color to remove")
				}
				run(t, s.work, s.host.dockerEnv(), "docker", "compose", "-p", s.project+"-"+prev.Color, "down")
			}, "is gone"},
			{"gate admits both colors", func() {
				// What a switch killed between admitting one color and retiring the
				// other leaves; the other color is stopped, so traffic stays put.
				other := "blue"
				if s.status().Active == "blue" {
					other = "green"
				}
				for _, u := range []string{"platform-" + other + ":8080", "rag-" + other + ":8000"} {
					if err := os.WriteFile(s.host.path(s.remote)+"/run/caddy/live/"+u, nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}, "admits both colors"},
		} {
			l.phase("disagree: " + c.name)
			before := serving()
			c.break_()
			st := s.status()
			if !anyContains(st.Problems, c.problem) {
				t.Errorf("%s: status problems %q do not say %q", c.name, st.Problems, c.problem)
			}
			r := s.taledeploy("push", "e2e", "--release", "refused")
			if !r.failed() || !strings.Contains(r.out, "--repair") {
				t.Errorf("%s: push did not refuse with the fix: %v:\n%s", c.name, r.err, r.out)
			}
			expectServing(t, s.port, before)
			n := strings.ReplaceAll(c.name, " ", "-")
			if r := s.taledeploy("push", "e2e", "--repair", "--release", n); r.failed() {
				t.Fatalf("%s: push --repair failed: %v", c.name, r.err)
			}
			release = n
			unchanged(c.name, serving())
		}
	})

	t.Run("admin API unreachable from containers", func(t *testing.T) {
		st := s.status()
		image := fmt.Sprintf("%s/platform:%s", s.project, st.Active)
		// The live color's network, where its services meet the proxy.
		network := s.project + "-" + st.Active
		out, err := s.host.docker("inspect", "--format", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, network), s.project+"-proxy").Output()
		proxy := strings.TrimSpace(string(out))
		if err != nil || proxy == "" {
			t.Fatalf("the proxy's address on %s: %v", network, err)
		}
		probe := filepath.Join(t.TempDir(), "httpprobe")
		run(t, s.repo, []string{"CGO_ENABLED=0"}, "go", "build", "-o", probe, "./e2e/testdata/httpprobe")
		try := func(url string) error {
			out, err := s.host.docker("run", "--rm", "--network", network, "-v", probe+":/httpprobe:ro",
				"--entrypoint", "/httpprobe", image, url).CombinedOutput()
			t.Logf("from a container on %s: GET %s: %s", network, url, strings.TrimSpace(string(out)))
			return err
		}
		// Control: the proxy itself is reachable from the color's network.
		if err := try("http://" + proxy + ":80/api/health"); err != nil {
			t.Fatalf("the proxy's port 80 is not reachable from the network either (%v); the test proves nothing", err)
		}
		for _, url := range []string{"http://" + proxy + ":2019/config/", "http://" + proxy + ":2019/load"} {
			if err := try(url); err == nil {
				t.Errorf("Caddy's admin API answered %s from a container", url)
			}
		}
		// The gate decides which color takes traffic: only Caddy may ask it.
		if err := try("http://" + proxy + ":2020/"); err == nil {
			t.Errorf("the gate answered from a container")
		}
		for _, c := range st.Containers {
			if c.Service == "proxy" {
				continue
			}
			out, _ := s.host.docker("inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}", c.ID).Output()
			if strings.Contains(string(out), "run/caddy") {
				t.Errorf("container %s mounts the admin socket's folder: %s", c.Name, out)
			}
		}
	})

	l.phase("after")
	time.Sleep(2 * time.Second)
	l.stopOnce()
	sent, failed := l.totals()
	t.Logf("load: %d requests sent, %d failed\n%s", sent, failed, l.report())
	if pf := l.proxyFailures(); pf > 0 {
		t.Errorf("%d requests failed at the proxy", pf)
	}
	l.mu.Lock()
	for b, n := range l.appFailed {
		if b != "w" {
			t.Errorf("%d requests failed in build %s, which was never broken", n, b)
			logDB(t, s.host, s.project)
		}
	}
	l.mu.Unlock()

	// Secrets: nowhere in anything taledeploy printed, nor in its files on the host.
	files := []string{s.host.path(s.remote) + "/.taledeploy/history.jsonl", s.host.path(s.remote) + "/.taledeploy/state.json"}
	for _, secret := range []string{"e2e-planted-secret-value", passphrase} {
		for _, out := range s.outputs {
			if strings.Contains(out, secret) {
				t.Errorf("secret %q appeared in taledeploy's output:\n%s", secret, out)
			}
		}
		for _, f := range files {
			if strings.Contains(string(readFile(t, f)), secret) {
				t.Errorf("secret %q appeared in %s", secret, f)
			}
		}
	}
	if info, err := os.Stat(s.host.path(s.remote) + "/.taledeploy/env"); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("the env folder on the host: %v %v; want mode 0700", err, info.Mode().Perm())
	}
}

// bgRun is taledeploy running in the background.
type bgRun struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan error
}

func (b *bgRun) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *bgRun) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *bgRun) wait() error { return <-b.done }

// waitForStep waits until the run reports step as finished.
func (b *bgRun) waitForStep(step string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if contains(result{out: b.output()}.steps(), step) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (s *stack) start(env []string, args ...string) *bgRun {
	s.t.Helper()
	b := &bgRun{done: make(chan error, 1)}
	b.cmd = exec.Command(s.bin, append([]string{"--inventory", filepath.Join(s.work, "inventory.yaml")}, args...)...)
	b.cmd.Dir = s.work
	b.cmd.Env = append(os.Environ(), env...)
	b.cmd.Stdout, b.cmd.Stderr = b, b
	if err := b.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		err := b.cmd.Wait()
		s.addOutput("taledeploy " + strings.Join(args, " ") + " (background):\n" + b.output())
		b.done <- err
	}()
	return b
}

// cutSSH kills the sandbox sshd's per-connection processes: every SSH
// connection to the sandbox drops at once.
func cutSSH(t *testing.T) {
	cache := os.Getenv("TALEDEPLOY_CACHE")
	if cache == "" {
		cache = "/var/cache/taledeploy"
	}
	pid, err := os.ReadFile(cache + "/sandbox/" + singleHost() + "/sshd.pid")
	if err != nil {
		t.Fatalf("sandbox sshd pid: %v", err)
	}
	if err := exec.Command("pkill", "-KILL", "-P", strings.TrimSpace(string(pid))).Run(); err != nil {
		t.Fatalf("kill the sshd child serving the push: %v", err)
	}
}

// editInventory replaces old with new in the stack's inventory and returns a
// function that puts it back.
func (s *stack) editInventory(old, new string) (restore func()) {
	return s.editFile("inventory.yaml", old, new)
}

func (s *stack) editFile(rel, old, new string) (restore func()) {
	s.t.Helper()
	p := filepath.Join(s.work, rel)
	data := readFile(s.t, p)
	if !bytes.Contains(data, []byte(old)) {
		s.t.Fatalf("%s has no %q", rel, old)
	}
	if err := os.WriteFile(p, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return func() { os.WriteFile(p, data, 0o644) }
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func anyContains(list []string, sub string) bool {
	for _, e := range list {
		if strings.Contains(e, sub) {
			return true
		}
	}
	return false
}
