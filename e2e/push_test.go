package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// get asks the proxy directly and returns "color/release/build".
func get(t *testing.T, port int) string {
	t.Helper()
	resp, err := siteGet(t, port, "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / answered %s: %s", resp.Status, body)
	}
	c := resp.Header.Get("X-Color")
	for _, callee := range []string{"Rag", "Crawler"} {
		if other := resp.Header.Get("X-" + callee + "-Color"); other != c {
			t.Errorf("platform %s called %s %s: a call crossed colors", c, strings.ToLower(callee), other)
		}
	}
	return resp.Header.Get("X-Color") + "/" + resp.Header.Get("X-Release") + "/build " + resp.Header.Get("X-Build")
}

// siteCertificate is the serial of the certificate the site on port serves.
func siteCertificate(t *testing.T, port int) string {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("%s:%d", siteAddr(port), port+httpsOffset), siteTLS(t, port))
	if err != nil {
		t.Fatalf("TLS to the site: %v", err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	return fmt.Sprintf("%s %x", leaf.Subject.CommonName+leaf.DNSNames[0], leaf.SerialNumber)
}

// expectServing checks that fresh requests all reach want.
func expectServing(t *testing.T, port int, want string) {
	t.Helper()
	for range 10 {
		if got := get(t, port); got != want {
			t.Fatalf("served %s, want %s", got, want)
		}
	}
}

// expectStatus checks what `status --json` says against what should be live.
func expectStatus(t *testing.T, s *stack, color, release string) hostStatus {
	t.Helper()
	st := s.status()
	if st.Active != color || st.Release != release {
		t.Errorf("status says %s %s live, want %s %s", st.Active, st.Release, color, release)
	}
	if len(st.Problems) > 0 {
		t.Errorf("status reports problems: %v", st.Problems)
	}
	for _, c := range st.Containers {
		if c.Color == color && (c.State != "running" || c.Health != "healthy" || c.Release != release) {
			t.Errorf("live container %s: %s %s release %s", c.Name, c.State, c.Health, c.Release)
		}
		if c.Color == otherColor(color) && c.State == "running" {
			t.Errorf("old color container %s still runs", c.Name)
		}
	}
	return st
}

func otherColor(c string) string {
	if c == "blue" {
		return "green"
	}
	return "blue"
}

func containerID(st hostStatus, service string) string {
	for _, c := range st.Containers {
		if c.Service == service && c.Color == "" {
			return c.ID
		}
	}
	return ""
}

// TestPushRollbackUnderLoad is the product's promise, issue 2's scenario: a stack
// switched blue -> green -> blue, rolled back, and a broken release refused, while
// vegeta counts zero failed requests.
func TestPushRollbackUnderLoad(t *testing.T) {
	s := newStack(t, "tale-e2e", 18088)
	push := s.taledeploy

	// 1. First push to an empty host: stateful project, network, blue.
	r := push("push", "e2e", "--release", "r1")
	if r.failed() {
		t.Fatalf("first push failed: %v", r.err)
	}
	expectServing(t, s.port, "blue/r1/build 1")
	st := expectStatus(t, s, "blue", "r1")
	// An engine with API 1.44+ checks a starting color's health every second
	// (the example's start_period is 15s, its interval 2s); an older one
	// would refuse the field, so it is not set there.
	api, _ := s.host.docker("version", "--format", "{{.Server.APIVersion}}").Output()
	var platform string
	for _, c := range st.Containers {
		if c.Service == "platform" && c.Color == "blue" {
			platform = c.ID
		}
	}
	// The engine's own JSON: this machine's docker CLI (20.10) has no field
	// for it.
	raw, _ := s.host.docker("inspect", platform).Output()
	var inspected []struct {
		Config struct {
			Healthcheck struct{ StartInterval time.Duration }
		}
	}
	json.Unmarshal(raw, &inspected)
	want := map[bool]time.Duration{true: time.Second}[apiAtLeast144(string(api))]
	if len(inspected) != 1 || inspected[0].Config.Healthcheck.StartInterval != want {
		t.Errorf("engine API %s: the platform's health start_interval is not %s: %.300s", strings.TrimSpace(string(api)), want, raw)
	}
	dbID, proxyID := containerID(st, "db"), containerID(st, "proxy")
	if dbID == "" || proxyID == "" {
		t.Fatalf("no db or proxy container after the first push: %+v", st.Containers)
	}
	firstVisits := visits(t, s.port)
	// The site is HTTPS, and plain HTTP redirects to it.
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d/", s.host.addr, s.port), nil)
	req.Host = "localhost"
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noFollow.Do(req); err != nil || resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://localhost/" {
		t.Errorf("http://localhost/ answers %v, %v; want a redirect to https://localhost/", resp, err)
	} else {
		resp.Body.Close()
	}
	cert := siteCertificate(t, s.port)

	l := startLoad(t, s.port, 100, 25)
	stopped := false
	defer func() {
		if !stopped {
			l.stop()
		}
	}()
	time.Sleep(3 * time.Second)

	// 2. Change the platform code and push: green.
	l.phase("2-push-green")
	s.buildServices("-X main.build=2")
	if r := push("push", "e2e", "--release", "r2"); r.failed() {
		t.Fatalf("push 2 failed: %v", r.err)
	}
	expectServing(t, s.port, "green/r2/build 2")
	expectStatus(t, s, "green", "r2")

	// 3. Push again: back to blue.
	l.phase("3-push-blue")
	s.buildServices("-X main.build=3")
	if r := push("push", "e2e", "--release", "r3"); r.failed() {
		t.Fatalf("push 3 failed: %v", r.err)
	}
	expectServing(t, s.port, "blue/r3/build 3")
	st = expectStatus(t, s, "blue", "r3")
	if st.Previous == nil || st.Previous.Color != "green" || st.Previous.Release != "r2" {
		t.Errorf("status offers rollback to %+v, want green r2", st.Previous)
	}

	// 4. Rollback: green r2 again, started from its kept containers, no build.
	l.phase("4-rollback")
	r = push("rollback", "e2e")
	if r.failed() {
		t.Fatalf("rollback failed: %v", r.err)
	}
	if slices.Contains(r.steps(), "build") || slices.Contains(r.steps(), "images") || slices.Contains(r.steps(), "upload") {
		t.Errorf("rollback built or uploaded: steps %v", r.steps())
	}
	t.Logf("rollback took %.1fs (steps %v)", r.took.Seconds(), r.stepSeconds())
	expectServing(t, s.port, "green/r2/build 2")
	expectStatus(t, s, "green", "r2")

	// 5. A release whose platform fails its health check: refused, nothing moves.
	l.phase("5-broken-push")
	s.buildServices("-X main.build=5 -X main.broken=true")
	r = push("--json", "push", "e2e", "--release", "r5")
	if !r.failed() {
		t.Fatalf("a push whose platform is unhealthy succeeded")
	}
	// --json stays pure on failure: the new containers' log lines travel in
	// the failed step's event, never as text on stdout.
	events := jsonLines(t, r.stdout)
	var verify map[string]any
	var steps []string
	for _, ev := range events {
		if ev["type"] == "step" && ev["status"] != "running" {
			steps = append(steps, ev["step"].(string))
			if ev["step"] == "verify" {
				verify = ev
			}
		}
	}
	if verify == nil || verify["status"] != "failed" || !strings.Contains(fmt.Sprint(verify["message"]), "failed its health checks") ||
		!strings.Contains(fmt.Sprint(verify["log"]), "last log lines") || !strings.Contains(fmt.Sprint(verify["log"]), "platform") {
		t.Errorf("failed push: the verify event does not say why or carry the new containers' logs: %v\n%s", verify, r.out)
	}
	if last := events[len(events)-1]; last["type"] != "summary" || last["ok"] != false {
		t.Errorf("failed push --json: the last line is not a failed summary: %v", last)
	}
	if slices.Contains(steps, "switch") {
		t.Errorf("a failed push reached the switch: %v", steps)
	}
	expectServing(t, s.port, "green/r2/build 2")
	st = expectStatus(t, s, "green", "r2")
	for _, c := range st.Containers {
		if c.Color == "blue" {
			t.Errorf("the failed color's container %s is still there (%s)", c.Name, c.State)
		}
	}
	l.phase("6-after")
	time.Sleep(3 * time.Second)
	l.stop()
	stopped = true
	if after := siteCertificate(t, s.port); after != cert {
		t.Errorf("the site's certificate changed over the pushes (%s, now %s): it was issued again", cert, after)
	}

	sent, failed := l.totals()
	t.Logf("load: %d requests sent, %d failed\n%s", sent, failed, l.report())
	if sent < 1000 {
		t.Errorf("only %d requests were sent; the load did not run", sent)
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed:\n%s", failed, sent, l.report())
		logDB(t, s.host, s.project)
	}
	// Each phase saw only the releases it moves between.
	allowed := map[string][]string{
		"2-push-green":  {"blue/r1/build 1", "green/r2/build 2"},
		"3-push-blue":   {"green/r2/build 2", "blue/r3/build 3"},
		"4-rollback":    {"blue/r3/build 3", "green/r2/build 2"},
		"5-broken-push": {"green/r2/build 2"},
		"6-after":       {"green/r2/build 2"},
	}
	for phase, want := range allowed {
		for got := range l.served(phase) {
			if !slices.Contains(want, got) {
				t.Errorf("phase %s served %s, want only %v", phase, got, want)
			}
		}
	}
	// 7. platform -> rag never crossed colors.
	if len(l.crossed) > 0 {
		t.Errorf("%d calls crossed colors, first: %s", len(l.crossed), l.crossed[0])
	}
	// 8. db and proxy were never recreated and the data survived.
	st = s.status()
	if containerID(st, "db") != dbID || containerID(st, "proxy") != proxyID {
		t.Errorf("db or proxy was recreated: db %s -> %s, proxy %s -> %s", dbID, containerID(st, "db"), proxyID, containerID(st, "proxy"))
	}
	if v := visits(t, s.port); v <= l.maxVisit || l.maxVisit <= firstVisits {
		t.Errorf("visit counter went %d (first push) -> %d (under load) -> %d (end): data lost", firstVisits, l.maxVisit, v)
	}
	// The counter is PostgreSQL's, on the named volume: read it there, with psql
	// in the db container that ran through every push.
	out, err := s.host.docker("exec", "-u", "postgres", dbID, "psql", "-d", "tale", "-tAc", "SELECT count FROM visits WHERE id = 1").CombinedOutput()
	if err != nil {
		t.Fatalf("psql in the db container: %v: %s", err, out)
	}
	var inDB int
	if _, err := fmt.Sscanf(string(out), "%d", &inDB); err != nil || inDB < l.counted || inDB < l.maxVisit {
		t.Errorf("visits in PostgreSQL: %q, want at least the %d visits the load counted (highest seen %d)", out, l.counted, l.maxVisit)
	}
	t.Logf("visits in PostgreSQL: %d (load counted %d)", inDB, l.counted)
	var mounts []struct{ Type, Name, Destination string }
	if out, err := s.host.docker("inspect", "-f", "{{json .Mounts}}", dbID).Output(); err != nil || json.Unmarshal(out, &mounts) != nil {
		t.Errorf("docker inspect %s: %v", dbID, err)
	}
	if !slices.ContainsFunc(mounts, func(m struct{ Type, Name, Destination string }) bool {
		return m.Type == "volume" && m.Name == s.project+"_db_data" && m.Destination == "/var/lib/postgresql/data"
	}) {
		t.Errorf("db's data is not on the named volume %s_db_data: mounts %+v", s.project, mounts)
	}

	// Secrets: the env file is 0600 and its values are never printed.
	info, err := os.Stat(s.host.path(s.remote) + "/.taledeploy/env/stack.env")
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("env file on the host: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	// Values arrive byte for byte: the live platform container has ODD_VALUE
	// exactly as the inventory holds it.
	ids, err := s.host.docker("ps", "-q", "--filter", "label=com.docker.compose.project="+s.project+"-green",
		"--filter", "label=com.docker.compose.service=platform").Output()
	if id := strings.TrimSpace(string(ids)); err != nil || id == "" {
		t.Errorf("no live platform container: %v", err)
	} else if env, err := s.host.docker("inspect", "--format", "{{json .Config.Env}}", id).Output(); err != nil {
		t.Errorf("docker inspect: %v", err)
	} else {
		var vars []string
		json.Unmarshal(env, &vars)
		if !slices.Contains(vars, "ODD_VALUE="+oddValue) {
			t.Errorf("the container's ODD_VALUE is not the inventory's %q", oddValue)
		}
	}
	for _, out := range s.outputs {
		if strings.Contains(out, "e2e-planted-secret-value") || strings.Contains(out, "e2e-planted-db-password") {
			t.Errorf("a secret from the inventory's env appeared in the output")
		}
	}
}

func visits(t *testing.T, port int) int {
	t.Helper()
	resp, err := siteGet(t, port, "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var v int
	fmt.Sscanf(resp.Header.Get("X-Visits"), "%d", &v)
	return v
}

// jsonLines parses --json output: every line must be one JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var events []map[string]any
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Errorf("--json printed a line that is not JSON: %q", line)
			continue
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		t.Fatalf("--json printed nothing")
	}
	return events
}
