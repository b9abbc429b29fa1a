package stack

import (
	"encoding/json"
	"sort"
	"strings"
)

// MaskValues hides every env value (of 4 characters or more) in text, as
// written and as JSON writes it: output may quote what a build or a container
// printed.
func MaskValues(text string, env map[string]string) string {
	var values []string
	for _, v := range env {
		if len(v) >= 4 {
			values = append(values, v)
		}
	}
	// Longest first, so a value that holds another is hidden whole.
	sort.Slice(values, func(i, j int) bool { return len(values[i]) > len(values[j]) })
	for _, v := range values {
		text = strings.ReplaceAll(text, v, "•••")
		if q, err := json.Marshal(v); err == nil { // as JSON writes it
			text = strings.ReplaceAll(text, string(q[1:len(q)-1]), "•••")
		}
	}
	return text
}
