// Package plan holds the inventory model, observes a host's state, decides the
// steps of a push or rollback and carries them out, reporting events.
package stack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/agnivade/levenshtein"
	"github.com/docker/go-units"
	"gopkg.in/yaml.v3"
)

// ErrBadInput marks an error in the inventory, compose file or flags.
var ErrBadInput = errors.New("bad input")

// Inventory is inventory.yaml: environments, each with hosts and a stack.
type Inventory struct {
	Environments map[string]*Environment `yaml:"environments"`

	file string // path it was read from
	dir  string // folder that relative paths start from
	opts LoadOptions
}

// LoadOptions are what the inventory's checks need to know from outside it.
type LoadOptions struct {
	// KnownHostsFromEnv says TALEDEPLOY_KNOWN_HOSTS holds host keys, so a host
	// may go without a known_hosts file of its own.
	KnownHostsFromEnv bool
	// NoSSH reads the inventory for a command that connects to no host
	// (render): a host may then lack its SSH files.
	NoSSH bool
}

// Environment is one named target, such as demo or prod.
type Environment struct {
	Hosts []*Host `yaml:"hosts"`
	Stack Stack   `yaml:"stack"`

	Name string `yaml:"-"`
	pos
	stacks   map[string]*Stack
	resolved bool       // ResolveEnv ran
	mu       sync.Mutex // guards stacks and resolved
}

// StackFor returns the stack as deployed on the named host: the environment's,
// with the host's project, remote_dir and env over it.
func (e *Environment) StackFor(host string) *Stack {
	// Commands ask from one goroutine per host.
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.stacks[host]; ok {
		return s
	}
	s := e.Stack
	for _, h := range e.Hosts {
		if h.Name != host {
			continue
		}
		if h.Project != "" {
			s.Project = h.Project
		}
		if h.RemoteDir != "" {
			s.RemoteDir = path.Clean(h.RemoteDir)
		}
		if h.Build != "" {
			s.Build = h.Build
		}
		if len(h.Env) > 0 {
			s.Env = map[string]string{}
			for k, v := range e.Stack.Env {
				s.Env[k] = v
			}
			for k, v := range h.Env {
				s.Env[k] = v
			}
		}
	}
	if e.stacks == nil {
		e.stacks = map[string]*Stack{}
	}
	e.stacks[host] = &s
	return &s
}

// Host is one VPS reachable over SSH. Address may be an alias of the user's
// ssh config, which fills Port, User and IdentityFile where they are unset.
type Host struct {
	Name         string `yaml:"name"`
	Address      string `yaml:"address"`
	Port         int    `yaml:"port"`
	User         string `yaml:"user"`
	IdentityFile string `yaml:"identity_file"`
	KnownHosts   string `yaml:"known_hosts"`
	// Project, RemoteDir and Env override the stack's for this host, so one
	// machine can hold several hosts' stacks (the sandbox does) or a host can
	// differ from the others.
	Project   string `yaml:"project"`
	RemoteDir string `yaml:"remote_dir"`
	Env       EnvMap `yaml:"env"`
	// Build overrides the stack's build for this host.
	Build string `yaml:"build"`

	pos
}

// Stack says how the compose stack is deployed.
type Stack struct {
	Project       string   `yaml:"project"`
	RemoteDir     string   `yaml:"remote_dir"`
	ComposeFile   string   `yaml:"compose_file"`
	Caddyfile     string   `yaml:"caddyfile"`
	Proxy         string   `yaml:"proxy"`
	Stateless     []string `yaml:"stateless"`
	Stateful      []string `yaml:"stateful"`
	Routes        []*Route `yaml:"routes"`
	HealthTimeout Duration `yaml:"health_timeout"`
	DrainTimeout  Duration `yaml:"drain_timeout"`
	// VerifyWindow is how long the new release is watched through Caddy after
	// the switch, while the old color still runs; a failure switches back.
	VerifyWindow Duration `yaml:"verify_window"`
	// ReserveMemory and ReserveDisk are kept free on the host when a push
	// starts a second color.
	ReserveMemory Size   `yaml:"reserve_memory"`
	ReserveDisk   Size   `yaml:"reserve_disk"`
	Env           EnvMap `yaml:"env"`
	// EnvFiles are local dotenv files (kept out of git) whose values come
	// under Env's; see Environment.ResolveEnv.
	EnvFiles []string `yaml:"env_files"`
	// EnvCommands take a value from a command's output, run on the machine
	// running taledeploy (a password manager: [op, read, "op://prod/db/pass"]).
	EnvCommands map[string][]string `yaml:"env_commands"`
	// Migrations are the SQL migrations a push applies before it starts the new
	// color (expand) and `migrate contract` applies once the old color is gone.
	Migrations []*Migration `yaml:"migrations"`
	// Build says where the stateless services' images are built: local (here,
	// then sent to the hosts layer by layer), host (on each host, from the
	// build context) or none (every image comes from a registry). Empty:
	// local when this machine has Docker, else host.
	Build string `yaml:"build"`
	// KeepReleases is how many releases' images a host keeps (default 3),
	// for rollback; older ones are removed after a push.
	KeepReleases int `yaml:"keep_releases"`

	// Compose is compose_file, read and checked against the settings above.
	Compose *Compose `yaml:"-"`
	// EngineAPI is the Docker Engine API version of the host this stack is
	// deployed to, once a command has asked it ("" until then): the color
	// overlay uses what that engine offers.
	EngineAPI string `yaml:"-"`
	// Root is the local folder that compose_file and the build contexts are in.
	Root string `yaml:"-"`
	// private are local files never uploaded (the inventory, env_files), as
	// real paths.
	private []string
	pos
}

