package stack

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"taledeploy/internal/stack/stacktest"
	"testing"
)

// The committed overlays and Caddyfile are exactly what `taledeploy render demo
// --out .` writes: edit the templates and run it, never the rendered files.
func TestCommittedFilesMatchTemplates(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
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
	for _, rel := range []string{"compose.blue.yml", "compose.green.yml", "compose.stateful.yml"} {
		want, _ := os.ReadFile(filepath.Join(out, rel))
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what `taledeploy render demo` writes (%v); run `taledeploy render demo --out .` and commit the result", rel, err)
		}
	}
}

func TestOverlayAndUpstreams(t *testing.T) {
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, stacktest.Compose))
	if err != nil {
		t.Fatal(err)
	}
	s := inv.Environments["demo"].Stack
	if got := s.Upstreams(Green); !slices.Equal(got, []string{"platform-green:8080"}) {
		t.Errorf("green upstreams %v, want the gate file names the Caddyfile checks", got)
	}
	o := string(s.Overlay(Green))
	for _, want := range []string{"image: tale/platform:green", "aliases: [rag-green]", "name: tale_db_data", "external: true"} {
		if !bytes.Contains([]byte(o), []byte(want)) {
			t.Errorf("green overlay lacks %q:\n%s", want, o)
		}
	}
}

// render never replaces a file it did not write, and writes nothing then;
// the Caddyfile is never among what it writes.
func TestRenderKeepsHandWrittenFiles(t *testing.T) {
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, stacktest.Compose))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	dir := t.TempDir()
	mine := filepath.Join(dir, "compose.stateful.yml")
	os.WriteFile(mine, []byte("services: {}\n"), 0o644)
	if _, err := env.Stack.RenderTo(dir); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "was not rendered by taledeploy") {
		t.Fatalf("render over a hand-written file: %v", err)
	}
	if data, _ := os.ReadFile(mine); !strings.HasPrefix(string(data), "services: {}") {
		t.Errorf("the hand-written file was replaced")
	}
	if _, err := os.Stat(filepath.Join(dir, "compose.blue.yml")); err == nil {
		t.Errorf("an overlay was written although render refused")
	}
	// Its own files it renders again.
	os.Remove(mine)
	for range 2 {
		written, err := env.Stack.RenderTo(dir)
		if err != nil {
			t.Fatalf("render into its own files: %v", err)
		}
		if slices.ContainsFunc(written, func(p string) bool { return strings.Contains(p, "Caddyfile") }) {
			t.Errorf("render wrote %q", written)
		}
	}
}

// render connects to nothing, so hosts need no SSH files for it.
func TestRenderNeedsNoSSHFiles(t *testing.T) {
	p := stacktest.Write(t, strings.Replace(stacktest.Inventory, "        known_hosts: known_hosts\n", "", 1), stacktest.Compose)
	if _, err := LoadWith(p, LoadOptions{NoSSH: true}); err != nil {
		t.Errorf("render's load: %v", err)
	}
	if _, err := Load(p); err == nil {
		t.Errorf("a push's load accepted a host without known_hosts")
	}
}
