package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInitThenPush is a new user's first ten minutes: `taledeploy init` in the
// folder of the example's compose file, the host filled in, the database
// password exported in the shell (never written in the inventory), then a push,
// a second push and a rollback under load with no failed request. A push with
// the variable unset stops before it connects, naming it.
func TestInitThenPush(t *testing.T) {
	s := newStack(t, "tale-init", 18097)
	inv := filepath.Join(s.work, "inventory.yaml")
	os.Remove(inv)
	cmd := exec.Command(s.bin, "init")
	cmd.Dir = s.work
	out, err := cmd.CombinedOutput()
	s.addOutput("taledeploy init:\n" + string(out))
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, want := range []string{"stateful   db", "stateless  platform", "route      localhost/* -> platform:8080 (health /api/health)", "POSTGRES_PASSWORD"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("init does not say %q:\n%s", want, out)
		}
	}
	draft := string(readFile(t, inv))
	t.Logf("the drafted inventory:\n%s", draft)

	// What a user edits: the host, and this test's project, folder and port.
	host := `      - name: sandbox
        address: ` + s.host.addr + `
        port: 2222
        user: root
        identity_file: ` + s.repo + `/.sandbox/id_ed25519
        known_hosts: ` + s.repo + `/.sandbox/` + s.host.name + `/known_hosts
`
	edited := regexp.MustCompile(`(?s)      - name: vps1\n.*?known_hosts: ~/.ssh/known_hosts\n`).ReplaceAllString(draft, host)
	edited = regexp.MustCompile(`project: \S+`).ReplaceAllString(edited, "project: "+s.project)
	edited = regexp.MustCompile(`remote_dir: \S+`).ReplaceAllString(edited, "remote_dir: "+s.remote)
	edited = strings.Replace(edited, "        # HTTP_PORT: ${HTTP_PORT}", "        HTTP_PORT: ${HTTP_PORT} #", 1)
	edited = strings.Replace(edited, "        # HTTPS_PORT: ${HTTPS_PORT}", "        HTTPS_PORT: ${HTTPS_PORT} #", 1)
	if edited == draft || !strings.Contains(edited, "HTTP_PORT: ${HTTP_PORT}") || !strings.Contains(edited, "HTTPS_PORT: ${HTTPS_PORT}") {
		t.Fatalf("the draft is not shaped as expected:\n%s", draft)
	}
	os.WriteFile(inv, []byte(edited), 0o644)

	const password = "e2e-planted-init-password"
	env := []string{"POSTGRES_PASSWORD=" + password, "HTTP_PORT=18097", "HTTPS_PORT=19097"}
	if r := s.taledeployEnv([]string{"HTTP_PORT=18097", "HTTPS_PORT=19097"}, "push", "prod"); exitCode(r.err) != 2 || !strings.Contains(r.out, "POSTGRES_PASSWORD (used by env POSTGRES_PASSWORD)") {
		t.Errorf("a push without POSTGRES_PASSWORD exported: exit %d, want 2 naming it:\n%s", exitCode(r.err), r.out)
	}
	// What a team runs next: doctor, on a host where nothing is deployed.
	if r := s.taledeployEnv(env, "doctor", "prod"); r.failed() || strings.Contains(r.out, "BAD") {
		t.Errorf("doctor before the first push: %v:\n%s", r.err, r.out)
	}
	var outputs []string // what taledeploy printed, for the planted password
	r := s.taledeployEnv(env, "push", "prod", "--release", "i1")
	outputs = append(outputs, r.out)
	if r.failed() {
		t.Fatalf("first push from the drafted inventory: %v", r.err)
	}
	l := startLoad(t, s.port, 40, 10)
	defer l.stopOnce()
	l.phase("push")
	s.buildServices("-X main.build=2")
	r = s.taledeployEnv(env, "push", "prod", "--release", "i2")
	outputs = append(outputs, r.out)
	if r.failed() {
		t.Errorf("second push: %v", r.err)
	}
	expectServing(t, s.port, "green/i2/build 2")
	l.phase("rollback")
	r = s.taledeployEnv(env, "--json", "plan", "prod")
	outputs = append(outputs, r.out)
	r = s.taledeploy("rollback", "prod")
	outputs = append(outputs, r.out)
	if r.failed() {
		t.Errorf("rollback: %v", r.err)
	}
	expectServing(t, s.port, "blue/i1/build 1")
	l.phase("after")
	time.Sleep(time.Second)
	l.stopOnce()
	sent, failed := l.totals()
	t.Logf("load: %d requests sent, %d failed\n%s", sent, failed, l.report())
	if failed > 0 || sent < 300 {
		t.Errorf("%d of %d requests failed", failed, sent)
	}
	if strings.Contains(string(readFile(t, inv)), password) {
		t.Errorf("the password was written into the inventory")
	}
	for _, o := range outputs {
		if strings.Contains(o, password) {
			t.Errorf("the exported password appeared in taledeploy's output")
		}
	}
}