// Route is one path Caddy serves from a stateless service.
type Route struct {
	Site       string `yaml:"site"`
	Path       string `yaml:"path"`
	Service    string `yaml:"service"`
	Port       int    `yaml:"port"`
	HealthPath string `yaml:"health_path"`

	pos
}

// Migration is one service's folder of SQL migrations and the command, run in a
// one-off container of that service's new image, that applies them. The command
// gets the file names to apply as its last arguments, in order.
type Migration struct {
	Service string   `yaml:"service"`
	Dir     string   `yaml:"dir"`
	Command []string `yaml:"command"`

	pos
}

func (m *Migration) UnmarshalYAML(n *yaml.Node) error {
	type plain Migration
	return decodeAt(n, (*plain)(m), &m.pos)
}

func (e *Environment) UnmarshalYAML(n *yaml.Node) error {
	type plain Environment
	return decodeAt(n, (*plain)(e), &e.pos)
}

func (h *Host) UnmarshalYAML(n *yaml.Node) error {
	type plain Host
	return decodeAt(n, (*plain)(h), &h.pos)
}

func (s *Stack) UnmarshalYAML(n *yaml.Node) error {
	type plain Stack
	return decodeAt(n, (*plain)(s), &s.pos)
}

func (r *Route) UnmarshalYAML(n *yaml.Node) error {
	type plain Route
	return decodeAt(n, (*plain)(r), &r.pos)
}

// Load reads and validates an inventory file. Every error names the file and line.
func Load(file string) (*Inventory, error) { return LoadWith(file, LoadOptions{}) }

// LoadWith is Load with facts from outside the inventory.
func LoadWith(file string, opts LoadOptions) (*Inventory, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %v; pass --inventory FILE or run from the folder that has inventory.yaml", ErrBadInput, err)
	}
	inv, err := ParseWith(file, data, opts)
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// Parse validates inventory text; file names it in errors and anchors relative
// paths. Every error names the file and, but for an empty one, the line.
func Parse(file string, data []byte) (*Inventory, error) { return ParseWith(file, data, LoadOptions{}) }

// ParseWith is Parse with facts from outside the inventory.
func ParseWith(file string, data []byte, opts LoadOptions) (*Inventory, error) {
	if len(data) > maxInventory {
		return nil, fmt.Errorf("%w: %s: %s is more than an inventory needs (at most %s); keep big values out of it, in env files or the environment", ErrBadInput, file, units.BytesSize(float64(len(data))), units.BytesSize(maxInventory))
	}
	inv := &Inventory{file: file, dir: filepath.Dir(file), opts: opts}
	var root, next yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := yamlSafely(func() error { return dec.Decode(&root) })
	if errors.Is(err, io.EOF) || err == nil && len(root.Content) == 0 {
		return nil, fmt.Errorf("%w: %s: %w; it needs an environments: map (see the README)", ErrBadInput, file, errNoDocument)
	}
	if err == nil {
		// A second document would be ignored, and so would what the user wrote in it.
		if err = yamlSafely(func() error { return dec.Decode(&next) }); err == nil {
			return nil, fmt.Errorf("%w: %s:%d: a second YAML document; keep the whole inventory in one (remove the ---)", ErrBadInput, file, next.Line)
		} else if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, yamlError(file, data, err))
	}
	top := root.Content[0]
	if err := yamlSafely(func() error { return decodeStrict(top, inv) }); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, yamlError(file, data, err))
	}
	at := func(line int, format string, a ...any) error {
		return fmt.Errorf("%w: %s:%d: %s", ErrBadInput, file, line, fmt.Sprintf(format, a...))
	}
	if len(inv.Environments) == 0 {
		return nil, at(keyLine(keyLines(top), "environments", top.Line), "no environments; add one under the environments key")
	}
	envLines := keyLines(mapValue(top, "environments"))
	for _, name := range inv.EnvNames() {
		env := inv.Environments[name]
		if env == nil {
			return nil, at(keyLine(envLines, name, top.Line), "environment %q is empty; give it hosts and a stack", name)
		}
		env.Name = name
		if !envNameRE.MatchString(name) || len(name) > maxName {
			// The name is pasted into the commands messages suggest: keep it plain.
			return nil, at(keyLine(envLines, name, env.line), "environment %.40q: use letters, digits, ., - and _ (at most %d), starting with a letter or digit", name, maxName)
		}
		if err := inv.check(env); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
		}
	}
	if err := inv.checkProjects(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	return inv, nil
}

