package stack

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	for _, want := range []string{"container_name: !reset null", "ports: !reset []", "depends_on:\n      db: !reset"} {
		if !strings.Contains(overlay, want) {
			t.Errorf("overlay lacks %q:\n%s", want, overlay)
		}
	}
	if strings.Count(overlay, "!reset") != 3 {
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

// A compose file that shares settings through a YAML anchor and extends is
// read as Compose reads it: the build context comes from the anchor (and is
// uploaded), and what the anchor publishes is reset for each color.
func TestComposeAnchorsAndExtends(t *testing.T) {
	compose := `x-app: &app
  restart: unless-stopped
  container_name: shared
  ports: ["127.0.0.1:${PORT:-3000}:8080"]
services:
  proxy:
    image: caddy
    volumes:
      - ./services/proxy:/etc/caddy:ro
      - ./run/caddy:/run/caddy
  db:
    build: services/db
  platform:
    <<: *app
    build: services/platform
  rag:
    extends:
      service: platform
    build: services/rag
volumes:
  db_data:
`
	p := stacktest.Write(t, stacktest.Inventory, compose)
	for _, svc := range []string{"db", "platform", "rag"} {
		dir := filepath.Join(filepath.Dir(p), "services", svc)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	}
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	s := env.Stack
	platform, rag := s.Compose.Services["platform"], s.Compose.Services["rag"]
	if platform.BuildContext != "services/platform" || platform.ContainerName != 13 || platform.Ports != 13 {
		t.Errorf("platform read as %+v; want its build, and the anchor's container_name and ports at its line", platform)
	}
	if rag.BuildContext != "services/rag" || rag.ContainerName == 0 || rag.Ports == 0 {
		t.Errorf("rag read as %+v; want what it extends", rag)
	}
	files, err := s.ReleaseFiles()
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, f := range files {
		rels = append(rels, f.Rel)
	}
	// The stateless contexts go to the build as streams, never uploaded; the
	// build: the extends gave rag is read as its own.
	for _, want := range []string{"services/platform/Dockerfile", "services/rag/Dockerfile"} {
		if slices.Contains(rels, want) {
			t.Errorf("release files %q hold %s", rels, want)
		}
	}
	if got := s.HostBuilt(); !slices.Equal(got, []string{"platform", "rag"}) {
		t.Errorf("the host builds %v, want platform and rag", got)
	}
	if got := s.Neutralised(); len(got) != 4 {
		t.Errorf("neutralised %q, want container_name and ports of platform and rag", got)
	}
}

// The files a compose file names besides itself go to the host with it: env
// files readable by their owner only; one outside the stack folder is refused
// with its line; an optional one that is missing is left out.
func TestComposeRefsAreUploaded(t *testing.T) {
	compose := strings.Replace(stacktest.Compose, "    build: services/platform", `    build: services/platform
    env_file:
      - .env.platform
      - path: .env.local
        required: false`, 1)
	p := stacktest.Write(t, stacktest.Inventory, compose)
	dir := filepath.Dir(p)
	for _, svc := range []string{"db", "platform", "rag"} {
		os.MkdirAll(filepath.Join(dir, "services", svc), 0o755)
		os.WriteFile(filepath.Join(dir, "services", svc, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, ".env.platform"), []byte("API_KEY=s3cret\n"), 0o644)
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	files, err := env.Stack.ReleaseFiles()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(files, func(f ReleaseFile) bool { return f.Rel == ".env.platform" })
	if i < 0 || files[i].Mode != 0o600 {
		t.Fatalf("env_file not uploaded as 0600: %+v", files)
	}
	if slices.ContainsFunc(files, func(f ReleaseFile) bool { return f.Rel == ".env.local" }) {
		t.Errorf("a missing optional env_file is uploaded")
	}

	outside := strings.Replace(stacktest.Compose, "    build: services/platform", "    build: services/platform\n    env_file: ../secrets.env", 1)
	_, err = Load(stacktest.Write(t, stacktest.Inventory, outside))
	if err == nil || !strings.Contains(err.Error(), "compose.yml:13: env_file of platform") || !strings.Contains(err.Error(), "holds ..") {
		t.Errorf("env_file outside the stack: %v", err)
	}
}

// Services on the team's own network keep calling each other by name: each
// color's stateless services are on the color's network only, and the stateful
// ones join both colors' networks besides their own, as Compose reads it.
func TestColorNetworks(t *testing.T) {
	compose := strings.NewReplacer(
		"    image: caddy\n", "    image: caddy\n    networks: [internal]\n",
		"    build: services/db\n", "    build: services/db\n    networks:\n      internal:\n        aliases: [postgres]\n",
		"    build: services/platform\n", "    build: services/platform\n    networks:\n      internal:\n        aliases: [web]\n      infra: {}\n",
		"volumes:\n  db_data:\n", "volumes:\n  db_data:\nnetworks:\n  internal: {}\n  infra:\n    external: true\n    name: shared-infra\n",
	).Replace(stacktest.Compose)
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, compose))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	s := env.Stack
	if exec.Command("docker", "compose", "version").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker compose is missing: scripts/sandbox.sh up installs it")
		}
		t.Skip("docker compose is not installed; scripts/sandbox.sh up installs it")
	}
	dir := s.Root
	os.WriteFile(filepath.Join(dir, "compose.blue.yml"), s.Overlay(Blue), 0o644)
	os.WriteFile(filepath.Join(dir, "compose.stateful.yml"), s.StatefulOverlay(), 0o644)
	os.MkdirAll(filepath.Join(dir, ".taledeploy", "env"), 0o755)
	os.WriteFile(filepath.Join(dir, ".taledeploy", "env", "stack.env"), nil, 0o600)
	type config struct {
		Services map[string]struct {
			Networks map[string]*struct{ Aliases []string }
		}
		Networks map[string]struct {
			Name     string
			External bool
		}
	}
	read := func(project, overlay string, services ...string) config {
		cmd := exec.Command("docker", append([]string{"compose", "-p", project, "-f", "compose.yml", "-f", overlay, "config", "--format", "json"}, services...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("compose config: %v\n%s", err, out)
		}
		var c config
		if err := json.Unmarshal(out, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	blue := read("tale-blue", "compose.blue.yml", "platform", "rag")
	for name, svc := range blue.Services {
		var nets []string
		for n := range svc.Networks {
			nets = append(nets, blue.Networks[n].Name)
		}
		slices.Sort(nets)
		want := []string{"tale-blue"}
		if name == "platform" {
			want = []string{"shared-infra", "tale-blue"} // an external network stays
		}
		if !slices.Equal(nets, want) {
			t.Errorf("blue %s is on networks %q, want %q", name, nets, want)
		}
	}
	if got := s.Neutralised(); !slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, "platform: networks internal ") }) ||
		!slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, "platform: keeps its external networks infra") }) {
		t.Errorf("plan says %q", got)
	}
	if a := blue.Services["platform"].Networks["taledeploy-color"]; a == nil || !slices.Equal(a.Aliases, []string{"platform-blue", "web"}) {
		t.Errorf("blue platform's aliases: %+v, want platform-blue and its own web", a)
	}
	if n := blue.Networks["taledeploy-color"]; !n.External {
		t.Errorf("the color's network is not external: %+v", n)
	}
	st := read("tale", "compose.stateful.yml", "proxy", "db")
	for name, svc := range st.Services {
		var nets []string
		for n := range svc.Networks {
			nets = append(nets, st.Networks[n].Name)
		}
		slices.Sort(nets)
		if !slices.Equal(nets, []string{"tale-blue", "tale-green", "tale_internal"}) {
			t.Errorf("stateful %s is on networks %q, want its own and both colors'", name, nets)
		}
	}
	for _, n := range []string{"internal", "taledeploy-blue", "taledeploy-green"} {
		if a := st.Services["db"].Networks[n]; a == nil || !slices.Equal(a.Aliases, []string{"postgres"}) {
			t.Errorf("db's alias on %s: %+v, want postgres", n, a)
		}
	}
}

