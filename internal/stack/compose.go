package stack

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/format"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// Compose is what taledeploy needs to know of the stack's compose file. Compose
// itself interprets the file on the host; this reads only enough to check it and
// to find the files to upload.
type Compose struct {
	File     string
	Services map[string]*ComposeService
	Volumes  []string // top-level named volumes
	// External are the top-level networks declared external: made outside
	// the stack (shared with other stacks), so both colors keep them.
	External []string
	// Refs are the other local files Compose reads on the host: env_file,
	// include and extends files.
	Refs []Ref
}

// Ref is a local file the compose file refers to, relative to its folder.
type Ref struct {
	Path     string
	Line     int
	What     string // env_file of platform, include, ...
	Secret   bool   // an env file: uploaded readable by its owner only
	Optional bool   // env_file with required: false
}

// ComposeService is one service of the compose file.
type ComposeService struct {
	Name          string
	Line          int
	ContainerName int    // line of container_name, 0 when absent
	Ports         int    // line of ports, 0 when absent
	BuildContext  string // local folder, relative to the compose file; "" when the image is not built
	BuildLine     int    // line of the build context
	Image         string // image:, as written (${...} not yet replaced)
	ImageLine     int
	Profiles      bool // started only when a profile is asked for
	DependsOn     []string
	Links         []string // links:, as written (service or service:alias)
	Binds         []Bind   // bind mounts from the stack's folder
	VolumesLine   int      // line of volumes:, 0 when absent
	// Networks are the networks the service names, with the aliases it gives
	// itself on each; none means Compose's default network.
	Networks    []ServiceNetwork
	NetworkMode string // network_mode, "" when absent: such a service joins no network
	// HealthPath is the path its healthcheck asks of itself over HTTP, "" when
	// it has none that says.
	HealthPath string
	// StartPeriod: its healthcheck gives it a start period (and sets no
	// start_interval), which the color overlay can make checked more often.
	StartPeriod bool
}

// ServiceNetwork is one network of a service, with its own aliases there.
type ServiceNetwork struct {
	Name    string
	Aliases []string
}

