package stack

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"taledeploy/internal/stack/stacktest"
)

// A plain caddy service, as a team has it, is accepted: taledeploy's overlay
// for the stateful project adds what it needs (the admin socket's folder, the
// config it starts with, the sysctl for loads under traffic), as Compose reads it.
func TestPlainCaddyService(t *testing.T) {
	compose := strings.Replace(stacktest.Compose, "    volumes:\n      - ./services/proxy:/etc/caddy:ro\n      - ./run/caddy:/run/caddy\n",
		"    volumes:\n      - ./services/proxy/Caddyfile:/etc/caddy/Caddyfile:ro\n      - caddy_data:/data\n", 1)
	compose = strings.Replace(compose, "volumes:\n  db_data:\n", "volumes:\n  db_data:\n  caddy_data:\n", 1)
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, compose))
	if err != nil {
		t.Fatalf("a plain caddy service is refused: %v", err)
	}
	env, _ := inv.Env("demo")
	s := env.Stack
	if exec.Command("docker", "compose", "version").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker compose is missing: scripts/sandbox.sh up installs it")
		}
		t.Skip("docker compose is not installed; scripts/sandbox.sh up installs it")
	}
	os.WriteFile(filepath.Join(s.Root, "compose.stateful.yml"), s.StatefulOverlay(), 0o644)
	cmd := exec.Command("docker", "compose", "-p", "tale", "-f", "compose.yml", "-f", "compose.stateful.yml", "config", "--format", "json", "proxy")
	cmd.Dir = s.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Entrypoint []string
			Command    []string
			Sysctls    map[string]string
			Volumes    []struct{ Source, Target string }
		}
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	p := cfg.Services["proxy"]
	if !slices.Equal(p.Entrypoint, []string{"caddy"}) || !slices.Equal(p.Command, []string{"run", "--config", "/run/caddy/caddy.json"}) {
		t.Errorf("the proxy runs %q %q, want caddy run --config /run/caddy/caddy.json", p.Entrypoint, p.Command)
	}
	if p.Sysctls["net.ipv4.tcp_migrate_req"] != "1" {
		t.Errorf("sysctls %v", p.Sysctls)
	}
	var targets []string
	for _, v := range p.Volumes {
		targets = append(targets, v.Source+":"+v.Target)
	}
	for _, want := range []string{"/srv/tale/run/caddy:/run/caddy", "caddy_data:/data"} {
		if !slices.ContainsFunc(targets, func(t string) bool { return strings.HasSuffix(t, want) }) {
			t.Errorf("the proxy's volumes %q lack %s", targets, want)
		}
	}
}
