package stack

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

var (
	// errNoDocument is an inventory without a YAML document: no line to name.
	errNoDocument = errors.New("empty")
	// errYAMLPanic is a document yaml.v3 panicked on.
	errYAMLPanic = errors.New("unreadable YAML")
)

// yamlSafely runs a yaml.v3 call: the library can panic on some malformed
// documents, and a loader never should. Only yaml.v3 runs under this recover, so
// a panic in our own checks still shows up in tests.
func yamlSafely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w (%v)", errYAMLPanic, r)
		}
	}()
	return fn()
}

// decodeStrict decodes a node refusing unknown keys, merged ones too (yaml.v3
// applies KnownFields only at the top level when a type has its own
// UnmarshalYAML, and never to merged keys).
func decodeStrict(n *yaml.Node, v any) error {
	known := yamlKeys(v)
	switch n.Kind {
	case yaml.MappingNode:
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return nil
		}
		return fmt.Errorf("line %d: found the value %.40q where keys belong (%s)", n.Line, n.Value, strings.Join(known, ", "))
	default:
		return fmt.Errorf("line %d: found a list where keys belong (%s)", n.Line, strings.Join(known, ", "))
	}
	for _, k := range mappingKeys(n) {
		if !slices.Contains(known, k.Value) {
			hint := ""
			if s := closest(k.Value, known); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			return fmt.Errorf("line %d: unknown key %q%s; known keys: %s", k.Line, k.Value, hint, strings.Join(known, ", "))
		}
	}
	err := n.Decode(v)
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) && !lineRE.MatchString(err.Error()) {
		// Alias errors carry no line; this node's is the closest we know.
		return fmt.Errorf("line %d: %s", n.Line, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return err
}

// mappingKeys lists the keys of a mapping, those written in it first, then those
// merged in with << (which a written key overrides, as in YAML).
func mappingKeys(n *yaml.Node) []*yaml.Node {
	var keys []*yaml.Node
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		if n.Kind == yaml.SequenceNode { // <<: [*a, *b]
			for _, c := range n.Content {
				walk(c)
			}
			return
		}
		var merged []*yaml.Node
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Value == "<<" {
				merged = append(merged, n.Content[i+1])
			} else {
				keys = append(keys, k)
			}
		}
		for _, m := range merged {
			walk(m)
		}
	}
	walk(n)
	return keys
}

// keyLines maps each key of a mapping to the line where its value is set.
func keyLines(n *yaml.Node) map[string]int {
	lines := map[string]int{}
	for _, k := range mappingKeys(n) {
		if lines[k.Value] == 0 {
			lines[k.Value] = k.Line
		}
	}
	return lines
}

// keyLine is the line of key, or fallback when the key is not written.
func keyLine(lines map[string]int, key string, fallback int) int {
	if l := lines[key]; l > 0 {
		return l
	}
	return fallback
}

var (
	lineRE   = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)
	anchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// yamlError puts the file and line in front of each of a YAML error's messages,
// as "file:3: message", like every other inventory error.
func yamlError(file string, data []byte, err error) error {
	if errors.Is(err, errYAMLPanic) {
		return fmt.Errorf("%s: %w", file, err)
	}
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []string
	for _, m := range msgs {
		// One bad alias is reported once per use; say it once.
		if l := located(file, data, plainYAML(data, m)); !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return errors.New(strings.Join(out, "; "))
}

var unmarshalRE = regexp.MustCompile("cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (\\S+)$")

// plainYAML words yaml.v3's messages for people: what was found where, never
// Go's type names, and tabs called tabs.
func plainYAML(data []byte, msg string) string {
	if m := unmarshalRE.FindStringSubmatch(msg); m != nil {
		found := map[string]string{"seq": "a list", "map": "keys", "null": "nothing", "bool": "true or false"}[m[1]]
		if found == "" {
			found = fmt.Sprintf("the value %.40q", m[2])
		}
		var want string
		switch t := m[3]; {
		case strings.HasPrefix(t, "[]"):
			want = "a list belongs (one item per line starting with -, or [a, b])"
		case strings.HasPrefix(t, "map[") || strings.HasPrefix(t, "*plan.") || strings.HasPrefix(t, "plan."):
			want = "keys belong (name: value)"
		case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || strings.HasPrefix(t, "float"):
			want = "a number in range belongs"
		case t == "bool":
			want = "true or false belongs"
		default:
			want = "a single value belongs"
		}
		return strings.Replace(msg, m[0], "found "+found+" where "+want, 1)
	}
	if strings.Contains(msg, "found character that cannot start any token") && bytes.Contains(data, []byte("\t")) {
		return msg + " (a tab: YAML indents with spaces only)"
	}
	return msg
}

func located(file string, data []byte, msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return file + ":" + m[1] + ": " + msg[len(m[0]):]
	}
	return fmt.Sprintf("%s:%d: %s", file, guessLine(data, msg), msg)
}

// guessLine finds the line of a YAML error that names none: yaml.v3 leaves the
// line out for the first line, for bytes that are not UTF-8 text, and for an
// unknown anchor.
func guessLine(data []byte, msg string) int {
	if m := anchorRE.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			return 1 + bytes.Count(data[:i], []byte("\n"))
		}
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 || r < 0x20 && r != '\n' && r != '\r' && r != '\t' || r == 0x7f {
			return 1 + bytes.Count(data[:i], []byte("\n"))
		}
		i += size
	}
	return 1
}

// kindName says what a node is, in the words errors use.
func kindName(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "keys"
	}
	return fmt.Sprintf("the value %.40q", n.Value)
}

// pos is where a mapping was in the inventory, for errors about its values.
type pos struct {
	line  int
	lines map[string]int // line of each key
}

// decodeAt decodes n into v, refusing unknown keys, and notes where n was.
func decodeAt[T any](n *yaml.Node, v *T, p *pos) error {
	if err := decodeStrict(n, v); err != nil {
		return err
	}
	p.line, p.lines = n.Line, keyLines(n)
	return nil
}
