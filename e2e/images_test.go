package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// TestShipImages pushes with the images built on this machine (build: local,
// the default here) under load: the host builds nothing and is sent only the
// layers it lacks; a transfer cut off in the middle leaves the host as it
// was, and the next push completes; after a failed push replaced the kept
// color, a rollback starts the release before from its recorded images; and
// keep_releases prunes older releases' images.
func TestShipImages(t *testing.T) {
	s := newStack(t, "tale-ship", 18094)
	if r := s.taledeploy("push", "e2e", "--release", "s1"); r.failed() {
		t.Fatalf("first push: %v", r.err)
	} else if !regexp.MustCompile(`(?m)^local\s+build\s+ok`).MatchString(r.out) || !contains(r.steps(), "images") {
		t.Errorf("the first push did not build here and send the images:\n%s", r.out)
	}
	for _, svc := range []string{"platform", "rag", "crawler"} {
		for _, tag := range []string{"r-s1", "blue"} {
			if out, err := s.host.docker("image", "inspect", "--format", "{{.Id}}", s.project+"/"+svc+":"+tag).CombinedOutput(); err != nil {
				t.Errorf("the host has no %s/%s:%s: %s", s.project, svc, tag, out)
			}
		}
	}
	if st := s.status(); st.Active != "blue" || st.Release != "s1" {
		t.Fatalf("status after the first push: %s %s", st.Active, st.Release)
	}

	l := startLoad(t, s.port, 60, 20)
	defer l.stopOnce()

	// A one-line change: the platform's binary. Only the layers it changed go.
	l.phase("one-line change")
	ref := s.project + "/platform:taledeploy-build"
	before := localChains(t, ref)
	s.buildServices("-X main.build=s2")
	r := s.taledeploy("push", "e2e", "--release", "s2", "--json")
	if r.failed() {
		t.Fatalf("push s2: %v", r.err)
	}
	sent, layers := sentBytes(t, r.out)
	changed := changedLayerBytes(t, ref, before)
	t.Logf("one-line change: sent %d bytes (%d layers); the changed layers hold %d bytes", sent, layers, changed)
	if changed == 0 {
		t.Fatalf("the rebuild changed no layer of %s", ref)
	}
	// Within 5% of the changed layers, and a few KiB of configs and manifest.
	if sent < changed || sent > changed*105/100+64<<10 {
		t.Errorf("sent %d bytes for %d bytes of changed layers", sent, changed)
	}
	expectServing(t, s.port, "green/s2/build s2")
	// The record names the image the host runs, by the host's own ID: what
	// status and history show. That is the ID of the image built here on
	// the classic image store; the containerd store names an image by its
	// manifest, so there it is the ID of the release's tag on the host.
	local, _ := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).Output()
	onHost, err := s.host.docker("image", "inspect", "--format", "{{.Id}}", s.project+"/platform:r-s2").Output()
	id := strings.TrimSpace(string(onHost))
	if err != nil || id == "" {
		t.Fatalf("the host has no %s/platform:r-s2: %v", s.project, err)
	}
	if !s.host.containerdStore(t) && id != strings.TrimSpace(string(local)) {
		t.Errorf("the host's image of release s2 is %s, this machine built %s", id, local)
	}
	if st := s.status(); st.Images["platform"] != id {
		t.Errorf("status names the platform's image %q, the host's image of release s2 is %s", st.Images["platform"], id)
	}
	if r := s.taledeploy("history", "e2e"); !strings.Contains(r.out, "platform="+strings.TrimPrefix(id, "sha256:")[:12]) {
		t.Errorf("history does not show the platform's image %s:\n%s", id, r.out)
	}

	// Killed in the middle of the transfer: nothing changed on the host.
	l.phase("transfer killed")
	s.buildServices("-X main.build=s3")
	r = s.taledeployEnv([]string{"TALEDEPLOY_KILL_AFTER=images/progress"}, "push", "e2e", "--release", "s3")
	if !killed(r.err) {
		t.Fatalf("taledeploy was not killed in the transfer: %v\n%s", r.err, r.out)
	}
	expectServing(t, s.port, "green/s2/build s2")
	if st := s.status(); st.Release != "s2" || st.Lock == nil || st.Lock.Stale == "" {
		t.Errorf("after the killed transfer status says %s %s, lock %+v", st.Active, st.Release, st.Lock)
	}
	l.phase("push after the kill")
	if r := s.taledeploy("push", "e2e", "--release", "s3b"); r.failed() {
		t.Fatalf("the push after the killed transfer: %v", r.err)
	}
	expectServing(t, s.port, "blue/s3b/build s3")
	if st := s.status(); st.Release != "s3b" || len(st.Problems) > 0 || st.Lock != nil {
		t.Errorf("after the next push status says %s %s, lock %+v, problems %q", st.Active, st.Release, st.Lock, st.Problems)
	}

	// A release that fails its checks replaces the color kept for rollback;
	// the rollback then starts the release before from its recorded images.
	l.phase("broken push")
	s.buildServices("-X main.build=s4 -X main.broken=true")
	if r := s.taledeploy("push", "e2e", "--release", "s4"); !r.failed() {
		t.Fatalf("the broken release was pushed")
	}
	expectServing(t, s.port, "blue/s3b/build s3")
	l.phase("rollback from images")
	r = s.taledeploy("rollback", "e2e")
	if r.failed() || !strings.Contains(r.out, "from its recorded images") {
		t.Fatalf("rollback after a failed push: %v\n%s", r.err, r.out)
	}
	expectServing(t, s.port, "green/s2/build s2")
	if st := s.status(); st.Active != "green" || st.Release != "s2" || len(st.Problems) > 0 {
		t.Errorf("after the rollback status says %s %s, problems %q", st.Active, st.Release, st.Problems)
	}

	// keep_releases: 1 keeps the new release's images and those a color
	// uses; plan says what goes.
	l.phase("prune")
	restore := s.editInventory("      verify_window: 2s\n", "      verify_window: 2s\n      keep_releases: 1\n")
	defer restore()
	gone := s.project + "/platform:r-s1"
	if r := s.taledeploy("plan", "e2e"); r.failed() || !strings.Contains(r.out, gone) {
		t.Errorf("plan does not say it would prune %s: %v\n%s", gone, r.err, r.out)
	}
	s.buildServices("-X main.build=s5")
	if r := s.taledeploy("push", "e2e", "--release", "s5"); r.failed() || !regexp.MustCompile(`(?m)^sandbox\s+prune\s+ok.*`+regexp.QuoteMeta(gone)).MatchString(r.out) {
		t.Fatalf("push s5 did not prune %s: %v\n%s", gone, r.err, r.out)
	}
	expectServing(t, s.port, "blue/s5/build s5")
	for ref, want := range map[string]bool{gone: false, s.project + "/platform:r-s5": true, s.project + "/platform:r-s2": true} {
		if err := s.host.docker("image", "inspect", ref).Run(); (err == nil) != want {
			t.Errorf("after pruning, the host has %s: %v, want %v", ref, err == nil, want)
		}
	}
	// The kept color still starts: a rollback to s2.
	if r := s.taledeploy("rollback", "e2e"); r.failed() {
		t.Errorf("rollback after pruning: %v", r.err)
	}
	expectServing(t, s.port, "green/s2/build s2")

	l.phase("after")
	l.stopOnce()
	total, failed := l.totals()
	t.Logf("load: %d requests, %d failed\n%s", total, failed, l.report())
	if failed > 0 || total == 0 {
		t.Errorf("%d of %d requests failed", failed, total)
	}
}

