// Package e2e runs taledeploy against the real things: OpenSSH's sshd, Docker
// Engine, Compose v2 and Caddy, under load from vegeta. Set up with
// `scripts/sandbox.sh up` (scripts/test.sh does it).
package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// stack is one sandbox project the tests deploy to: its own compose project,
// remote folder and proxy port, on a sandbox host (host1 unless a test adds
// others to its inventory).
type stack struct {
	t       testing.TB
	host    sandboxHost
	repo    string // the repository
	work    string // a copy of the stack the tests may change
	bin     string // the taledeploy binary
	project string
	remote  string
	port    int
	// outputs holds everything taledeploy printed, for the secrets check and
	// for the log written when a test fails.
	outMu   sync.Mutex
	outputs []string
	// watch, when set, also gets taledeploy's stdout as it is printed.
	watch io.Writer
}

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// sandboxHost is one host of scripts/sandbox.sh: a machine of its own (network
// and mount namespaces, disk, dockerd and sshd), reached from the tests at its
// address, through its engine's socket and through its file system.
type sandboxHost struct {
	name, addr string
	state      string // its folder in the sandbox's cache: docker.sock, holder.pid
}

// docker is the docker CLI talking to the host's own engine.
func (h sandboxHost) docker(args ...string) *exec.Cmd {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), h.dockerEnv()...)
	return cmd
}

func (h sandboxHost) dockerEnv() []string {
	return []string{"DOCKER_HOST=unix://" + filepath.Join(h.state, "docker.sock")}
}

// path is where the host's file p is seen from here: through the root of the
// process that holds its namespaces.
func (h sandboxHost) path(p string) string {
	pid, _ := os.ReadFile(filepath.Join(h.state, "holder.pid"))
	return filepath.Join("/proc", strings.TrimSpace(string(pid)), "root", p)
}

// sandboxHosts reads the hosts scripts/sandbox.sh up made (.sandbox/hosts),
// by name; it is empty when the sandbox is not up.
func sandboxHosts(t testing.TB) map[string]sandboxHost {
	data, _ := os.ReadFile(filepath.Join(repoRoot(t), ".sandbox/hosts"))
	hosts := map[string]sandboxHost{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			hosts[f[0]] = sandboxHost{name: f[0], addr: f[1], state: f[2]}
		}
	}
	return hosts
}

