package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// fleet is a stack deployed to the three sandbox hosts (each its own machine,
// with its own engine), each with its own project, remote folder and proxy
// port, and a staging environment that shares the first host with prod.
type fleet struct {
	*stack
	hosts []fleetHost
}

type fleetHost struct {
	name, project, remote string
	port                  int
	sandbox               sandboxHost
}

func newFleet(t testing.TB, name string, basePort int) *fleet {
	s := newStack(t, name, basePort)
	f := &fleet{stack: s}
	sandbox := sandboxHosts(t)
	host := func(i int, override string) string {
		return fmt.Sprintf(`      - name: h%[1]d
        address: %[4]s
        port: 2222
        user: root
        identity_file: %[2]s/.sandbox/id_ed25519
        known_hosts: %[2]s/.sandbox/host%[1]d/known_hosts
%[3]s`, i, s.repo, override, sandbox[fmt.Sprintf("host%d", i)].addr)
	}
	stack := func(project string, port int) string {
		return stackYAML(project, "/var/lib/taledeploy-"+project, "1s", port)
	}
	inv := "environments:\n  e2e:\n    hosts:\n"
	for i := range 3 {
		h := fleetHost{name: fmt.Sprintf("h%d", i+1), project: fmt.Sprintf("%s-h%d", name, i+1), port: basePort + i,
			sandbox: sandbox[fmt.Sprintf("host%d", i+1)]}
		h.remote = "/var/lib/taledeploy-" + h.project
		f.hosts = append(f.hosts, h)
		registerSite(h.port, h.project, h.sandbox)
		inv += host(i+1, fmt.Sprintf("        project: %s\n        remote_dir: %s\n        env: {HTTP_PORT: \"%d\", HTTPS_PORT: \"%d\"}\n", h.project, h.remote, h.port, h.port+httpsOffset))
	}
	inv += stack(name+"-prod", 0)
	registerSite(basePort+3, name+"-stg", sandbox["host1"])
	inv += "  staging:\n    hosts:\n" + host(1, "") + stack(name+"-stg", basePort+3)
	if err := os.WriteFile(filepath.Join(s.work, "inventory.yaml"), []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// statuses returns `status --json` per host name.
func (f *fleet) statuses(env string) map[string]hostStatus {
	f.t.Helper()
	r := f.taledeploy("status", env, "--json")
	if r.failed() {
		f.t.Fatalf("status failed: %v\n%s", r.err, r.out)
	}
	var doc struct{ Hosts []hostStatus }
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil {
		f.t.Fatalf("status --json: %v: %s", err, r.out)
	}
	out := map[string]hostStatus{}
	for _, h := range doc.Hosts {
		out[h.Host] = h
	}
	return out
}

// releases says which release each host's record has live, "h1=r1 h2=r1 ...".
func (f *fleet) releases() string {
	st := f.statuses("e2e")
	var parts []string
	for _, h := range f.hosts {
		parts = append(parts, h.name+"="+st[h.name].Release)
		if len(st[h.name].Problems) > 0 {
			f.t.Errorf("%s has problems: %q", h.name, st[h.name].Problems)
		}
	}
	return strings.Join(parts, " ")
}

var prepared = regexp.MustCompile(`all 3 host\(s\) connected, locked, checked and prepared in ([0-9.]+)s`)

// TestFleet pushes to three hosts under load on every host: a good push, a push
// that fails on the second host with and without --rollback-on-failure, a push
// limited by --hosts, plan (which changes nothing), --json events, and a
// staging environment on the same host as prod that never touches it.
func TestFleet(t *testing.T) {
	f := newFleet(t, "tale-fleet", 18100)
	if r := f.taledeploy("push", "e2e", "--release", "f1"); r.failed() {
		t.Fatalf("first push failed: %v", r.err)
	}
	if got := f.releases(); got != "h1=f1 h2=f1 h3=f1" {
		t.Fatalf("after the first push: %s", got)
	}
	var loads []*load
	for _, h := range f.hosts {
		loads = append(loads, startLoad(t, h.port, 40, 10))
	}
	defer func() {
		for _, l := range loads {
			l.stopOnce()
		}
	}()
	phase := func(name string) {
		for _, l := range loads {
			l.phase(name)
		}
	}

	// A good push: every host, in order, after all were prepared.
	phase("good push")
	f.buildServices("-X main.build=2")
	r := f.taledeploy("push", "e2e", "--release", "f2")
	if r.failed() {
		t.Fatalf("push to three hosts failed: %v", r.err)
	}
	if m := prepared.FindStringSubmatch(r.out); m == nil {
		t.Errorf("push does not say when all hosts were prepared:\n%s", r.out)
	} else {
		t.Logf("three hosts: prepared in %ss, whole push %.1fs", m[1], r.took.Seconds())
	}
	if got := f.releases(); got != "h1=f2 h2=f2 h3=f2" {
		t.Errorf("after a good push: %s", got)
	}
	// Built once, here; each host sent its images while it was prepared,
	// before the first host changed.
	builds := regexp.MustCompile(`(?m)^local\s+build\s+ok`).FindAllString(r.out, -1)
	sent := regexp.MustCompile(`(?m)^h\d\s+images\s+ok`).FindAllString(r.out, -1)
	if len(builds) != 1 || len(sent) != 3 || strings.Index(r.out, "all 3 host(s) connected") < strings.LastIndex(r.out, sent[len(sent)-1]) {
		t.Errorf("a fleet push built %d time(s) and sent images to %d host(s) (want once, then every host before any changed):\n%s", len(builds), len(sent), r.out)
	}
	for _, h := range f.hosts {
		expectServingAt(t, h.port, "f2")
	}

	// The second host fails: h1 runs the new release, h3 is not touched.
	phase("fail on h2")
	restore := f.editInventory(`env: {HTTP_PORT: "18101", HTTPS_PORT: "19101"}`, `env: {HTTP_PORT: "18101", HTTPS_PORT: "19101", BROKEN: "true"}`)
	r = f.taledeploy("push", "e2e", "--release", "f3")
	if exitCode(r.err) != 4 || !strings.Contains(r.out, "h1 already run the new release") || !strings.Contains(r.out, "rollback e2e --hosts h1") {
		t.Errorf("a push that fails on h2: exit %d, want 4 with what to do:\n%s", exitCode(r.err), r.out)
	}
	if got := f.releases(); got != "h1=f3 h2=f2 h3=f2" {
		t.Errorf("after a push that failed on h2: %s", got)
	}
	if r := f.taledeploy("rollback", "e2e", "--hosts", "h1"); r.failed() {
		t.Errorf("rollback of h1: %v", r.err)
	}
	if got := f.releases(); got != "h1=f2 h2=f2 h3=f2" {
		t.Errorf("after rolling h1 back: %s", got)
	}

	// The same with --rollback-on-failure: h1 goes back by itself.
	phase("fail on h2, roll back")
	r = f.taledeploy("push", "e2e", "--release", "f4", "--rollback-on-failure")
	restore()
	if exitCode(r.err) != 1 || !strings.Contains(r.out, "were rolled back") {
		t.Errorf("a push that fails on h2 with --rollback-on-failure: exit %d, want 1:\n%s", exitCode(r.err), r.out)
	}
	if got := f.releases(); got != "h1=f2 h2=f2 h3=f2" {
		t.Errorf("after --rollback-on-failure: %s", got)
	}

	// --hosts limits a push; a name not in the inventory is bad input.
	phase("only h2 and h3")
	if r := f.taledeploy("push", "e2e", "--hosts", "h2,h3", "--release", "f5"); r.failed() {
		t.Errorf("push --hosts h2,h3: %v", r.err)
	}
	if got := f.releases(); got != "h1=f2 h2=f5 h3=f5" {
		t.Errorf("after push --hosts h2,h3: %s", got)
	}
	if r := f.taledeploy("push", "e2e", "--hosts", "h9"); exitCode(r.err) != 2 || !strings.Contains(r.out, "h1, h2, h3") {
		t.Errorf("push --hosts h9: exit %d, want 2 naming the hosts:\n%s", exitCode(r.err), r.out)
	}

	// plan changes nothing on any host, and masks env values in its diff.
	phase("plan")
	f.buildServices("-X main.build=6")
	restore = f.editInventory("APP_SECRET: e2e-planted-secret-value", "APP_SECRET: e2e-planted-secret-changed")
	before := f.snapshot()
	r = f.taledeploy("plan", "e2e")
	restore()
	if r.failed() || !strings.Contains(r.out, "APP_SECRET=••• (value changed)") ||
		!strings.Contains(r.out, "switch: Caddy sends traffic to") {
		t.Errorf("plan: %v:\n%s", r.err, r.out)
	}
	if strings.Contains(r.out, "e2e-planted-secret") {
		t.Errorf("plan printed an env value")
	}
	if after := f.snapshot(); after != before {
		t.Errorf("plan changed the hosts:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// --json: one event per line, a summary last.
	phase("json")
	r = f.taledeploy("--json", "push", "e2e", "--release", "f7")
	if r.failed() {
		t.Errorf("push --json: %v", r.err)
	}
	checkJSONEvents(t, r.stdout)

	// Everyday commands across the fleet.
	phase("everyday")
	r = f.taledeploy("logs", "e2e", "platform", "--tail", "3")
	for _, h := range f.hosts {
		if !regexp.MustCompile(`(?m)^` + h.name + ` +\| .*platform build`).MatchString(r.out) {
			t.Errorf("logs has no platform line from %s:\n%s", h.name, r.out)
		}
	}
	follow := f.start(nil, "logs", "e2e", "platform", "-f", "--since", "10m", "--hosts", "h2")
	// Until h2's lines come (a host far away takes a while), then stop it
	// as a user does.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !strings.Contains(follow.output(), "h2 | "); {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	follow.cmd.Process.Signal(os.Interrupt)
	follow.wait()
	if out := follow.output(); !strings.Contains(out, "h2 | ") || strings.Contains(out, "h1 | ") {
		t.Errorf("logs -f --hosts h2:\n%s", out)
	}
	r = f.taledeploy("history", "e2e", "--hosts", "h1,h2")
	for _, want := range []string{"f1", "f7", "failed", "rollback", "ok"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("history of h1 and h2 does not show %q:\n%s", want, r.out)
		}
	}
	if r := f.taledeploy("doctor", "e2e"); r.failed() || strings.Count(r.out, "BAD") > 0 || strings.Count(r.out, "ok  docker") != 3 {
		t.Errorf("doctor on a healthy fleet: %v:\n%s", r.err, r.out)
	}

	// On a terminal a live line per host shows the running step and its time;
	// util-linux's script(1) gives the command one.
	out, err := exec.Command("script", "-q", "-e", "-c", strings.Join([]string{f.bin, "--inventory", filepath.Join(f.work, "inventory.yaml"),
		"rollback", "e2e", "--hosts", "h3"}, " "), "/dev/null").CombinedOutput()
	f.addOutput("rollback on a terminal:\n" + string(out))
	if err != nil || !regexp.MustCompile(`h3  (start|verify) +[0-9]+\.[0-9]s …`).Match(out) || !strings.Contains(string(out), "\r\033[K") {
		t.Errorf("rollback on a terminal shows no live progress line (%v):\n%q", err, out)
	}

	// staging shares h1's machine: pushing it leaves prod alone.
	phase("staging")
	prodBefore := f.snapshot()
	for _, rel := range []string{"s1", "s2"} {
		if r := f.taledeploy("push", "staging", "--release", rel); r.failed() {
			t.Fatalf("push staging: %v", r.err)
		}
	}
	expectServingAt(t, 18103, "s2")
	if after := f.snapshot(); after != prodBefore {
		t.Errorf("pushing staging changed prod:\nbefore:\n%s\nafter:\n%s", prodBefore, after)
	}

	phase("after")
	time.Sleep(2 * time.Second)
	for i, l := range loads {
		l.stopOnce()
		sent, failed := l.totals()
		t.Logf("%s: %d requests sent, %d failed\n%s", f.hosts[i].name, sent, failed, l.report())
		if failed > 0 || sent < 500 {
			t.Errorf("%s: %d of %d requests failed", f.hosts[i].name, failed, sent)
			logDB(t, f.hosts[i].sandbox, f.hosts[i].project)
		}
	}
}

// expectServingAt checks that the proxy on port serves release.
func expectServingAt(t *testing.T, port int, release string) {
	t.Helper()
	for range 5 {
		if got := get(t, port); !strings.Contains(got, "/"+release+"/") {
			t.Errorf("port %d serves %s, want release %s", port, got, release)
			return
		}
	}
}

// snapshot lists every file of the prod hosts' remote folders (path, mode,
// content hash) and every container of their projects (id, state): what plan
// and a staging push must leave as they were.
func (f *fleet) snapshot() string {
	f.t.Helper()
	var lines []string
	for _, h := range f.hosts {
		root := h.sandbox.path(h.remote)
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, _ := d.Info()
			line := fmt.Sprintf("%s:%s %v", h.name, strings.TrimPrefix(p, root), info.Mode())
			if d.Type().IsRegular() {
				data, _ := os.ReadFile(p)
				sum := sha256.Sum256(data)
				line += " " + hex.EncodeToString(sum[:8])
			}
			lines = append(lines, line)
			return nil
		})
		out, err := h.sandbox.docker("ps", "-a", "--no-trunc", "--format", `{{.ID}} {{.State}} {{.Label "com.docker.compose.project"}}`).Output()
		if err != nil {
			f.t.Fatal(err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasSuffix(line, " "+h.project) || strings.Contains(line, " "+h.project+"-") {
				lines = append(lines, h.name+":"+line)
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// checkJSONEvents checks --json output: every line an object, step events with
// host, step, status and duration, and a summary last.
func checkJSONEvents(t *testing.T, out string) {
	t.Helper()
	var last map[string]any
	steps := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Errorf("--json printed a line that is not JSON: %q", sc.Text())
			continue
		}
		if ev["type"] == "step" {
			steps++
			for _, k := range []string{"host", "step", "status", "duration_s"} {
				if _, ok := ev[k]; !ok {
					t.Errorf("event without %s: %s", k, sc.Text())
				}
			}
		}
		last = ev
	}
	if steps < 30 {
		t.Errorf("only %d step events for three hosts", steps)
	}
	if last == nil || last["type"] != "summary" || last["ok"] != true || len(last["hosts"].([]any)) != 3 {
		t.Errorf("the last line is not a successful summary of three hosts: %v", last)
	}
}