// A read-only bind mount of the project (config) goes with the release; a
// read-write one is data whose live copy is the host's, so it never does; one
// that leaves the stack folder is refused with its line.
func TestBindMountsUploaded(t *testing.T) {
	compose := strings.Replace(stacktest.Compose, "    build: services/db\n", `    build: services/db
    volumes:
      - ./conf/db:/etc/db:ro
      - type: bind
        source: ./conf/extra.conf
        target: /etc/extra.conf
        read_only: true
      - ./pgdata:/var/lib/postgresql/data
      - /var/run/docker.sock:/var/run/docker.sock:ro
`, 1)
	p := stacktest.Write(t, stacktest.Inventory, compose)
	dir := filepath.Dir(p)
	for _, f := range []string{"conf/db/a.conf", "conf/db/sub/b.conf", "conf/extra.conf", "pgdata/PG_VERSION",
		"services/db/Dockerfile", "services/platform/Dockerfile", "services/rag/Dockerfile"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	files, err := env.Stack.ReleaseFiles()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		if strings.HasPrefix(f.Rel, "conf/") || strings.HasPrefix(f.Rel, "pgdata/") {
			got = append(got, f.Rel)
		}
	}
	slices.Sort(got)
	if want := []string{"conf/db/a.conf", "conf/db/sub/b.conf", "conf/extra.conf"}; !slices.Equal(got, want) {
		t.Errorf("uploads %q, want the read-only mounts' files %q", got, want)
	}

	outside := strings.Replace(stacktest.Compose, "    build: services/db\n", "    build: services/db\n    volumes: [\"../shared:/etc/shared:ro\"]\n", 1)
	if _, err := Load(stacktest.Write(t, stacktest.Inventory, outside)); err == nil || !strings.Contains(err.Error(), "compose.yml:11:") || !strings.Contains(err.Error(), "../shared") {
		t.Errorf("a bind mount from outside the stack: %v", err)
	}
}