// Bind is a bind mount: a path of the stack's folder (relative to the compose
// file, as written) seen at Target in the container.
type Bind struct {
	Source, Target string
	ReadOnly       bool
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
	if nets := mapValue(top, "networks"); nets != nil && nets.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(nets.Content); i += 2 {
			if ext := mapValue(nets.Content[i+1], "external"); ext != nil && (ext.Value == "true" || ext.Kind == yaml.MappingNode) {
				c.External = append(c.External, nets.Content[i].Value)
			}
		}
		sort.Strings(c.External)
	}
	svcs := mapValue(top, "services")
	if svcs == nil && mapValue(top, "include") != nil {
		svcs = &yaml.Node{Kind: yaml.MappingNode, Line: 1} // all of them come from included files
	}
	if svcs == nil || svcs.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: no services: map", file)
	}
	orig := map[string][2]*yaml.Node{} // service -> key and value as written
	for i := 0; i+1 < len(svcs.Content); i += 2 {
		k, v := svcs.Content[i], svcs.Content[i+1]
		if v.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: service %q is empty or not a map; give it an image: or a build:, as Compose needs", file, k.Line, k.Value)
		}
		orig[k.Value] = [2]*yaml.Node{k, v}
	}
	model, err := composeModel(file)
	if err != nil {
		return nil, err
	}
	c.Refs = append(c.Refs, includes(top)...)
	for name, kv := range orig {
		if f := mapValue(mapValue(kv[1], "extends"), "file"); f != nil && f.Kind == yaml.ScalarNode {
			c.Refs = append(c.Refs, Ref{Path: f.Value, Line: f.Line, What: "extends file of " + name})
		}
	}
	for name, def := range model {
		// Values as Compose merges them (<<: anchors, extends, include);
		// lines from the file as written, where the key is.
		var v yaml.Node
		if err := v.Encode(def); err != nil || v.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: service %q: %v", file, name, err)
		}
		kv, ok := orig[name]
		svcLine := svcs.Line
		if ok {
			svcLine = kv[0].Line
		}
		line := func(key string) int {
			if n := mapKey(kv[1], key); ok && n != nil {
				return n.Line
			}
			return svcLine
		}
		s := &ComposeService{Name: name, Line: svcLine, Profiles: mapKey(&v, "profiles") != nil}
		if mapKey(&v, "container_name") != nil {
			s.ContainerName = line("container_name")
		}
		if p := mapValue(&v, "ports"); p != nil && (p.Kind != yaml.SequenceNode || len(p.Content) > 0) {
			s.Ports = line("ports")
		}
		if vols := mapValue(&v, "volumes"); vols != nil && vols.Kind == yaml.SequenceNode {
			s.VolumesLine = line("volumes")
			written := mapValue(kv[1], "volumes")
			for i, n := range vols.Content {
				b, ok := bindOf(n)
				if !ok {
					continue
				}
				b.Line = s.VolumesLine
				if written != nil && written.Kind == yaml.SequenceNode && i < len(written.Content) {
					b.Line = written.Content[i].Line
				}
				s.Binds = append(s.Binds, b)
			}
		}
		for _, e := range envFiles(mapValue(&v, "env_file")) {
			e.Line, e.What, e.Secret = line("env_file"), "env_file of "+name, true
			c.Refs = append(c.Refs, e)
		}
		s.Networks, s.NetworkMode = serviceNetworks(mapValue(&v, "networks")), scalar(mapValue(&v, "network_mode"))
		hc := mapValue(&v, "healthcheck")
		if sp := scalar(mapValue(hc, "start_period")); sp != "" && sp != "0" && sp != "0s" && mapValue(hc, "start_interval") == nil && scalar(mapValue(hc, "disable")) != "true" {
			s.StartPeriod = true
		}
		if t := mapValue(hc, "test"); t != nil {
			test := []string{t.Value}
			for _, c := range t.Content {
				test = append(test, c.Value)
			}
			if m := healthURLRE.FindStringSubmatch(strings.Join(test, " ")); m != nil {
				s.HealthPath = m[1]
			}
		}
		if l := mapValue(&v, "links"); l != nil && l.Kind == yaml.SequenceNode {
			for _, n := range l.Content {
				s.Links = append(s.Links, n.Value)
			}
		}
		if d := mapValue(&v, "depends_on"); d != nil {
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
		if img := mapValue(&v, "image"); img != nil && img.Kind == yaml.ScalarNode {
			s.Image, s.ImageLine = img.Value, line("image")
		}
		if b := mapValue(&v, "build"); b != nil {
			s.BuildLine = line("build")
			if w := mapValue(mapValue(kv[1], "build"), "context"); ok && w != nil {
				s.BuildLine = w.Line
			}
			switch b.Kind {
			case yaml.ScalarNode:
				s.BuildContext = b.Value
			case yaml.MappingNode:
				s.BuildContext = cmp.Or(scalar(mapValue(b, "context")), ".")
			}
		}
		c.Services[name] = s
	}
	return c, nil
}

