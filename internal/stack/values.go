package stack

import (
	"fmt"
	"strings"
	"time"

	"github.com/docker/go-units"
	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "90s" or "2m".
type Duration struct{ time.Duration }

// Size is a number of bytes written as "512MiB", "2GB" or "1048576".
type Size struct{ Bytes int64 }

// ParseSize reads a size such as "512MiB", "1.5GB" or "12.3MiB" (docker
// stats' form) with Docker's own parser: KiB, MiB... count in powers of 1024,
// kB, MB... in powers of 1000.
func ParseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	parse := units.FromHumanSize
	if strings.ContainsAny(v, "iI") {
		parse = units.RAMInBytes
	}
	n, err := parse(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: write a number with a unit such as 512MiB or 2GB", v)
	}
	return n, nil
}

func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	b, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	z.Bytes = b
	return nil
}

func (z Size) MarshalYAML() (any, error) { return z.String(), nil }

// String prints the size as Docker does (512MiB).
func (z Size) String() string { return units.BytesSize(float64(z.Bytes)) }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("line %d: %q is not a duration; write it like 90s or 2m", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// EnvMap is an env: block, NAME: value. It is read pair by pair, so a block of
// many keys costs time in proportion (yaml.v3's own map decoding checks each
// key against every other).
type EnvMap map[string]string

func (m *EnvMap) UnmarshalYAML(n *yaml.Node) error {
	out := EnvMap{}
	if err := decodeEnv(n, out, 0, map[*yaml.Node]bool{}); err != nil {
		return err
	}
	*m = out
	return nil
}

// decodeEnv adds n's pairs to out. Keys merged in with <<: never replace one
// already set: the map's own keys come first, then its merges in order. A map
// merged twice adds nothing the second time, so aliases cannot multiply work.
func decodeEnv(n *yaml.Node, out EnvMap, depth int, seen map[*yaml.Node]bool) error {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if seen[n] {
		return nil
	}
	seen[n] = true
	switch {
	case n == nil || n.Tag == "!!null":
		return nil
	case depth > 8:
		return fmt.Errorf("line %d: env: merges (<<:) nest too deep", n.Line)
	case n.Kind == yaml.SequenceNode && depth > 0: // <<: [*a, *b]
		for _, c := range n.Content {
			if err := decodeEnv(c, out, depth+1, seen); err != nil {
				return err
			}
		}
		return nil
	case n.Kind != yaml.MappingNode:
		return fmt.Errorf("line %d: env: found %s where keys belong (NAME: value)", n.Line, kindName(n))
	}
	own := map[string]bool{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if own[k.Value] {
			return fmt.Errorf("line %d: env key %q is set twice; keep one", k.Line, k.Value)
		}
		own[k.Value] = true
		for v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: env %s: found %s where a single value belongs", k.Line, k.Value, kindName(v))
		}
		if _, set := out[k.Value]; set && depth > 0 {
			continue
		}
		out[k.Value] = v.Value
		if v.Tag == "!!null" {
			out[k.Value] = ""
		}
	}
	for _, m := range merges {
		if err := decodeEnv(m, out, depth+1, seen); err != nil {
			return err
		}
	}
	return nil
}
