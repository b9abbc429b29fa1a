package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// TestShipImages pushes with the images built on this machine (build: local,
// the default here) under load: the host builds nothing and is sent only the
// layers it lacks; a transfer cut off in the middle leaves the host as it
// was, and the next push completes.
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

	l.phase("after")
	l.stopOnce()
	total, failed := l.totals()
	t.Logf("load: %d requests, %d failed\n%s", total, failed, l.report())
	if failed > 0 || total == 0 {
		t.Errorf("%d of %d requests failed", failed, total)
	}
}

// localChains lists the chain IDs of an image on this machine's engine.
func localChains(t *testing.T, ref string) map[string]bool {
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
func changedLayerBytes(t *testing.T, ref string, before map[string]bool) int64 {
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

func localLayers(t *testing.T, ref string) []string {
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
func sentBytes(t *testing.T, out string) (int64, int) {
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
