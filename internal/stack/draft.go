package stack

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Draft is what `taledeploy init` guesses from a project's compose file and
// Caddyfile: the stack settings an inventory needs, each service with the
// reason for its kind, so the user can check the guess.
type Draft struct {
	Project, ComposeFile, Caddyfile, Proxy string
	Services                               []DraftService
	Routes                                 []Route
	Env                                    []string // ${VAR}s the compose file reads
	Optional                               []string // those of them it gives a default
}

// DraftService is one compose service and why it was judged stateful or not.
type DraftService struct {
	Name, Why string
	Stateful  bool
}

// databaseImage names images that keep data: they run once, never per color.
var databaseImage = regexp.MustCompile(`(?i)(^|/)(postgres|postgis|timescale|mysql|mariadb|mongo|redis|valkey|keydb|memcached|elasticsearch|opensearch|rabbitmq|nats|kafka|zookeeper|minio|clickhouse|cassandra|neo4j|influxdb|meilisearch|qdrant|weaviate|etcd)`)

var composeVarRE = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-)?|\$([A-Za-z_][A-Za-z0-9_]*)`)

// healthURLRE finds the path of an HTTP health check: wget/curl http://host:port/path.
var healthURLRE = regexp.MustCompile(`https?://[^/\s"']+(/[^\s"']*)`)

// DraftFrom reads the compose file (and the Caddyfile, when there is one) in
// dir and guesses the stack.
func DraftFrom(dir, composeFile, caddyfile string) (*Draft, error) {
	data, err := os.ReadFile(filepath.Join(dir, composeFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v; run init in the folder of your compose file, or pass --compose", ErrBadInput, err)
	}
	var root yaml.Node
	if err := yamlSafely(func() error { return yaml.Unmarshal(data, &root) }); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, yamlError(composeFile, data, err))
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrBadInput, composeFile)
	}
	top := root.Content[0]
	svcs := mapValue(top, "services")
	if svcs == nil || svcs.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: %s has no services: map", ErrBadInput, composeFile)
	}
	named := map[string]bool{}
	if vols := mapValue(top, "volumes"); vols != nil {
		for _, k := range mappingKeys(vols) {
			named[k.Value] = true
		}
	}
	abs, _ := filepath.Abs(dir)
	d := &Draft{Project: projectName(filepath.Base(abs)), ComposeFile: composeFile, Caddyfile: caddyfile}
	health := map[string]string{}
	for _, k := range mappingKeys(svcs) {
		name, v := k.Value, mapValue(svcs, k.Value)
		image := scalar(merged(v, "image"))
		var volume string
		if vs := merged(v, "volumes"); vs != nil {
			for _, m := range vs.Content {
				src := scalar(m)
				if m.Kind == yaml.MappingNode {
					src = scalar(mapValue(m, "source"))
				}
				if src, _, ok := strings.Cut(src, ":"); ok && named[src] || named[src] {
					volume = src
				}
			}
		}
		s := DraftService{Name: name}
		switch {
		case strings.Contains(strings.ToLower(image), "caddy") || name == "caddy" || name == "proxy":
			s.Stateful, s.Why = true, "the proxy: runs once and switches traffic between the colors"
			if d.Proxy == "" {
				d.Proxy = name
			}
		case volume != "":
			s.Stateful, s.Why = true, fmt.Sprintf("keeps data in the named volume %s", volume)
		case databaseImage.MatchString(image):
			s.Stateful, s.Why = true, fmt.Sprintf("a data store (image %s)", image)
		default:
			s.Why = "no named volume and not a data store: runs in two colors during a push"
		}
		if hc := merged(v, "healthcheck"); hc != nil {
			var test []string
			if t := mapValue(hc, "test"); t != nil {
				test = append(test, scalar(t))
				for _, c := range t.Content {
					test = append(test, scalar(c))
				}
			}
			if m := healthURLRE.FindStringSubmatch(strings.Join(test, " ")); m != nil {
				health[name] = m[1]
			}
		}
		d.Services = append(d.Services, s)
	}
	required := map[string]bool{}
	for _, m := range composeVarRE.FindAllStringSubmatch(string(data), -1) {
		v := m[1] + m[3]
		if v == "" || strings.HasPrefix(v, "TALEDEPLOY_") {
			continue // $$ or taledeploy's own
		}
		if !slices.Contains(d.Env, v) {
			d.Env = append(d.Env, v)
		}
		required[v] = required[v] || m[2] == ""
	}
	sort.Strings(d.Env)
	for _, v := range d.Env {
		if !required[v] {
			d.Optional = append(d.Optional, v)
		}
	}
	if caddyfile != "" {
		if text, err := os.ReadFile(filepath.Join(dir, caddyfile)); err == nil {
			d.Routes = caddyRoutes(text, d, health, nil)
		}
	}
	return d, nil
}