// links: to a stateful service would have Compose start it in the color's
// project: the overlay keeps only the links to stateless services. An empty
// ports: list is nothing to reset.
func TestOverlayLinksAndEmptyPorts(t *testing.T) {
	compose := strings.Replace(stacktest.Compose, "    build: services/rag\n", "    build: services/rag\n    ports: []\n    links: [db, \"platform:web\"]\n", 1)
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, compose))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	s := env.Stack
	overlay := string(s.Overlay(Blue))
	if !strings.Contains(overlay, `links: !override ["platform:web"]`) || strings.Contains(overlay, "ports: !reset") {
		t.Errorf("overlay:\n%s", overlay)
	}
	if got := s.Neutralised(); len(got) != 1 || !strings.HasPrefix(got[0], "rag: links to stateful services") {
		t.Errorf("neutralised %q", got)
	}
	if exec.Command("docker", "compose", "version").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker compose is missing: scripts/sandbox.sh up installs it")
		}
		t.Skip("docker compose is not installed; scripts/sandbox.sh up installs it")
	}
	os.WriteFile(filepath.Join(s.Root, "compose.blue.yml"), []byte(overlay), 0o644)
	os.MkdirAll(filepath.Join(s.Root, ".taledeploy", "env"), 0o755)
	os.WriteFile(filepath.Join(s.Root, ".taledeploy", "env", "stack.env"), nil, 0o600)
	cmd := exec.Command("docker", "compose", "-p", "tale-blue", "-f", "compose.yml", "-f", "compose.blue.yml", "config", "--format", "json", "platform", "rag")
	cmd.Dir = s.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct{ Links []string }
	}
	json.Unmarshal(out, &cfg)
	if _, ok := cfg.Services["db"]; ok || !slices.Equal(cfg.Services["rag"].Links, []string{"platform:web"}) {
		t.Errorf("Compose would run %v with rag's links %q", slices.Sorted(maps.Keys(cfg.Services)), cfg.Services["rag"].Links)
	}
}

// A compose file whose services all come from include: is read as Compose
// reads it.
func TestIncludeOnlyComposeFile(t *testing.T) {
	p := stacktest.Write(t, stacktest.Inventory, "include:\n  - services.yml\n")
	os.WriteFile(filepath.Join(filepath.Dir(p), "services.yml"), []byte(stacktest.Compose), 0o644)
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	if names := env.Stack.Compose.ServiceNames(); !slices.Equal(names, []string{"db", "platform", "proxy", "rag"}) {
		t.Errorf("services %q", names)
	}
}

// On a host whose engine has API 1.44 or newer, a service with a start
// period is health-checked every second while it starts; an older engine
// refuses the field, so it gets the overlay as before. A service that sets
// its own start_interval keeps it.
func TestOverlayStartInterval(t *testing.T) {
	compose := strings.Replace(stacktest.Compose, "    build: services/platform", `    build: services/platform
    healthcheck: &hc
      test: ["CMD", "true"]
      interval: 30s
      start_period: 40s`, 1)
	compose = strings.Replace(compose, "    build: services/rag", `    build: services/rag
    healthcheck:
      <<: *hc
      start_interval: 3s`, 1)
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, compose))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	s := env.Stack
	for _, api := range []string{"", "1.41", "1.43", "1.44", "1.56", "2.0"} {
		s.EngineAPI = api
		got := strings.Count(string(s.Overlay(Blue)), "start_interval: 1s")
		if want := map[bool]int{true: 1}[APIAtLeast(api, "1.44")]; got != want {
			t.Errorf("API %q: %d services get start_interval, want %d", api, got, want)
		}
	}
	if APIAtLeast("1.43", "1.44") || !APIAtLeast("1.44", "1.44") || !APIAtLeast("1.100", "1.44") || APIAtLeast("x", "1.44") {
		t.Error("APIAtLeast compares wrongly")
	}

	if exec.Command("docker", "compose", "version").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker compose is missing: scripts/sandbox.sh up installs it")
		}
		t.Skip("docker compose is not installed; scripts/sandbox.sh up installs it")
	}
	s.EngineAPI = "1.56"
	dir := filepath.Dir(s.Root + "/")
	os.WriteFile(filepath.Join(dir, "compose.blue.yml"), s.Overlay(Blue), 0o644)
	os.MkdirAll(filepath.Join(dir, ".taledeploy", "env"), 0o755)
	os.WriteFile(filepath.Join(dir, ".taledeploy", "env", "stack.env"), nil, 0o600)
	cmd := exec.Command("docker", "compose", "-p", "tale-blue", "-f", "compose.yml", "-f", "compose.blue.yml", "config", "--format", "json")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Healthcheck struct {
				Interval      string `json:"interval"`
				StartPeriod   string `json:"start_period"`
				StartInterval string `json:"start_interval"`
			} `json:"healthcheck"`
		}
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if hc := cfg.Services["platform"].Healthcheck; hc.StartInterval != "1s" || hc.Interval != "30s" || hc.StartPeriod != "40s" {
		t.Errorf("Compose sees platform's healthcheck as %+v", hc)
	}
	if hc := cfg.Services["rag"].Healthcheck; hc.StartInterval != "3s" {
		t.Errorf("Compose sees rag's healthcheck as %+v", hc)
	}
}
