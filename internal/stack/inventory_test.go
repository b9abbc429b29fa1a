package stack

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"taledeploy/internal/stack/stacktest"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, stacktest.Compose))
	if err != nil {
		t.Fatal(err)
	}
	env, err := inv.Env("demo")
	if err != nil {
		t.Fatal(err)
	}
	s := env.Stack
	if s.HealthTimeout.Seconds() != 90 || s.DrainTimeout.Seconds() != 30 || s.Proxy != "proxy" || env.Hosts[0].Port != 2222 {
		t.Errorf("defaults not applied: %+v", s)
	}
	if !filepath.IsAbs(env.Hosts[0].KnownHosts) {
		t.Errorf("known_hosts not resolved against the inventory's folder: %s", env.Hosts[0].KnownHosts)
	}
	if _, err := inv.Env("prdo"); err == nil || !strings.Contains(err.Error(), "no environment") {
		t.Errorf("unknown environment: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct {
		name, inventory, compose string
		want                     []string // all must appear in the error
	}{
		{"unknown key", strings.Replace(stacktest.Inventory, "        port: 2222", "        prot: 2222", 1), stacktest.Compose,
			[]string{"inventory.yaml:6:", `unknown key "prot"`, `did you mean "port"`}},
		{"unknown stack key", strings.Replace(stacktest.Inventory, "      project: tale", "      project: tale\n      colour: blue", 1), stacktest.Compose,
			[]string{"inventory.yaml:12:", `unknown key "colour"`}},
		{"missing address", strings.Replace(stacktest.Inventory, "        address: 127.0.0.1\n", "", 1), stacktest.Compose,
			[]string{"inventory.yaml:4:", "no address", "add address:"}},
		{"missing known_hosts", strings.Replace(stacktest.Inventory, "        known_hosts: known_hosts\n", "", 1), stacktest.Compose,
			[]string{"inventory.yaml:4:", "known_hosts"}},
		{"route to unknown service", strings.Replace(stacktest.Inventory, "service: platform", "service: platfrom", 1), stacktest.Compose,
			[]string{"inventory.yaml:16:", `unknown service "platfrom"`, "platform, rag"}},
		{"service not in compose", strings.Replace(stacktest.Inventory, "[platform, rag]", "[platform, rag, crawler]", 1), stacktest.Compose,
			[]string{"inventory.yaml:13:", `stack.stateless lists service "crawler"`, "has no such service", "db, platform, proxy, rag"}},
		{"relative remote_dir", strings.Replace(stacktest.Inventory, "/srv/tale", "srv/tale", 1), stacktest.Compose,
			[]string{"inventory.yaml:12:", "absolute path"}},
		{"remote_dir escaping", strings.Replace(stacktest.Inventory, "/srv/tale", "/srv/../etc", 1), stacktest.Compose,
			[]string{"remote_dir", "holds .."}},
		{"remote_dir a system folder", strings.Replace(stacktest.Inventory, "/srv/tale", "/etc", 1), stacktest.Compose,
			[]string{"inventory.yaml:12:", `"/etc" is a system folder`}},
		{"remote_dir inside a system folder", strings.Replace(stacktest.Inventory, "/srv/tale", "/usr/local/tale", 1), stacktest.Compose,
			[]string{"inventory.yaml:12:", "system folder"}},
		{"remote_dir the folder of all stacks", strings.Replace(stacktest.Inventory, "/srv/tale", "/srv", 1), stacktest.Compose,
			[]string{"inventory.yaml:12:", "system folder", "/srv/tale"}},
		{"host remote_dir a system folder", strings.Replace(stacktest.Inventory, "        port: 2222\n", "        port: 2222\n        remote_dir: /var/lib\n", 1), stacktest.Compose,
			[]string{"inventory.yaml:4:", "host one: remote_dir", "system folder"}},
		{"environment name a shell command", strings.Replace(stacktest.Inventory, "  demo:", "  \"p;rm -rf /\":", 1), stacktest.Compose,
			[]string{"inventory.yaml:2:", `environment "p;rm -rf /"`, "letters, digits"}},
		{"environment name with =", strings.Replace(stacktest.Inventory, "  demo:", "  a=b:", 1), stacktest.Compose,
			[]string{"inventory.yaml:2:", `environment "a=b"`}},
		{"host name too long", strings.Replace(stacktest.Inventory, "name: one", "name: "+strings.Repeat("h", 100000), 1), stacktest.Compose,
			[]string{"inventory.yaml:4:", "at most 64"}},
		{"stateless listed twice", strings.Replace(stacktest.Inventory, "[platform, rag]", "[platform, rag, platform]", 1), stacktest.Compose,
			[]string{"inventory.yaml:13:", `"platform" is listed twice under stateless`}},
		{"stateful listed twice", strings.Replace(stacktest.Inventory, "[proxy, db]", "[proxy, db, db]", 1), stacktest.Compose,
			[]string{"inventory.yaml:14:", `"db" is listed twice under stateful`}},
		{"route twice", strings.Replace(stacktest.Inventory, "          health_path: /api/health\n", "          health_path: /api/health\n        - {site: \":80\", path: /*, service: rag, port: 8000, health_path: /health}\n", 1), stacktest.Compose,
			[]string{"inventory.yaml:21:", "routed twice", "line 16"}},
		{"a project that is another's color", stacktest.Inventory + "  staging:\n    hosts:\n      - {name: one, address: 127.0.0.1, port: 2222, user: root, known_hosts: known_hosts}\n    stack:\n      project: tale-blue\n      remote_dir: /srv/tale-stg\n      stateless: [platform, rag]\n      stateful: [proxy, db]\n      routes: [{site: \":81\", path: /*, service: platform, port: 8080, health_path: /h}]\n", stacktest.Compose,
			[]string{"environment staging: host one", `"tale-blue" is the color project of "tale"`}},
		{"compose service the inventory does not list", stacktest.Inventory, strings.Replace(stacktest.Compose, "volumes:\n  db_data:", "  adminer:\n    image: adminer\nvolumes:\n  db_data:", 1),
			[]string{"compose.yml:15:", `"adminer" is listed in neither`, "profiles:"}},
		{"compose service set to null", stacktest.Inventory, strings.Replace(stacktest.Compose, "  rag:\n    build: services/rag\n", "  rag: ~\n", 1),
			[]string{"compose.yml:13:", `service "rag" is empty`}},
		{"route to the proxy", strings.Replace(stacktest.Inventory, "service: platform", "service: proxy", 1), stacktest.Compose,
			[]string{"inventory.yaml:16:", `route to "proxy", the proxy itself`}},
		{"route to a stateful service", strings.Replace(stacktest.Inventory, "service: platform", "service: db", 1), stacktest.Compose,
			[]string{"inventory.yaml:16:", `route to "db", a stateful service`}},
		{"one project twice on a machine", stacktest.Inventory + "  staging:\n    hosts:\n      - {name: one, address: 127.0.0.1, port: 2222, user: root, known_hosts: known_hosts}\n    stack:\n      project: tale\n      remote_dir: /srv/tale-stg\n      stateless: [platform, rag]\n      stateful: [proxy, db]\n      routes: [{site: \":81\", path: /*, service: platform, port: 8080, health_path: /h}]\n", stacktest.Compose,
			[]string{"environment demo: host one", `project "tale" is also the project of environment staging`}},
		{"bad duration", strings.Replace(stacktest.Inventory, "      env:", "      drain_timeout: soon\n      env:", 1), stacktest.Compose,
			[]string{"inventory.yaml:", `"soon" is not a duration`}},
		{"proxy not stateful", strings.Replace(stacktest.Inventory, "[proxy, db]", "[db]", 1), stacktest.Compose,
			[]string{"proxy service", "stateful"}},
		{"hostile path in route", strings.Replace(stacktest.Inventory, "path: /*", "path: \"/x {\\n}\"", 1), stacktest.Compose,
			[]string{"inventory.yaml:16:", "braces"}},
		{"address like an option", strings.Replace(stacktest.Inventory, "address: 127.0.0.1", "address: -oProxyCommand", 1), stacktest.Compose,
			[]string{"inventory.yaml:4:", `address "-oProxyCommand" is not an IP, DNS name or ssh config alias`}},
		{"stateless name for an image", strings.Replace(stacktest.Inventory, "[platform, rag]", "[Platform, rag]", 1), stacktest.Compose,
			[]string{"inventory.yaml:13:", `stateless service "Platform"`, "lower-case"}},
		{"stateless name that would inject YAML", strings.Replace(stacktest.Inventory, "[platform, rag]", `["rag:\n    privileged: true", platform]`, 1), stacktest.Compose,
			[]string{"inventory.yaml:13:", "stateless service", "lower-case"}},
		{"stateful name with a space", strings.Replace(stacktest.Inventory, "[proxy, db]", `[proxy, "db x"]`, 1), stacktest.Compose,
			[]string{"inventory.yaml:14:", `stateful service "db x"`}},
		{"not yaml", "environments: [", stacktest.Compose, []string{"inventory.yaml:1:"}},
		{"not yaml further down", strings.Replace(stacktest.Inventory, "      project: tale", "      project: tale\n\t  colour: blue", 1), stacktest.Compose,
			[]string{"inventory.yaml:11:", "tab"}},
		{"not UTF-8", strings.Replace(stacktest.Inventory, "SECRET: s3cret", "SECRET: s3\xffcret", 1), stacktest.Compose,
			[]string{"inventory.yaml:22:", "UTF-8"}},
		{"unknown anchor", strings.Replace(stacktest.Inventory, "stateful: [proxy, db]", "stateful: *services", 1), stacktest.Compose,
			[]string{"inventory.yaml:14:", "unknown anchor"}},
		{"empty", "# nothing yet\n", stacktest.Compose, []string{"inventory.yaml: empty", "environments:"}},
		{"second document", stacktest.Inventory + "---\nenvironments: {}\n", stacktest.Compose,
			[]string{"inventory.yaml:23:", "second YAML document", "remove the ---"}},
		{"port not a number", strings.Replace(stacktest.Inventory, "port: 2222", "port: [2222]", 1), stacktest.Compose,
			[]string{"inventory.yaml:6:", "found a list where a number in range belongs"}},
		{"port too big", strings.Replace(stacktest.Inventory, "port: 2222", "port: 99999999999999999999", 1), stacktest.Compose,
			[]string{"inventory.yaml:6:", "where a number in range belongs"}},
		{"environments as a list", "environments: [a]\n", stacktest.Compose,
			[]string{"inventory.yaml:1:", "found a list where keys belong"}},
		{"hosts as keys", "environments:\n  demo:\n    hosts: {a: b}\n", stacktest.Compose,
			[]string{"inventory.yaml:3:", "found keys where a list belongs"}},
		{"stateless as one word", strings.Replace(stacktest.Inventory, "[platform, rag]", "platform", 1), stacktest.Compose,
			[]string{"inventory.yaml:13:", `found the value "platform" where a list belongs`}},
		{"tab indentation", strings.Replace(stacktest.Inventory, "    hosts:", "\thosts:", 1), stacktest.Compose,
			[]string{"inventory.yaml:3:", "a tab: YAML indents with spaces only"}},
		{"list where keys belong", "environments:\n  demo:\n    hosts: []\n    stack: [a]\n", stacktest.Compose,
			[]string{"inventory.yaml:4:", "found a list where keys belong", "project"}},
		{"value where keys belong", "environments:\n  demo: prod\n", stacktest.Compose,
			[]string{"inventory.yaml:2:", `found the value "prod" where keys belong`, "hosts, stack"}},
		{"empty host entry", strings.Replace(stacktest.Inventory, "    hosts:\n", "    hosts:\n      - ~\n", 1), stacktest.Compose,
			[]string{"inventory.yaml:3:", "empty entry under hosts"}},
		{"empty route entry", strings.Replace(stacktest.Inventory, "      routes:\n", "      routes:\n        -\n", 1), stacktest.Compose,
			[]string{"inventory.yaml:15:", "empty entry under routes"}},
		{"empty environment", "environments:\n  demo:\n  prod: ~\n", stacktest.Compose,
			[]string{"inventory.yaml:2:", `environment "demo" is empty`}},
		{"no environments", "environments: {}\n", stacktest.Compose,
			[]string{"inventory.yaml:1:", "no environments"}},
		{"unknown key merged in", strings.Replace(stacktest.Inventory, "    stack:\n", "    stack:\n      <<: {colour: blue}\n", 1), stacktest.Compose,
			[]string{"inventory.yaml:11:", `unknown key "colour"`}},
		{"duplicate key", strings.Replace(stacktest.Inventory, "      project: tale\n", "      project: tale\n      project: tale2\n", 1), stacktest.Compose,
			[]string{"inventory.yaml:12:", `"project" already defined at line 11`}},
		{"compose file missing", strings.Replace(stacktest.Inventory, "      project: tale\n", "      project: tale\n      compose_file: nope.yml\n", 1), stacktest.Compose,
			[]string{"inventory.yaml:12:", "nope.yml", "no such file", "set stack.compose_file"}},
		{"compose file not yaml", stacktest.Inventory, "services:\n  a: [\n",
			[]string{"inventory.yaml:11:", "compose.yml:2:", "did not find"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(stacktest.Write(t, tc.inventory, tc.compose))
			if err == nil {
				t.Fatalf("accepted")
			}
			if !errors.Is(err, ErrBadInput) {
				t.Errorf("error is not ErrBadInput: %v", err)
			}
			if strings.Contains(err.Error(), "plan.") || strings.Contains(err.Error(), "!!") {
				t.Errorf("error speaks Go, not to people: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// Nothing may point outside the stack folder here, or outside remote_dir on the
// host, whatever the inventory or the compose file says.
func TestLoadRejectsPathsOutsideTheStack(t *testing.T) {
	stackKey := func(key, value string) string {
		return strings.Replace(stacktest.Inventory, "      remote_dir: /srv/tale\n", "      remote_dir: /srv/tale\n      "+key+": "+value+"\n", 1)
	}
	remoteDir := func(v string) string {
		return strings.Replace(stacktest.Inventory, "remote_dir: /srv/tale", "remote_dir: "+v, 1)
	}
	build := func(v string) string { return strings.Replace(stacktest.Compose, "build: services/db", "build: "+v, 1) }
	for _, tc := range []struct {
		name, inventory, compose string
		want                     []string // all must appear in the error
	}{
		{"compose_file above", stackKey("compose_file", "../compose.yml"), stacktest.Compose,
			[]string{"inventory.yaml:13:", "stack.compose_file", `"../compose.yml" holds ..`, "keep it inside the stack folder"}},
		{"compose_file through ..", stackKey("compose_file", "sub/../../compose.yml"), stacktest.Compose,
			[]string{"inventory.yaml:13:", "holds .."}},
		{"compose_file inside but with ..", stackKey("compose_file", "sub/../compose.yml"), stacktest.Compose,
			[]string{"inventory.yaml:13:", "holds .."}},
		{"compose_file absolute", stackKey("compose_file", "/etc/compose.yml"), stacktest.Compose,
			[]string{"inventory.yaml:13:", `"/etc/compose.yml" is absolute`, "write it relative"}},
		{"caddyfile above", stackKey("caddyfile", "../Caddyfile"), stacktest.Compose,
			[]string{"inventory.yaml:13:", "stack.caddyfile", "holds .."}},
		{"caddyfile absolute", stackKey("caddyfile", "/etc/caddy/Caddyfile"), stacktest.Compose,
			[]string{"inventory.yaml:13:", "stack.caddyfile", "is absolute"}},
		{"caddyfile with a line break", stackKey("caddyfile", `"Caddy\nfile"`), stacktest.Compose,
			[]string{"inventory.yaml:13:", "control character"}},
		{"remote_dir root", remoteDir("/"), stacktest.Compose,
			[]string{"inventory.yaml:12:", "root folder", "/srv/tale"}},
		{"remote_dir root in disguise", remoteDir("//"), stacktest.Compose,
			[]string{"inventory.yaml:12:", "root folder"}},
		{"remote_dir relative", remoteDir("srv/tale"), stacktest.Compose,
			[]string{"inventory.yaml:12:", "must be an absolute path", "/srv/tale"}},
		{"remote_dir with ..", remoteDir("/srv/../etc"), stacktest.Compose,
			[]string{"inventory.yaml:12:", "holds .."}},
		{"remote_dir ending in ..", remoteDir("/srv/tale/.."), stacktest.Compose,
			[]string{"inventory.yaml:12:", "holds .."}},
		{"remote_dir not clean", remoteDir("/srv//tale/"), stacktest.Compose,
			[]string{"inventory.yaml:12:", `write it as "/srv/tale"`}},
		{"remote_dir with .", remoteDir("/srv/./tale"), stacktest.Compose,
			[]string{"inventory.yaml:12:", `write it as "/srv/tale"`}},
		{"remote_dir empty", remoteDir(`""`), stacktest.Compose,
			[]string{"inventory.yaml:12:", "is missing"}},
		{"remote_dir missing", strings.Replace(stacktest.Inventory, "      remote_dir: /srv/tale\n", "", 1), stacktest.Compose,
			[]string{"inventory.yaml:11:", "remote_dir is missing"}},
		{"remote_dir with NUL", remoteDir(`"/srv/t\0"`), stacktest.Compose,
			[]string{"inventory.yaml:12:", "control character"}},
		{"build context above", stacktest.Inventory, build("../db"),
			[]string{"compose.yml:10:", `service "db": build context "../db" holds ..`}},
		{"build context through ..", stacktest.Inventory, build("services/../../db"),
			[]string{"compose.yml:10:", "holds .."}},
		{"build context absolute", stacktest.Inventory, build("/srv/db"),
			[]string{"compose.yml:10:", `"/srv/db" is absolute`}},
		{"build context in a mapping", stacktest.Inventory, strings.Replace(stacktest.Compose, "build: services/db", "build:\n      context: ../../db", 1),
			[]string{"compose.yml:11:", "holds .."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(stacktest.Write(t, tc.inventory, tc.compose))
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("Load = %v, want ErrBadInput", err)
			}
			if strings.Contains(err.Error(), "plan.") || strings.Contains(err.Error(), "!!") {
				t.Errorf("error speaks Go, not to people: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestLoadCleansStackPaths(t *testing.T) {
	inv := strings.Replace(stacktest.Inventory, "      remote_dir: /srv/tale\n", "      remote_dir: /srv/tale\n      compose_file: ./compose.yml\n      caddyfile: proxy//Caddyfile\n", 1)
	p := stacktest.Write(t, inv, strings.Replace(stacktest.Compose, "./services/proxy:", "./proxy:", 1))
	os.MkdirAll(filepath.Join(filepath.Dir(p), "proxy"), 0o755)
	os.WriteFile(filepath.Join(filepath.Dir(p), "proxy", "Caddyfile"), []byte(stacktest.Caddyfile), 0o644)
	loaded, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := loaded.Environments["demo"].Stack; s.ComposeFile != "compose.yml" || s.Caddyfile != "proxy/Caddyfile" {
		t.Errorf("compose_file %q, caddyfile %q; want them cleaned", s.ComposeFile, s.Caddyfile)
	}
}

// FuzzParse: the loader never panics, every refusal names the file and a line
// (but for an empty file), and what it accepts is complete and stays inside its
// folders. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(stacktest.Inventory))
	// Aliases that multiply (a "billion laughs"), in env merges and elsewhere.
	laughs := "      env:\n        a0: &a0 {K: v}\n"
	for i := 1; i < 9; i++ {
		laughs = strings.Replace(laughs, "      env:\n", fmt.Sprintf("      env:\n        <<: [*a%[1]d, *a%[1]d, *a%[1]d, *a%[1]d]\n", i-1), 1)
		laughs += fmt.Sprintf("        a%d: &a%d\n          <<: [*a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1)
	}
	f.Add([]byte(strings.Replace(stacktest.Inventory, "      env:\n        SECRET: s3cret\n", laughs, 1)))
	f.Add([]byte("x: &x [a, a, a, a, a, a, a, a, a]\ny: &y [*x, *x, *x, *x, *x, *x, *x, *x, *x]\nz: &z [*y, *y, *y, *y, *y, *y, *y, *y, *y]\nenvironments: {demo: {hosts: *z}}\n"))
	file := stacktest.Write(f, stacktest.Inventory, stacktest.Compose)
	located := regexp.MustCompile("^" + regexp.QuoteMeta(ErrBadInput.Error()+": "+file) + `:[1-9][0-9]*: `)
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		inv, err := Parse(file, data)
		if took := time.Since(start); took > 10*time.Second {
			// Far above any real inventory's milliseconds: aliases or size
			// multiplied the work.
			t.Fatalf("parsing %d bytes took %s", len(data), took)
		}
		if err != nil {
			if inv != nil || !errors.Is(err, ErrBadInput) {
				t.Fatalf("error %v with inventory %v", err, inv)
			}
			if errors.Is(err, errYAMLPanic) {
				// Parse survives it, but a panic while decoding is a bug to see.
				t.Fatalf("decoding panicked: %v", err)
			}
			if !located.MatchString(err.Error()) && !errors.Is(err, errNoDocument) {
				t.Fatalf("error does not start with %s:LINE: %v", file, err)
			}
			return
		}
		for _, e := range inv.Environments {
			s := e.Stack
			if len(e.Hosts) == 0 || s.Compose == nil || len(s.Routes) == 0 || s.RemoteDir == "" {
				t.Fatalf("accepted an incomplete environment: %+v", e)
			}
			for _, h := range e.Hosts {
				if h.Address == "" || h.KnownHosts == "" || bytes.ContainsAny([]byte(h.Address), " ;$`") {
					t.Fatalf("accepted host %+v", h)
				}
			}
			if err := checkRemoteDir(s.RemoteDir, s.Project); err != nil {
				t.Fatalf("accepted remote_dir %q: %v", s.RemoteDir, err)
			}
			for _, p := range []string{s.ComposeFile, s.Caddyfile, s.OverlayFile(Blue), s.OverlayFile(Green)} {
				if _, err := s.RemotePath(p); err != nil {
					t.Fatalf("accepted a path that leaves remote_dir: %v", err)
				}
			}
		}
	})
}

// A host may go without known_hosts only when TALEDEPLOY_KNOWN_HOSTS holds host
// keys; port and user may come from the ssh config, so they stay unset.
func TestLoadKnownHostsFromEnv(t *testing.T) {
	inv := strings.Replace(stacktest.Inventory, "        known_hosts: known_hosts\n", "", 1)
	inv = strings.Replace(inv, "        user: root\n", "", 1)
	inv = strings.Replace(inv, "        port: 2222\n", "", 1)
	inv = strings.Replace(inv, "address: 127.0.0.1", "address: web_1.prod", 1)
	file := stacktest.Write(t, inv, stacktest.Compose)
	if _, err := Load(file); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "TALEDEPLOY_KNOWN_HOSTS") {
		t.Fatalf("Load without known_hosts = %v, want a refusal that names TALEDEPLOY_KNOWN_HOSTS", err)
	}
	loaded, err := LoadWith(file, LoadOptions{KnownHostsFromEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	h := loaded.Environments["demo"].Hosts[0]
	if h.KnownHosts != "" || h.Port != 0 || h.User != "" || h.Address != "web_1.prod" {
		t.Errorf("host %+v: want no known_hosts, port 0 and no user (left to the ssh config)", h)
	}
}

// Fleet commands ask for each host's stack from one goroutine per host.
func TestStackForConcurrent(t *testing.T) {
	inv, err := Load(stacktest.Write(t, stacktest.Inventory, stacktest.Compose))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := inv.Env("demo")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s := env.StackFor([]string{"one", "two"}[i%2]); s.Project != "tale" {
				t.Errorf("StackFor: project %q", s.Project)
			}
		}()
	}
	wg.Wait()
}

func TestEnvBlocks(t *testing.T) {
	envs := func(block string) (map[string]string, error) {
		inv := strings.Replace(stacktest.Inventory, "      env:\n        SECRET: s3cret\n", block, 1)
		inv = strings.Replace(inv, "        known_hosts: known_hosts\n", "        known_hosts: known_hosts\n        env: &base {A: base-a, B: base-b}\n", 1)
		i, err := Load(stacktest.Write(t, inv, stacktest.Compose))
		if err != nil {
			return nil, err
		}
		e, _ := i.Env("demo")
		return e.Stack.Env, nil
	}
	got, err := envs("      env:\n        <<: *base\n        A: own-a\n        EMPTY:\n        N: 5\n")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "own-a", "B": "base-b", "EMPTY": "", "N": "5"}
	if !maps.Equal(got, want) {
		t.Errorf("env = %v, want %v (own keys win over merged ones)", got, want)
	}
	for block, msg := range map[string]string{
		"      env:\n        A: 1\n        A: 2\n": `env key "A" is set twice`,
		"      env:\n        A: [1, 2]\n":          "env A: found a list where a single value belongs",
		"      env: [A=1]\n":                       "env: found a list where keys belong",
	} {
		if _, err := envs(block); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", block, err, msg)
		}
	}
}

// An inventory is read whole on every command: a huge one is refused at once.
func TestInventoryTooBig(t *testing.T) {
	big := stacktest.Inventory + "# " + strings.Repeat("x", 5<<20) + "\n"
	_, err := Load(stacktest.Write(t, big, stacktest.Compose))
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "at most 4MiB") {
		t.Errorf("a 5 MiB inventory: %v", err)
	}
}

// Parsing grows linearly with the number of env keys (yaml.v3's own map
// decoding grows with its square): go test -bench InventoryEnv ./plan
func BenchmarkInventoryEnv(b *testing.B) {
	for _, n := range []int{1000, 16000} {
		var env strings.Builder
		for k := range n {
			fmt.Fprintf(&env, "        K%d: v%d\n", k, k)
		}
		data := []byte(strings.Replace(stacktest.Inventory, "        SECRET: s3cret\n", env.String(), 1))
		p := stacktest.Write(b, stacktest.Inventory, stacktest.Compose)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse(p, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// One bad alias used in several places is reported once.
func TestAliasErrorOnce(t *testing.T) {
	inv := "environments:\n  demo:\n    hosts: []\n    stack:\n      stateless: &m {a: b}\n      stateful: *m\n      routes: *m\n"
	_, err := Load(stacktest.Write(t, inv, stacktest.Compose))
	if err == nil || strings.Count(err.Error(), "found keys where a list belongs") != 1 {
		t.Errorf("an alias misused three times: %v", err)
	}
}

// Without routes: the inventory takes them from the Caddyfile, each with the
// path the service's own healthcheck asks; a Caddyfile with none is refused.
func TestRoutesFromTheCaddyfile(t *testing.T) {
	inv := strings.Replace(stacktest.Inventory, `      routes:
        - site: ":80"
          path: /*
          service: platform
          port: 8080
          health_path: /api/health
`, "", 1)
	if inv == stacktest.Inventory {
		t.Fatal("the fixture has no routes to remove")
	}
	compose := strings.Replace(stacktest.Compose, "    build: services/platform\n", "    build: services/platform\n    healthcheck:\n      test: [CMD, wget, -q, -O, /dev/null, \"http://127.0.0.1:8080/api/health\"]\n", 1)
	loaded, err := Load(stacktest.Write(t, inv, compose))
	if err != nil {
		t.Fatal(err)
	}
	s := loaded.Environments["demo"].Stack
	if len(s.Routes) != 1 {
		t.Fatalf("routes %+v", s.Routes)
	}
	if r := s.Routes[0]; r.Site != ":80" || r.Path != "/*" || r.Service != "platform" || r.Port != 8080 || r.HealthPath != "/api/health" {
		t.Errorf("route %+v", r)
	}

	// The shapes a team writes: several addresses, an {$ENV:default} site,
	// an upstream with no port, a path on reverse_proxy, the to subdirective.
	p := stacktest.Write(t, inv, compose)
	os.WriteFile(filepath.Join(filepath.Dir(p), "services", "proxy", "Caddyfile"), []byte(`example.com, www.example.com {
	reverse_proxy /api/* platform:8080
	reverse_proxy rag
}
{$DOCS_SITE:docs.localhost} {
	reverse_proxy {
		to http://rag:8000
	}
}
`), 0o644)
	loaded, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range loaded.Environments["demo"].Stack.Routes {
		got = append(got, fmt.Sprintf("%s%s -> %s:%d %s", r.Site, r.Path, r.Service, r.Port, r.HealthPath))
	}
	if want := []string{"example.com/api/* -> platform:8080 /api/health", "example.com/* -> rag:80 /", "docs.localhost/* -> rag:8000 /"}; !slices.Equal(got, want) {
		t.Errorf("routes %q, want %q", got, want)
	}

	p = stacktest.Write(t, inv, compose)
	os.WriteFile(filepath.Join(filepath.Dir(p), "services", "proxy", "Caddyfile"), []byte(":80 {\n\tfile_server\n}\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "has no reverse_proxy to a stateless service") {
		t.Errorf("a Caddyfile with no route: %v", err)
	}
}

// A route listed without a site takes the one the Caddyfile serves its
// upstream on, so the window probes through Caddy as visitors come.
func TestRouteSiteFromTheCaddyfile(t *testing.T) {
	inv := strings.Replace(stacktest.Inventory, `        - site: ":80"
          path: /*
          service: platform`, `        - service: platform`, 1)
	if inv == stacktest.Inventory {
		t.Fatal("the fixture's route is not as expected")
	}
	p := stacktest.Write(t, inv, stacktest.Compose)
	os.WriteFile(filepath.Join(filepath.Dir(p), "services", "proxy", "Caddyfile"), []byte("example.com {\n\treverse_proxy platform:8080\n}\n"), 0o644)
	loaded, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if r := loaded.Environments["demo"].Stack.Routes[0]; r.Site != "example.com" || r.Path != "/*" || r.HealthPath != "/api/health" {
		t.Errorf("route %+v", r)
	}
}