// checkProjects refuses two stacks on one host (by address and port) whose
// compose projects collide: P's color projects are P-blue and P-green, so a
// stack named P-blue beside P would take over P's blue color.
func (inv *Inventory) checkProjects() error {
	type placed struct {
		env             string
		host            *Host
		project, remote string
	}
	byHost := map[string][]placed{}
	for _, name := range inv.EnvNames() {
		e := inv.Environments[name]
		for _, h := range e.Hosts {
			port := h.Port
			if port == 0 {
				port = 22
			}
			key := fmt.Sprintf("%s:%d", h.Address, port)
			st := e.StackFor(h.Name)
			byHost[key] = append(byHost[key], placed{name, h, st.Project, st.RemoteDir})
		}
	}
	for _, ps := range byHost {
		for _, a := range ps {
			for _, b := range ps {
				if a.project == b.project && a.remote != b.remote {
					return fmt.Errorf("%s:%d: environment %s: host %s: project %q is also the project of environment %s, host %s, on the same machine (in %s, not %s): they would deploy over each other's containers; give each stack its own project",
						inv.file, a.host.line, a.env, a.host.Name, a.project, b.env, b.host.Name, b.remote, a.remote)
				}
				if a.project == b.project+"-"+Blue || a.project == b.project+"-"+Green {
					return fmt.Errorf("%s:%d: environment %s: host %s: project %q is the color project of %q (environment %s, host %s) on the same machine; rename one so neither is the other's name with -blue or -green",
						inv.file, a.host.line, a.env, a.host.Name, a.project, b.project, b.env, b.host.Name)
				}
			}
		}
	}
	return nil
}

// Env returns an environment by name.
func (inv *Inventory) Env(name string) (*Environment, error) {
	if e, ok := inv.Environments[name]; ok {
		return e, nil
	}
	names := inv.EnvNames()
	hint := ""
	if s := closest(name, names); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	return nil, fmt.Errorf("%w: %s has no environment %q%s; it has: %s", ErrBadInput, inv.file, name, hint, strings.Join(names, ", "))
}

// maxInventory bounds the inventory file: it is read whole, by hand-edited
// YAML's rules, on every command.
const maxInventory = 4 << 20

// maxName bounds host, project and environment names: they prefix every line
// of output and name containers, networks and folders.
const maxName = 64

// EnvNames lists the environments, sorted.
func (inv *Inventory) EnvNames() []string {
	var names []string
	for n := range inv.Environments {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	// envNameRE: an environment's name is typed on command lines and pasted
	// into the commands messages suggest.
	envNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	envKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// An IP, a DNS name or an alias of the ssh config.
	addressRE = regexp.MustCompile(`^[A-Za-z0-9.:_-]+$`)
	// Compose's rule for service names; image names take lower case only.
	serviceRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	imageNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

func (inv *Inventory) localPath(p string) string {
	if p == "" {
		return ""
	}
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(inv.dir, p)
}

// Colors are the two slots of stateless services.
const (
	Blue  = "blue"
	Green = "green"
)

// Other returns the color that is not c.
func Other(c string) string {
	if c == Blue {
		return Green
	}
	return Blue
}

// ColorProject is the compose project of one color.
func (s *Stack) ColorProject(color string) string { return s.Project + "-" + color }

func yamlKeys(v any) []string {
	var keys []string
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		keys = append(keys, strings.Split(tag, ",")[0])
	}
	return keys
}

// closest returns the candidate within edit distance 2 of s, for "did you mean".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := levenshtein.ComputeDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}
