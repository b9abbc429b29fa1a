package stack

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// init's guesses for stacks written as users write them: each service's kind
// and reason, the routes of the Caddyfile, and the variables the compose file
// reads (never a value); the inventory it writes is YAML an editor can finish.
func TestDraft(t *testing.T) {
	for _, tc := range []struct {
		dir, compose, caddyfile string
		stateful, stateless     []string
		routes                  []string // "site path service:port health"
		env, optional           []string
	}{
		{"tale", "compose.yml", "proxy/Caddyfile",
			[]string{"db", "proxy"}, []string{"crawler", "platform", "rag"},
			[]string{"tale.example.com /ws/* platform:3000 /api/health", "tale.example.com /rag/* rag:8001 /healthz", "tale.example.com /* platform:3000 /api/health"},
			[]string{"CRAWLER_TAG", "DB_PASSWORD"}, []string{"CRAWLER_TAG"}},
		{"django", "docker-compose.yml", "Caddyfile",
			[]string{"caddy", "postgres", "redis"}, []string{"web", "worker"},
			[]string{"localhost /* web:8000 /"},
			[]string{"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"}, nil},
		{"node", "compose.yaml", "",
			[]string{"mongo", "uploads"}, []string{"api"}, nil,
			[]string{"JWT_SECRET"}, nil},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			d, err := DraftFrom(filepath.Join("testdata/init", tc.dir), tc.compose, tc.caddyfile)
			if err != nil {
				t.Fatal(err)
			}
			var stateful, stateless, routes []string
			for _, s := range d.Services {
				if s.Why == "" {
					t.Errorf("%s: no reason given", s.Name)
				}
				if s.Stateful {
					stateful = append(stateful, s.Name)
				} else {
					stateless = append(stateless, s.Name)
				}
			}
			slices.Sort(stateful)
			slices.Sort(stateless)
			for _, r := range d.Routes {
				routes = append(routes, strings.Join([]string{r.Site, r.Path, r.Service + ":" + itoa(r.Port), r.HealthPath}, " "))
			}
			if !slices.Equal(stateful, tc.stateful) || !slices.Equal(stateless, tc.stateless) {
				t.Errorf("stateful %v stateless %v, want %v and %v", stateful, stateless, tc.stateful, tc.stateless)
			}
			if !slices.Equal(routes, tc.routes) {
				t.Errorf("routes %q, want %q", routes, tc.routes)
			}
			if !slices.Equal(d.Env, tc.env) || !slices.Equal(d.Optional, tc.optional) {
				t.Errorf("env %v optional %v, want %v and %v", d.Env, d.Optional, tc.env, tc.optional)
			}
			var doc struct {
				Environments map[string]struct{ Stack Stack }
			}
			if err := yaml.Unmarshal(d.Inventory(), &doc); err != nil {
				t.Fatalf("the inventory is not YAML: %v\n%s", err, d.Inventory())
			}
			st := doc.Environments["prod"].Stack
			if !slices.Equal(slices.Sorted(slices.Values(st.Stateless)), tc.stateless) || len(st.Routes) != len(tc.routes) {
				t.Errorf("the written inventory says stateless %v, %d routes:\n%s", st.Stateless, len(st.Routes), d.Inventory())
			}
			for _, v := range tc.env {
				if want := v + ": ${" + v + "}"; !strings.Contains(string(d.Inventory()), want) {
					t.Errorf("the inventory does not take %s from the environment", v)
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
