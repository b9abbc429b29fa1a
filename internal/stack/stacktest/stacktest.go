// Package stacktest holds a small valid stack for tests of the packages that
// read or deploy one.
package stacktest

import (
	"os"
	"path/filepath"
	"testing"
)

// Compose is a compose file with a proxy, a database and two stateless services.
const Compose = `services:
  proxy:
    image: caddy
    container_name: proxy
    ports: ["80:80"]
    volumes:
      - ./services/proxy:/etc/caddy:ro
      - ./run/caddy:/run/caddy
  db:
    build: services/db
  platform:
    build: services/platform
  rag:
    build: services/rag
volumes:
  db_data:
`

// Caddyfile is the team's Caddyfile for Compose: its site proxies to platform.
const Caddyfile = `:80 {
	encode gzip
	reverse_proxy platform:8080
}
`

// Inventory is an inventory for Compose with one environment, demo.
const Inventory = `environments:
  demo:
    hosts:
      - name: one
        address: 127.0.0.1
        port: 2222
        user: root
        identity_file: id
        known_hosts: known_hosts
    stack:
      project: tale
      remote_dir: /srv/tale
      stateless: [platform, rag]
      stateful: [proxy, db]
      routes:
        - site: ":80"
          path: /*
          service: platform
          port: 8080
          health_path: /api/health
      env:
        SECRET: s3cret
`

// Write writes inventory and compose into a new folder and returns the inventory path.
func Write(t testing.TB, inventory, compose string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yml"), []byte(compose), 0o644)
	os.MkdirAll(filepath.Join(dir, "services", "proxy"), 0o755)
	os.WriteFile(filepath.Join(dir, "services", "proxy", "Caddyfile"), []byte(Caddyfile), 0o644)
	p := filepath.Join(dir, "inventory.yaml")
	os.WriteFile(p, []byte(inventory), 0o644)
	return p
}