// merged is the value of key in mapping m, or in what m merges in (<<: *base).
func merged(m *yaml.Node, key string) *yaml.Node {
	for m != nil && m.Kind == yaml.AliasNode {
		m = m.Alias
	}
	if v := mapValue(m, key); v != nil {
		return v
	}
	if base := mapValue(m, "<<"); base != nil {
		for base.Kind == yaml.AliasNode {
			base = base.Alias
		}
		if base.Kind == yaml.SequenceNode {
			for _, b := range base.Content {
				if v := merged(b, key); v != nil {
					return v
				}
			}
			return nil
		}
		return merged(base, key)
	}
	return nil
}

func scalar(n *yaml.Node) string {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// projectName makes a compose project name of a folder name.
func projectName(s string) string {
	s = strings.ToLower(s)
	s = regexp.MustCompile(`[^a-z0-9_-]+`).ReplaceAllString(s, "-")
	s = strings.Trim(s, "-_")
	if s == "" {
		return "app"
	}
	return s
}

// siteAddress is the first address of a site block's opening line
// ("example.com, www.example.com {"), with an {$ENV:default} placeholder
// filled from env when it has the variable, else its default.
func siteAddress(line string, env map[string]string) string {
	addr := strings.TrimSuffix(strings.Fields(line)[0], ",")
	if v, ok := strings.CutPrefix(addr, "{$"); ok {
		name, def, _ := strings.Cut(strings.TrimSuffix(v, "}"), ":")
		if val := env[name]; val != "" && !strings.ContainsAny(val, "${} ") {
			return val
		}
		return cmp.Or(def, "localhost")
	}
	return addr
}

// caddyRoutes reads the reverse_proxy directives of a Caddyfile that send
// traffic to a stateless service: the site they are in, the path of the
// handle block around them, the service and its port. It reads tokens, not
// Caddy's full grammar: enough for a draft that `plan` then checks.
func caddyRoutes(text []byte, d *Draft, health, env map[string]string) []Route {
	stateless := map[string]bool{}
	for _, s := range d.Services {
		if !s.Stateful {
			stateless[s.Name] = true
		}
	}
	var routes []Route
	var stack []string // the line that opened each block
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if f[0] == "reverse_proxy" || f[0] == "to" && len(stack) > 0 && strings.HasPrefix(stack[len(stack)-1], "reverse_proxy") {
			for _, up := range f[1:] {
				if up == "{" || strings.HasPrefix(up, "@") || strings.HasPrefix(up, "/") || up == "*" {
					continue // a matcher, or the block
				}
				port := "80"
				if strings.HasPrefix(up, "https://") {
					port = "443"
				}
				up = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(up, "http://"), "https://"), "h2c://")
				host, p, ok := strings.Cut(up, ":")
				if ok {
					port = p
				}
				// A Caddyfile taledeploy rendered names the colors' aliases.
				if base, ok := strings.CutSuffix(host, "-"+Blue); ok && stateless[base] {
					host = base
				} else if base, ok := strings.CutSuffix(host, "-"+Green); ok && stateless[base] {
					host = base
				}
				if !stateless[host] {
					continue
				}
				r := Route{Service: host, Site: ":80", Path: "/*", HealthPath: "/"}
				fmt.Sscan(port, &r.Port)
				if len(stack) > 0 {
					r.Site = siteAddress(stack[0], env)
				}
				for _, open := range stack[1:] {
					if g := strings.Fields(open); len(g) >= 3 && (g[0] == "handle" || g[0] == "handle_path") && strings.HasPrefix(g[1], "/") {
						r.Path = g[1]
					}
				}
				if len(f) > 2 && strings.HasPrefix(f[1], "/") && f[0] == "reverse_proxy" {
					r.Path = f[1] // reverse_proxy /api/* platform:8080
				}
				if h := health[host]; h != "" {
					r.HealthPath = h
				}
				if !slices.ContainsFunc(routes, func(o Route) bool { return o.Site == r.Site && o.Path == r.Path }) {
					routes = append(routes, r)
				}
			}
		}
		switch {
		case strings.HasSuffix(line, "{"):
			stack = append(stack, line)
		case line == "}" && len(stack) > 0:
			stack = stack[:len(stack)-1]
		}
	}
	return routes
}

