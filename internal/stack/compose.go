package stack

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/format"
	"gopkg.in/yaml.v3"
)

// Compose is what taledeploy needs to know of the stack's compose file. Compose
// itself interprets the file on the host; this reads only enough to check it and
// to find the files to upload.
type Compose struct {
	File     string
	Services map[string]*ComposeService
	Volumes  []string // top-level named volumes
}

// ComposeService is one service of the compose file.
type ComposeService struct {
	Name          string
	Line          int
	ContainerName int    // line of container_name, 0 when absent
	Ports         int    // line of ports, 0 when absent
	BuildContext  string // local folder, relative to the compose file; "" when the image is not built
	BuildLine     int    // line of the build context
	Profiles      bool   // started only when a profile is asked for
	DependsOn     []string
	Binds         []Bind // bind mounts from the stack's folder
	VolumesLine   int    // line of volumes:, 0 when absent
}

// Bind is a bind mount: a path of the stack's folder (relative to the compose
// file, as written) seen at Target in the container.
type Bind struct {
	Source, Target string
	Line           int
}

// LoadCompose reads a compose file.
func LoadCompose(file string) (*Compose, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("compose file: %v; set stack.compose_file to the stack's compose.yml", err)
	}
	var root yaml.Node
	if err := yamlSafely(func() error { return yaml.Unmarshal(data, &root) }); err != nil {
		return nil, yamlError(file, data, err)
	}
	c := &Compose{File: file, Services: map[string]*ComposeService{}}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a compose file (no services:)", file)
	}
	top := root.Content[0]
	if vols := mapValue(top, "volumes"); vols != nil && vols.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(vols.Content); i += 2 {
			c.Volumes = append(c.Volumes, vols.Content[i].Value)
		}
		sort.Strings(c.Volumes)
	}
	svcs := mapValue(top, "services")
	if svcs == nil || svcs.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: no services: map", file)
	}
	for i := 0; i+1 < len(svcs.Content); i += 2 {
		k, v := svcs.Content[i], svcs.Content[i+1]
		if v.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: service %q is empty or not a map; give it an image: or a build:, as Compose needs", file, k.Line, k.Value)
		}
		s := &ComposeService{Name: k.Value, Line: k.Line, Profiles: mapKey(v, "profiles") != nil}
		if n := mapKey(v, "container_name"); n != nil {
			s.ContainerName = n.Line
		}
		if n := mapKey(v, "ports"); n != nil {
			s.Ports = n.Line
		}
		if vols := mapValue(v, "volumes"); vols != nil && vols.Kind == yaml.SequenceNode {
			s.VolumesLine = mapKey(v, "volumes").Line
			for _, n := range vols.Content {
				var b Bind
				switch n.Kind {
				case yaml.ScalarNode:
					vc, err := format.ParseVolume(n.Value)
					if err != nil || vc.Type != "bind" {
						continue
					}
					b = Bind{Source: vc.Source, Target: vc.Target}
				case yaml.MappingNode:
					if t := mapValue(n, "type"); t == nil || t.Value != "bind" {
						continue
					}
					b = Bind{Source: scalar(mapValue(n, "source")), Target: scalar(mapValue(n, "target"))}
				}
				b.Line = n.Line
				s.Binds = append(s.Binds, b)
			}
		}
		if d := mapValue(v, "depends_on"); d != nil {
			switch d.Kind {
			case yaml.SequenceNode:
				for _, n := range d.Content {
					s.DependsOn = append(s.DependsOn, n.Value)
				}
			case yaml.MappingNode:
				for j := 0; j+1 < len(d.Content); j += 2 {
					s.DependsOn = append(s.DependsOn, d.Content[j].Value)
				}
			}
		}
		if b := mapValue(v, "build"); b != nil {
			s.BuildLine = b.Line
			switch b.Kind {
			case yaml.ScalarNode:
				s.BuildContext = b.Value
			case yaml.MappingNode:
				if ctx := mapValue(b, "context"); ctx != nil {
					s.BuildContext, s.BuildLine = ctx.Value, ctx.Line
				} else {
					s.BuildContext = "."
				}
			}
		}
		c.Services[s.Name] = s
	}
	return c, nil
}

func (c *Compose) check(s *Stack) error {
	at := func(line int, format string, a ...any) error {
		return fmt.Errorf("%s:%d: %s", c.File, line, fmt.Sprintf(format, a...))
	}
	if err := c.checkProxy(s); err != nil {
		return err
	}
	for _, name := range c.ServiceNames() {
		svc := c.Services[name]
		if !slices.Contains(s.Stateless, name) && !slices.Contains(s.Stateful, name) && !svc.Profiles {
			return at(svc.Line, "service %q is listed in neither stack.stateless nor stack.stateful, so no push would start it; list it in the inventory (stateless: one per color; stateful: once), or give it profiles: if it is for local use only", name)
		}
		if svc.BuildContext == "" {
			continue
		}
		if err := checkStackPath(svc.BuildContext); err != nil {
			return at(svc.BuildLine, "service %q: build context %v", name, err)
		}
	}
	return nil
}

// checkProxy makes sure the proxy service has what taledeploy needs: its admin
// socket's folder shared with the host, and the Caddyfile's folder mounted (a
// single file would keep the old content: uploads replace the file).
func (c *Compose) checkProxy(s *Stack) error {
	p := c.Services[s.Proxy]
	if p == nil {
		return nil // checked with the inventory
	}
	line := cmp.Or(p.VolumesLine, p.Line)
	base := path.Dir(filepath.ToSlash(s.ComposeFile))
	rel := func(src string) string { return path.Clean(path.Join(base, filepath.ToSlash(src))) }
	caddyfile := path.Clean(filepath.ToSlash(s.Caddyfile))
	var admin, folder bool
	for _, b := range p.Binds {
		switch src := rel(b.Source); {
		case src == caddyfile:
			return fmt.Errorf("%s:%d: the proxy service %q mounts the Caddyfile itself; mount its folder instead (- ./%s:/etc/caddy:ro): an upload replaces the file, and a mounted file would keep the old one",
				c.File, b.Line, s.Proxy, path.Dir(caddyfile))
		case src == path.Dir(caddyfile):
			folder = true
		case b.Target == "/run/caddy" && src == "run/caddy":
			admin = true
		}
	}
	var missing []string
	if !folder {
		missing = append(missing, fmt.Sprintf("- ./%s:/etc/caddy:ro (the Caddyfile's folder)", path.Dir(caddyfile)))
	}
	if !admin {
		missing = append(missing, "- ./run/caddy:/run/caddy (where Caddy's admin socket is shared with taledeploy)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s:%d: the proxy service %q needs these volumes: %s", c.File, line, s.Proxy, strings.Join(missing, "; "))
	}
	return nil
}

// ServiceNames lists the services, sorted.
func (c *Compose) ServiceNames() []string {
	var names []string
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func mapKey(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i]
		}
	}
	return nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