// localChains lists the chain IDs of an image on this machine's engine.
func localChains(t testing.TB, ref string) map[string]bool {
	t.Helper()
	have := map[string]bool{}
	for _, c := range chainIDs(localLayers(t, ref)) {
		have[c] = true
	}
	return have
}

func chainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		out[i] = d
		if i > 0 {
			out[i] = digest.FromString(out[i-1] + " " + d).String()
		}
	}
	return out
}

// changedLayerBytes is the size, in docker save's archive, of the image's
// layers whose chain is not among before.
func changedLayerBytes(t testing.TB, ref string, before map[string]bool) int64 {
	t.Helper()
	out, err := exec.Command("docker", "save", ref).Output()
	if err != nil {
		t.Fatalf("docker save %s: %v", ref, err)
	}
	sizes := map[string]int64{}
	var layers []struct{ Layers []string }
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes[h.Name] = h.Size
		if h.Name == "manifest.json" {
			data, _ := io.ReadAll(tr)
			json.Unmarshal(data, &layers)
		}
	}
	if len(layers) != 1 {
		t.Fatalf("docker save %s: %d images in the manifest", ref, len(layers))
	}
	after := chainIDs(localLayers(t, ref))
	var n int64
	for i, f := range layers[0].Layers {
		if !before[after[i]] {
			n += sizes[f]
		}
	}
	return n
}

