package stack

import (
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
