package stack

import (
	"os"
	"sort"

	"gopkg.in/yaml.v3"
)

// Names is what shell completion offers from an inventory: its environments
// and, for each, its host names and services.
type Names struct {
	Envs     []string
	Hosts    map[string][]string
	Services map[string][]string
}

// ReadNames reads the names in an inventory file without checking anything
// else, so completion works on an inventory that does not load yet.
func ReadNames(file string) (Names, error) {
	n := Names{Hosts: map[string][]string{}, Services: map[string][]string{}}
	data, err := os.ReadFile(file)
	if err != nil {
		return n, err
	}
	var doc struct {
		Environments map[string]struct {
			Hosts []struct {
				Name string `yaml:"name"`
			} `yaml:"hosts"`
			Stack struct {
				Stateless []string `yaml:"stateless"`
				Stateful  []string `yaml:"stateful"`
			} `yaml:"stack"`
		} `yaml:"environments"`
	}
	if err := yamlSafely(func() error { return yaml.Unmarshal(data, &doc) }); err != nil {
		return n, err
	}
	for name, e := range doc.Environments {
		n.Envs = append(n.Envs, name)
		for _, h := range e.Hosts {
			if h.Name != "" {
				n.Hosts[name] = append(n.Hosts[name], h.Name)
			}
		}
		n.Services[name] = append(append([]string{}, e.Stack.Stateless...), e.Stack.Stateful...)
	}
	sort.Strings(n.Envs)
	return n, nil
}