// requireSandbox fails under CI and skips elsewhere when the sandbox is not up.
func requireSandbox(t testing.TB) {
	t.Helper()
	root := repoRoot(t)
	var missing []string
	if _, err := os.Stat(filepath.Join(root, ".sandbox/id_ed25519")); err != nil {
		missing = append(missing, "sandbox key .sandbox/id_ed25519")
	}
	if _, err := os.Stat(filepath.Join(root, ".sandbox/jump/known_hosts")); err != nil {
		missing = append(missing, "jump host key .sandbox/jump/known_hosts")
	}
	if err := exec.Command("docker", "compose", "version").Run(); err != nil {
		missing = append(missing, "docker compose v2")
	}
	// Three hosts, each with its own engine, and the jump host in front of
	// them (ProxyJump).
	hosts := sandboxHosts(t)
	for _, name := range []string{"host1", "host2", "host3", "jump"} {
		h, ok := hosts[name]
		if !ok {
			missing = append(missing, "sandbox host "+name+" in .sandbox/hosts")
			continue
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.addr, "2222"), time.Second); err != nil {
			missing = append(missing, "sshd on "+h.addr+":2222")
		} else {
			c.Close()
		}
		if name == "jump" {
			continue
		}
		for _, image := range []string{"taledeploy/caddy:2.11.9", "taledeploy/postgres:15-bookworm"} {
			if err := h.docker("image", "inspect", image).Run(); err != nil {
				missing = append(missing, "image "+image+" on "+name)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("end-to-end prerequisites missing: %s; run scripts/sandbox.sh up (or scripts/test.sh)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// singleHost is the sandbox host the one-host tests deploy to: host1 runs
// Debian's Docker Engine 20.10, host3 the current Engine line, so CI runs the
// push, fault, HTTPS and image tests once on each (TALEDEPLOY_E2E_HOST=host3).
func singleHost() string {
	return cmp.Or(os.Getenv("TALEDEPLOY_E2E_HOST"), "host1")
}

// newStack builds taledeploy and the example services into a fresh copy of the
// example stack, with an inventory for project name on the given proxy port.
func newStack(t testing.TB, name string, port int) *stack {
	requireSandbox(t)
	root := repoRoot(t)
	s := &stack{t: t, host: sandboxHosts(t)[singleHost()], repo: root, work: t.TempDir(), project: name, remote: "/var/lib/taledeploy-" + name, port: port}
	s.bin = filepath.Join(s.work, "taledeploy")
	registerSite(port, name, s.host)
	// The kill hook (TALEDEPLOY_KILL_AFTER) exists only in this test build.
	run(t, root, nil, "go", "build", "-tags", "killhook", "-o", s.bin, "./cmd/taledeploy")
	for _, p := range []string{"compose.yml", "services/platform/Dockerfile", "services/platform/docker-entrypoint.sh",
		"services/rag/Dockerfile", "services/crawler/Dockerfile", "services/store/Dockerfile", "services/platform/platform.env",
		"services/db/Dockerfile", "services/db/docker-entrypoint.sh", "services/proxy/Caddyfile",
		"services/platform/migrations/0001_visits.sql"} {
		copyFile(t, filepath.Join(root, p), filepath.Join(s.work, p))
	}
	s.buildServices("")
	inv := fmt.Sprintf(`environments:
  e2e:
    hosts:
      - name: sandbox
        address: %[3]s
        port: 2222
        user: root
        identity_file: %[1]s/.sandbox/id_ed25519
        known_hosts: %[1]s/.sandbox/%[4]s/known_hosts
%[2]s`, root, stackYAML(s.project, s.remote, "2s", s.port), s.host.addr, s.host.name)
	if err := os.WriteFile(filepath.Join(s.work, "inventory.yaml"), []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	s.clean()
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpOutputs()
		}
		s.clean()
	})
	return s
}

// oddValue is an env value Compose's env-file parser would change if written
// raw ($ expanded, # cut, quotes stripped); containers must get it as it is.
const (
	oddValue     = `pa$word ${HOME} #1 "q" 'x' C:\new\ ` + "  "
	oddValueYAML = `"pa$word $${HOME} #1 \"q\" 'x' C:\\new\\   "` // $${ is a literal ${ in the inventory
)

// stackYAML is the example stack's inventory block for one project; a port of 0
// leaves HTTP_PORT to the hosts.
func stackYAML(project, remoteDir, verifyWindow string, port int) string {
	env := ""
	if port > 0 {
		env = fmt.Sprintf("\n        HTTP_PORT: \"%d\"\n        HTTPS_PORT: \"%d\"", port, port+httpsOffset)
	}
	return fmt.Sprintf(`    stack:
      project: %s
      remote_dir: %s
      stateless: [platform, rag, crawler]
      stateful: [proxy, db, store]
      routes:
        - {site: localhost, path: /*, service: platform, port: 8080, health_path: /api/health}
        - {site: rag.localhost, path: /*, service: rag, port: 8000, health_path: /health}
      health_timeout: 40s
      drain_timeout: 20s
      verify_window: %s
      migrations:
        - {service: platform, dir: services/platform/migrations, command: [/app/platform, migrate]}
      env:
        APP_SECRET: e2e-planted-secret-value
        POSTGRES_PASSWORD: e2e-planted-db-password%s
        ODD_VALUE: %s
`, project, remoteDir, verifyWindow, env, oddValueYAML)
}

// runID tells this run's builds from earlier runs'.
var runID = time.Now().UnixNano()

// buildServices rebuilds the example binaries; ldflags change the platform build.
func (s *stack) buildServices(ldflags string) {
	// Unlike any build of an earlier run, whose images a host may still hold.
	ldflags += fmt.Sprintf(" -X main.buildID=%s-%d", s.project, runID)
	run(s.t, s.repo, []string{"PLATFORM_LDFLAGS=" + ldflags}, "bash", filepath.Join(s.repo, "scripts/build-services.sh"), s.work)
}

// clean removes everything of the project from the sandbox: every compose
// project, network, volume and remote folder whose name starts with it.
func (s *stack) clean() {
	mine := func(name string) bool {
		return name == s.project || strings.HasPrefix(name, s.project+"-") || strings.HasPrefix(name, s.project+"_")
	}
	// A fleet's projects are on every host.
	for _, name := range []string{"host1", "host2", "host3"} {
		h := sandboxHosts(s.t)[name]
		out, _ := h.docker("ps", "-a", "--filter", "label=com.docker.compose.project", "--format",
			`{{.ID}} {{.Label "com.docker.compose.project"}}`).Output()
		var ids []string
		for _, line := range strings.Split(string(out), "\n") {
			if id, p, ok := strings.Cut(line, " "); ok && mine(p) {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			h.docker(append([]string{"rm", "-f"}, ids...)...).Run()
		}
		for _, kind := range []string{"network", "volume"} {
			out, _ := h.docker(kind, "ls", "-q", "--format", "{{.Name}}").Output()
			for _, name := range strings.Fields(string(out)) {
				if mine(name) {
					h.docker(kind, "rm", name).Run()
				}
			}
		}
		// Compose builds a stateful service's image only when it is missing, so the
		// db image an earlier run left would run instead of this one's.
		out, _ = h.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").Output()
		for _, ref := range strings.Fields(string(out)) {
			if p, ok := strings.CutSuffix(strings.SplitN(ref, ":", 2)[0], "/db"); ok && mine(p) {
				h.docker("image", "rm", ref).Run()
			}
		}
		dirs, _ := filepath.Glob(h.path("/var/lib/taledeploy-" + s.project + "*"))
		for _, d := range dirs {
			if mine(strings.TrimPrefix(filepath.Base(d), "taledeploy-")) {
				os.RemoveAll(d)
			}
		}
	}
}

// result is one run of taledeploy.
type result struct {
	out    string // stdout and stderr
	stdout string
	err    error
	took   time.Duration
}

func (r result) failed() bool { return r.err != nil }

// steps returns the step names in the output, in order.
func (r result) steps() []string {
	var names []string
	for _, m := range stepLine.FindAllStringSubmatch(r.out, -1) {
		names = append(names, m[1])
	}
	return names
}

// stepSeconds returns the duration of each step in the output.
func (r result) stepSeconds() map[string]float64 {
	d := map[string]float64{}
	// The images built on this machine count as the build.
	for _, m := range append(stepLine.FindAllStringSubmatch(r.out, -1), localStepLine.FindAllStringSubmatch(r.out, -1)...) {
		var f float64
		fmt.Sscanf(m[3], "%f", &f)
		d[m[1]] += f
	}
	return d
}

var (
	stepLine      = regexp.MustCompile(`(?m)^sandbox\s+(\S+)\s+(ok|failed)\s+([0-9.]+)s`)
	localStepLine = regexp.MustCompile(`(?m)^local\s+(\S+)\s+(ok|failed)\s+([0-9.]+)s`)
)

func (s *stack) taledeploy(args ...string) result {
	s.t.Helper()
	return s.taledeployEnv(nil, args...)
}

// taledeployEnv runs taledeploy with extra environment variables. The output is
// logged when the command fails; all of it is kept for dumpOutputs.
func (s *stack) taledeployEnv(env []string, args ...string) result {
	s.t.Helper()
	cmd := exec.Command(s.bin, append([]string{"--inventory", filepath.Join(s.work, "inventory.yaml")}, args...)...)
	cmd.Dir = s.work
	cmd.Env = append(os.Environ(), env...)
	var buf, stdout bytes.Buffer
	both := &lockedWriter{w: &buf}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(both, &stdout), both
	if s.watch != nil {
		cmd.Stdout = io.MultiWriter(both, &stdout, s.watch)
	}
	start := time.Now()
	err := cmd.Run()
	r := result{out: buf.String(), stdout: stdout.String(), err: err, took: time.Since(start)}
	line := fmt.Sprintf("taledeploy %s %s(%.1fs, err=%v)", strings.Join(args, " "), strings.Join(env, " "), r.took.Seconds(), err)
	s.addOutput(line + ":\n" + r.out)
	if err != nil {
		s.t.Logf("%s:\n%s", line, r.out)
	} else {
		s.t.Log(line)
	}
	return r
}

func (s *stack) addOutput(out string) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	s.outputs = append(s.outputs, out)
}

// dumpOutputs writes every command's output to a file and logs where it is.
func (s *stack) dumpOutputs() {
	f, err := os.CreateTemp("", "taledeploy-e2e-*.log")
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, strings.Join(s.outputs, "\n"))
	s.t.Logf("all taledeploy output: %s", f.Name())
}

// hostStatus is the part of `status --json` the tests read.
type hostStatus struct {
	Host       string
	Error      string
	Active     string
	Release    string
	Previous   *struct{ Color, Release string }
	Images     map[string]string
	Serving    string
	Lock       *struct{ Command, Step, Stale string }
	Problems   []string
	Migrations map[string][]string
	Contract   *struct{ Release string }
	Containers []struct {
		ID, Name, Project, Service, Color, State, Health, Release string
	}
}

func (s *stack) status() hostStatus {
	s.t.Helper()
	r := s.taledeploy("status", "e2e", "--json")
	if r.failed() {
		s.t.Fatalf("status failed: %v", r.err)
	}
	var doc struct{ Hosts []hostStatus }
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil || len(doc.Hosts) != 1 {
		s.t.Fatalf("status --json: %v: %s", err, r.out)
	}
	return doc.Hosts[0]
}

func run(t testing.TB, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(from)
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// lockedWriter lets exec's stdout and stderr copiers share one buffer: they
// write from two goroutines, and a bytes.Buffer is not safe for that.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logDB logs what the project's database said lately and how stalled this
// machine's disk was, for requests that failed in an app that was not broken
// on purpose: "db: timeout" has so far come from the test machine's disk.
func logDB(t testing.TB, h sandboxHost, project string) {
	t.Helper()
	out, _ := h.docker("logs", "--since", "3m", "--tail", "30", project+"-db-1").CombinedOutput()
	io, _ := os.ReadFile("/proc/pressure/io")
	t.Logf("%s-db-1, last lines:\n%s\nthis machine's I/O pressure:\n%s", project, out, io)
}

// containerdStore tells whether the host's engine keeps images in the
// containerd image store (the current Engine line) rather than the classic one.
func (h sandboxHost) containerdStore(t testing.TB) bool {
	t.Helper()
	out, err := h.docker("info", "--format", "{{json .DriverStatus}}").Output()
	if err != nil {
		t.Fatalf("docker info on %s: %v", h.name, err)
	}
	return strings.Contains(string(out), "io.containerd.snapshotter.v1")
}

// apiAtLeast144 tells whether an engine API version (as docker version prints
// it) is 1.44 or newer: the first with a healthcheck start_interval.
func apiAtLeast144(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 1 || major == 1 && minor >= 44
}
