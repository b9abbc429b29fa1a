package stack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"taledeploy/internal/stack/stacktest"
)

// A plain caddy service is refused at load with what to add, not later on
// the host; the long volume syntax counts as the short one does.
func TestProxyServiceNeeds(t *testing.T) {
	volumes := "    volumes:\n      - ./services/proxy:/etc/caddy:ro\n      - ./run/caddy:/run/caddy\n"
	for _, tc := range []struct {
		name, volumes string
		want          []string // empty: accepted
	}{
		{"both", volumes, nil},
		{"long syntax", "    volumes:\n      - {type: bind, source: ./services/proxy, target: /etc/caddy}\n      - type: bind\n        source: ./run/caddy\n        target: /run/caddy\n", nil},
		{"none", "", []string{"compose.yml:2:", `the proxy service "proxy" needs these volumes`, "./services/proxy:/etc/caddy:ro", "./run/caddy:/run/caddy"}},
		{"no admin socket", "    volumes:\n      - ./services/proxy:/etc/caddy:ro\n      - caddy_data:/data\n", []string{"compose.yml:6:", "./run/caddy:/run/caddy", "admin socket"}},
		{"the file, not its folder", "    volumes:\n      - ./services/proxy/Caddyfile:/etc/caddy/Caddyfile:ro\n      - ./run/caddy:/run/caddy\n", []string{"compose.yml:7:", "mounts the Caddyfile itself", "mount its folder instead"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compose := strings.Replace(stacktest.Compose, volumes, tc.volumes, 1)
			_, err := Load(stacktest.Write(t, stacktest.Inventory, compose))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
}

// The volume lines suggested are written as the compose file's own folder
// sees them, and a Caddyfile in the stack folder itself is refused: mounting
// that folder would show the proxy every secret.
func TestProxyServiceNeedsWhereTheFilesAre(t *testing.T) {
	inv := strings.Replace(stacktest.Inventory, "      remote_dir: /srv/tale\n", "      remote_dir: /srv/tale\n      compose_file: deploy/compose.yml\n", 1)
	p := stacktest.Write(t, inv, "services: {}\n")
	dir := filepath.Dir(p)
	os.MkdirAll(filepath.Join(dir, "deploy"), 0o755)
	compose := strings.Replace(stacktest.Compose, "    volumes:\n      - ./services/proxy:/etc/caddy:ro\n      - ./run/caddy:/run/caddy\n", "", 1)
	os.WriteFile(filepath.Join(dir, "deploy", "compose.yml"), []byte(strings.ReplaceAll(compose, "build: services/", "build: ../services/")), 0o644)
	_, err := Load(p)
	for _, want := range []string{"- ../services/proxy:/etc/caddy:ro", "- ../run/caddy:/run/caddy"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}

	atRoot := strings.Replace(stacktest.Inventory, "      remote_dir: /srv/tale\n", "      remote_dir: /srv/tale\n      caddyfile: Caddyfile\n", 1)
	compose = strings.Replace(stacktest.Compose, "./services/proxy:/etc/caddy:ro", ".:/etc/caddy:ro", 1)
	if _, err := Load(stacktest.Write(t, atRoot, compose)); err == nil || !strings.Contains(err.Error(), "keep the Caddyfile in a folder of its own") {
		t.Errorf("a Caddyfile in the stack folder: %v", err)
	}
}