// Inventory writes the draft as a commented inventory.yaml with one
// environment, prod, and a placeholder host.
func (d *Draft) Inventory() []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# taledeploy inventory, drafted by `taledeploy init` from %s", d.ComposeFile)
	if d.Caddyfile != "" {
		w(" and %s", d.Caddyfile)
	}
	w(".\n# Check every guess below, then run `taledeploy plan prod`: it says what is still missing.\n")
	w("environments:\n  prod:\n    hosts:\n")
	w("      # A placeholder: your VPS's address, and an SSH user in the docker group.\n")
	w("      - name: vps1\n        address: 203.0.113.10\n        user: deploy\n")
	w("        identity_file: ~/.ssh/id_ed25519\n        known_hosts: ~/.ssh/known_hosts\n")
	w("    stack:\n      project: %s\n      remote_dir: /srv/%s\n      compose_file: %s\n", d.Project, d.Project, d.ComposeFile)
	if d.Caddyfile != "" {
		w("      # Your Caddyfile, kept as it is: taledeploy gates its reverse_proxy to each stateless service (see docs/how-it-works.md).\n")
		w("      caddyfile: %s\n", d.Caddyfile)
	}
	if d.Proxy != "" {
		w("      proxy: %s\n", d.Proxy)
	} else {
		w("      # No Caddy service found: add one (taledeploy switches traffic through Caddy) and name it here.\n      proxy: proxy\n")
	}
	list := func(key string, stateful bool) {
		w("      %s:\n", key)
		for _, s := range d.Services {
			if s.Stateful == stateful {
				w("        - %s  # %s\n", s.Name, s.Why)
			}
		}
		if d.Proxy == "" && stateful {
			w("        - proxy\n")
		}
	}
	list("stateless", false)
	list("stateful", true)
	if len(d.Routes) == 0 {
		w("      # No reverse_proxy to a stateless service found: name the site, path, service and port Caddy routes to.\n")
		w("      routes: []\n")
	} else {
		w("      routes:  # from the Caddyfile; health_path is probed before traffic moves\n")
		for _, r := range d.Routes {
			w("        - {site: %q, path: %q, service: %s, port: %d, health_path: %q}\n", r.Site, r.Path, r.Service, r.Port, r.HealthPath)
		}
	}
	if len(d.Env) > 0 {
		w("      # What the compose file reads, taken from the environment of the machine that\n")
		w("      # runs taledeploy (your shell, or CI secrets): no value is written here.\n")
		w("      env:\n")
		for _, v := range d.Env {
			if slices.Contains(d.Optional, v) {
				w("        # %s: ${%s}  # optional: the compose file has a default\n", v, v)
				continue
			}
			w("        %s: ${%s}\n", v, v)
		}
	}
	return []byte(b.String())
}