func localLayers(t testing.TB, ref string) []string {
	t.Helper()
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).Output()
	if err != nil {
		t.Fatalf("docker image inspect %s: %v", ref, err)
	}
	var layers []string
	if err := json.Unmarshal(out, &layers); err != nil {
		t.Fatal(err)
	}
	return layers
}

// sentBytes reads a push's --json output: the bytes the last progress event
// of the images step says were sent, and the layers its step line names.
func sentBytes(t testing.TB, out string) (int64, int) {
	t.Helper()
	var sent int64
	layers := -1
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			Type, Step, Status, Message string
			Sent                        int64 `json:"sent_bytes"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Step != "images" {
			continue
		}
		if e.Type == "progress" {
			sent = e.Sent
		}
		if e.Type == "step" && e.Status == "ok" {
			if m := regexp.MustCompile(`sent (\d+) of`).FindStringSubmatch(e.Message); m != nil {
				layers, _ = strconv.Atoi(m[1])
			}
		}
	}
	if layers < 0 {
		t.Fatalf("no images step in the output:\n%s", out)
	}
	return sent, layers
}

// TestPullImages runs a service whose image comes from a registry (image: and
// no build:): each host pulls it while it is prepared, logging in with the
// credentials of the machine running taledeploy, which never appear in the
// output. The registry is a real one, on the host's loopback.
func TestPullImages(t *testing.T) {
	s := newStack(t, "tale-pull", 18095)
	// The crawler's image, built here and put in the registry.
	archive := filepath.Join(t.TempDir(), "crawler.tar")
	run(t, s.work, nil, "docker", "build", "-q", "-t", "tale-pull-src/crawler:1", "services/crawler")
	run(t, s.work, nil, "docker", "save", "-o", archive, "tale-pull-src/crawler:1")
	const user, password = "deployer", "pull-secret-7f3a"
	addr := startRegistry(t, s, user, password, "team/crawler:1="+archive)
	s.editFile("compose.yml", "    build: services/crawler\n", "    image: "+addr+"/team/crawler:${CRAWLER_TAG}\n")
	s.editInventory("      env:\n", "      env:\n        CRAWLER_TAG: \"1\"\n")

	// Without credentials the pull is refused before anything changes.
	if r := s.taledeploy("push", "e2e", "--release", "p0"); !r.failed() || !strings.Contains(r.out, "TALEDEPLOY_REGISTRY_USER") {
		t.Fatalf("push without registry credentials: %v\n%s", r.err, r.out)
	} else if contains(r.steps(), "start") {
		t.Errorf("the push started a color without its image: %v", r.steps())
	}

	creds := []string{"TALEDEPLOY_REGISTRY=" + addr, "TALEDEPLOY_REGISTRY_USER=" + user, "TALEDEPLOY_REGISTRY_PASSWORD=" + password}
	r := s.taledeployEnv(creds, "push", "e2e", "--release", "p1")
	if r.failed() || !strings.Contains(r.out, "pulled crawler") {
		t.Fatalf("push with a pulled crawler: %v\n%s", r.err, r.out)
	}
	want, err := s.host.docker("image", "inspect", "--format", "{{.Id}}", addr+"/team/crawler:1").Output()
	if err != nil {
		t.Fatalf("the host did not pull the crawler: %v", err)
	}
	got, _ := s.host.docker("image", "inspect", "--format", "{{.Id}}", s.project+"/crawler:r-p1").Output()
	if string(got) != string(want) {
		t.Errorf("the release's crawler is %s, the pulled image %s", got, want)
	}

	l := startLoad(t, s.port, 60, 20)
	defer l.stopOnce()
	l.phase("push p2")
	s.buildServices("-X main.build=p2")
	if r := s.taledeployEnv(creds, "push", "e2e", "--release", "p2"); r.failed() {
		t.Fatalf("push p2: %v\n%s", r.err, r.out)
	}
	expectServing(t, s.port, "green/p2/build p2")
	l.phase("after")
	l.stopOnce()
	total, failed := l.totals()
	t.Logf("load: %d requests, %d failed", total, failed)
	if failed > 0 || total == 0 {
		t.Errorf("%d of %d requests failed", failed, total)
	}

	// build: none pulls every image: the services with only a build: are
	// refused with their line before any host is reached.
	if r := s.taledeployEnv(creds, "push", "e2e", "--build", "none"); !r.failed() || !strings.Contains(r.out+r.err.Error(), `service "platform" has no image: to pull`) {
		t.Errorf("push --build none with built services: %v\n%s", r.err, r.out)
	}
	for _, out := range s.outputs {
		_, out, _ = strings.Cut(out, "\n") // the first line is the command the test ran, its env with it
		if strings.Contains(out, password) {
			t.Fatalf("the registry password appears in taledeploy's output:\n%s", out)
		}
	}
}

// startRegistry runs e2e/cmd/registry in the host's network namespace on its
// loopback, with the images given, and returns its address there.
func startRegistry(t *testing.T, s *stack, user, password string, images ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "registry")
	run(t, s.repo, []string{"CGO_ENABLED=0"}, "go", "build", "-o", bin, "./e2e/cmd/registry")
	pid, err := os.ReadFile(filepath.Join(s.host.state, "holder.pid"))
	if err != nil {
		t.Fatal(err)
	}
	const addr = "127.0.0.1:5000"
	cmd := exec.Command("nsenter", append([]string{"-t", strings.TrimSpace(string(pid)), "-n", bin, "-addr", addr, "-user", user, "-password", password}, images...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("the registry did not start: %q %v", line, err)
	}
	return addr
}

// TestHostBuild builds on the host (build: host) under load: the context goes
// to Docker's build as one stream of exactly what Docker would see here, so
// .dockerignore is honoured, a file deleted here is gone from the next
// image, thousands of files work, and nothing of it lands in remote_dir.
func TestHostBuild(t *testing.T) {
	s := newStack(t, "tale-hbuild", 18096)
	ctx := filepath.Join(s.work, "services/platform")
	appendFile(t, filepath.Join(ctx, "Dockerfile"), "COPY . /ctx/\n")
	files := map[string]string{
		".dockerignore": ".env\n*.key\n",
		".env":          "APP_SECRET=planted-context-secret\n",
		"deploy.key":    "planted-context-key\n",
		"stale.txt":     "deleted before the second push\n",
	}
	for i := range 4600 {
		files[fmt.Sprintf("many/%04d.txt", i)] = "x"
	}
	for name, data := range files {
		os.MkdirAll(filepath.Join(ctx, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(ctx, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inImage := func(release string) string {
		t.Helper()
		out, err := s.host.docker("run", "--rm", "--entrypoint", "/bin/sh", s.project+"/platform:r-"+release,
			"-c", "ls -A /ctx; ls /ctx/many | wc -l").CombinedOutput()
		if err != nil {
			t.Fatalf("listing the context in %s's image: %v: %s", release, err, out)
		}
		return string(out)
	}

	if r := s.taledeploy("push", "e2e", "--build", "host", "--release", "h1"); r.failed() || !contains(r.steps(), "build") || contains(r.steps(), "images") {
		t.Fatalf("push --build host: %v (steps %v)\n%s", r.err, r.steps(), r.out)
	}
	got := inImage("h1")
	for _, want := range []string{"Dockerfile", ".dockerignore", "stale.txt", "\n4600\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the image's context lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{".env", "deploy.key"} {
		if slices.Contains(strings.Fields(got), not) {
			t.Errorf("the image's context holds %s, which .dockerignore excludes:\n%s", not, got)
		}
	}
	for _, f := range []string{"Dockerfile", "stale.txt", "many"} {
		if _, err := os.Stat(s.host.path(s.remote + "/services/platform/" + f)); err == nil {
			t.Errorf("the platform's context was uploaded: %s/services/platform/%s", s.remote, f)
		}
	}

	l := startLoad(t, s.port, 60, 20)
	defer l.stopOnce()
	l.phase("second push")
	os.Remove(filepath.Join(ctx, "stale.txt"))
	s.buildServices("-X main.build=h2")
	if r := s.taledeploy("push", "e2e", "--build", "host", "--release", "h2"); r.failed() {
		t.Fatalf("second push --build host: %v\n%s", r.err, r.out)
	}
	expectServing(t, s.port, "green/h2/build h2")
	if got := inImage("h2"); strings.Contains(got, "stale.txt") {
		t.Errorf("a file deleted here is still in the image:\n%s", got)
	}
	l.phase("after")
	l.stopOnce()
	total, failed := l.totals()
	t.Logf("load: %d requests, %d failed", total, failed)
	if failed > 0 || total == 0 {
		t.Errorf("%d of %d requests failed", failed, total)
	}
	for _, out := range s.outputs {
		if strings.Contains(out, "planted-context") {
			t.Errorf("a context secret appears in taledeploy's output:\n%s", out)
		}
	}
}

func appendFile(t *testing.T, p, text string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