func (c *Compose) check(s *Stack) error {
	at := func(line int, format string, a ...any) error {
		return fmt.Errorf("%s:%d: %s", c.File, line, fmt.Sprintf(format, a...))
	}
	for _, r := range c.Refs {
		if err := checkStackPath(r.Path); err != nil {
			return at(r.Line, "%s %v", r.What, err)
		}
	}
	for _, name := range c.ServiceNames() {
		svc := c.Services[name]
		if !slices.Contains(s.Stateless, name) && !slices.Contains(s.Stateful, name) && !svc.Profiles {
			return at(svc.Line, "service %q is listed in neither stack.stateless nor stack.stateful, so no push would start it; list it in the inventory (stateless: one per color; stateful: once), or give it profiles: if it is for local use only", name)
		}
		for _, b := range svc.Binds {
			if relativeBind(b.Source) && b.ReadOnly {
				if err := checkStackPath(b.Source); err != nil {
					return at(b.Line, "service %q: read-only bind mount %v", name, err)
				}
			}
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

// composeModel reads the compose file the way Compose does (compose-go):
// YAML anchors and merge keys, extends, include and !reset resolved, values
// not interpolated (the env is the host's, written at push time).
func composeModel(file string) (map[string]any, error) {
	model, err := loader.LoadModelWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(file),
		ConfigFiles: []types.ConfigFile{{Filename: file}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("taledeploy", true)
		o.SkipInterpolation, o.SkipNormalization, o.SkipConsistencyCheck = true, true, true
		o.SkipValidation, o.SkipResolveEnvironment, o.ResolvePaths = true, true, false
		o.Profiles = []string{"*"}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	services, _ := model["services"].(map[string]any)
	return services, nil
}

// includes lists the files of the top-level include: (short or long syntax).
func includes(top *yaml.Node) []Ref {
	var out []Ref
	inc := mapValue(top, "include")
	if inc == nil || inc.Kind != yaml.SequenceNode {
		return nil
	}
	for _, n := range inc.Content {
		switch n.Kind {
		case yaml.ScalarNode:
			out = append(out, Ref{Path: n.Value, Line: n.Line, What: "include"})
		case yaml.MappingNode:
			p := mapValue(n, "path")
			if p != nil && p.Kind == yaml.ScalarNode {
				out = append(out, Ref{Path: p.Value, Line: p.Line, What: "include"})
			} else if p != nil && p.Kind == yaml.SequenceNode {
				for _, q := range p.Content {
					out = append(out, Ref{Path: q.Value, Line: q.Line, What: "include"})
				}
			}
			if e := mapValue(n, "env_file"); e != nil {
				for _, r := range envFiles(e) {
					r.Line, r.What, r.Secret = e.Line, "env_file of an include", true
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// envFiles reads env_file: one path, a list of paths, or a list of
// {path, required}.
func envFiles(n *yaml.Node) []Ref {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []Ref{{Path: n.Value}}
	}
	var out []Ref
	for _, e := range n.Content {
		switch e.Kind {
		case yaml.ScalarNode:
			out = append(out, Ref{Path: e.Value})
		case yaml.MappingNode:
			r := Ref{Path: scalar(mapValue(e, "path"))}
			if req := mapValue(e, "required"); req != nil && req.Value == "false" {
				r.Optional = true
			}
			out = append(out, r)
		}
	}
	return out
}

// serviceNetworks reads a service's networks: a list of names, or a map of
// name to nothing or to {aliases, ...}.
func serviceNetworks(n *yaml.Node) []ServiceNetwork {
	var out []ServiceNetwork
	switch {
	case n == nil:
	case n.Kind == yaml.SequenceNode:
		for _, e := range n.Content {
			out = append(out, ServiceNetwork{Name: e.Value})
		}
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			sn := ServiceNetwork{Name: n.Content[i].Value}
			if a := mapValue(n.Content[i+1], "aliases"); a != nil && a.Kind == yaml.SequenceNode {
				for _, e := range a.Content {
					sn.Aliases = append(sn.Aliases, e.Value)
				}
			}
			out = append(out, sn)
		}
	}
	slices.SortFunc(out, func(a, b ServiceNetwork) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// bindOf reads a bind mount of a service's volumes, short or long syntax.
func bindOf(n *yaml.Node) (Bind, bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		vc, err := format.ParseVolume(n.Value)
		if err != nil || vc.Type != "bind" {
			return Bind{}, false
		}
		return Bind{Source: vc.Source, Target: vc.Target, ReadOnly: vc.ReadOnly}, true
	case yaml.MappingNode:
		if t := mapValue(n, "type"); t == nil || t.Value != "bind" {
			return Bind{}, false
		}
		return Bind{Source: scalar(mapValue(n, "source")), Target: scalar(mapValue(n, "target")), ReadOnly: scalar(mapValue(n, "read_only")) == "true"}, true
	}
	return Bind{}, false
}

// relativeBind tells whether a bind mount's source is a path of the project
// (./config, conf/x) rather than of the host (/var/run/docker.sock, ~/x).
func relativeBind(src string) bool {
	return src != "" && !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "~") && !strings.HasPrefix(src, "$")
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
