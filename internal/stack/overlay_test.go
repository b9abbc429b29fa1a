package stack

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"taledeploy/internal/stack/stacktest"
)

// A team's compose file keeps what it has for local use (container_name,
// published ports, depends_on on the database): the color overlay resets what
// cannot run twice, and Compose itself reads the pair that way.
func TestOverlayResetsWhatCannotRunTwice(t *testing.T) {
	compose := strings.Replace(stacktest.Compose, "    build: services/platform", `    build: services/platform
    container_name: platform
    ports: ["3000:8080"]
    depends_on: [db, rag]`, 1)
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, compose))
	if err != nil {
		t.Fatalf("a stateless service with container_name, ports and depends_on is refused: %v", err)
	}
	env, _ := inv.Env("demo")
	s := env.Stack
	overlay := string(s.Overlay(Green))
	for _, want := range []string{"container_name: !reset null", "ports: !reset []", "depends_on: !override\n      rag:\n        condition: service_started"} {
		if !strings.Contains(overlay, want) {
			t.Errorf("overlay lacks %q:\n%s", want, overlay)
		}
	}
	if strings.Count(overlay, "!reset") != 2 {
		t.Errorf("rag, which has neither, is reset too:\n%s", overlay)
	}
	got := s.Neutralised()
	if len(got) != 3 || !strings.HasPrefix(got[0], "platform: container_name") || !strings.HasPrefix(got[1], "platform: ports") || !strings.HasPrefix(got[2], "platform: depends_on db ") {
		t.Errorf("neutralised %q", got)
	}

	// What Compose makes of the file and the overlay together.
	if exec.Command("docker", "compose", "version").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker compose is missing: scripts/sandbox.sh up installs it")
		}
		t.Skip("docker compose is not installed; scripts/sandbox.sh up installs it")
	}
	dir := filepath.Dir(s.Root + "/")
	os.WriteFile(filepath.Join(dir, "compose.green.yml"), []byte(overlay), 0o644)
	os.MkdirAll(filepath.Join(dir, ".taledeploy", "env"), 0o755)
	os.WriteFile(filepath.Join(dir, ".taledeploy", "env", "stack.env"), nil, 0o600)
	cmd := exec.Command("docker", "compose", "-p", "tale-green", "-f", "compose.yml", "-f", "compose.green.yml", "config", "--format", "json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TALEDEPLOY_RELEASE=r1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			ContainerName string                    `json:"container_name"`
			Ports         []any                     `json:"ports"`
			DependsOn     map[string]map[string]any `json:"depends_on"`
		}
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	p := cfg.Services["platform"]
	if p.ContainerName != "" || len(p.Ports) != 0 || len(p.DependsOn) != 1 || p.DependsOn["rag"] == nil {
		t.Errorf("Compose sees platform with container_name %q, ports %v, depends_on %v; want none, none, rag", p.ContainerName, p.Ports, p.DependsOn)
	}
}
