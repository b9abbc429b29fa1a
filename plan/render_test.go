package plan

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
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

func TestCaddyfileOrdersLiveColorFirst(t *testing.T) {
	inv, err := Load(writeStack(t, goodInventory, goodCompose))
	if err != nil {
		t.Fatal(err)
	}
	s := inv.Environments["demo"].Stack
	for _, live := range []string{Blue, Green} {
		c := string(s.CaddyfileFor(live))
		want := "reverse_proxy platform-" + live + ":8080 platform-" + Other(live) + ":8080"
		if !bytes.Contains([]byte(c), []byte(want)) {
			t.Errorf("Caddyfile for %s lacks %q:\n%s", live, want, c)
		}
	}
	o := string(s.Overlay(Green))
	for _, want := range []string{"image: tale/platform:green", "aliases: [rag-green]", "name: tale_db_data", "external: true"} {
		if !bytes.Contains([]byte(o), []byte(want)) {
			t.Errorf("green overlay lacks %q:\n%s", want, o)
		}
	}
}
