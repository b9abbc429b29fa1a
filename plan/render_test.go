package plan

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The committed overlays and Caddyfile are exactly what `taledeploy render demo`
// writes: edit the templates and run it, never the rendered files.
func TestCommittedFilesMatchTemplates(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(self))
	inv, err := Load(filepath.Join(root, "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := inv.Env("demo")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := env.Stack.RenderTo(out); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"compose.blue.yml", "compose.green.yml", "services/proxy/Caddyfile"} {
		want, _ := os.ReadFile(filepath.Join(out, rel))
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what `taledeploy render demo` writes (%v); run it and commit the result", rel, err)
		}
	}
}

func TestCaddyfileGatesBothColors(t *testing.T) {
	inv, err := Load(writeStack(t, goodInventory, goodCompose))
	if err != nil {
		t.Fatal(err)
	}
	s := inv.Environments["demo"].Stack
	c := string(s.CaddyfileText())
	// The same file serves either color: blue is tried first, the gate decides.
	for _, want := range []string{
		"reverse_proxy platform-blue:8080 platform-green:8080 {",
		"lb_policy first",
		"health_upstream 127.0.0.1:2020",
		"X-Taledeploy-Upstream {http.reverse_proxy.active.target_upstream}",
		":2020 {\n\tbind 127.0.0.1\n\troot * /run/caddy/live",
	} {
		if !strings.Contains(c, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, c)
		}
	}
	if got := s.upstreams(Green); !slices.Equal(got, []string{"platform-green:8080"}) {
		t.Errorf("green upstreams %v, want the gate file names the Caddyfile checks", got)
	}
	o := string(s.Overlay(Green))
	for _, want := range []string{"image: tale/platform:green", "aliases: [rag-green]", "name: tale_db_data", "external: true"} {
		if !bytes.Contains([]byte(o), []byte(want)) {
			t.Errorf("green overlay lacks %q:\n%s", want, o)
		}
	}
}
