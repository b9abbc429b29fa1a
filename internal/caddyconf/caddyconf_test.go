package caddyconf

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// testdata/tale.json is testdata/tale.Caddyfile as Caddy 2.11 adapts it
// (caddy adapt --config tale.Caddyfile).
func taleConfig(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/tale.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var opts = Options{Stateless: []string{"platform", "rag"}, Blue: "blue", Green: "green",
	StreamCloseDelay: 30 * time.Second, AdminSocket: "/run/caddy/admin.sock", GateRoot: "/run/caddy/live"}

// proxies lists the reverse_proxy handlers of a config by their first upstream.
func proxies(t *testing.T, cfg []byte) map[string][]map[string]any {
	t.Helper()
	var v any
	if err := json.Unmarshal(cfg, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string][]map[string]any{}
	walk(v, func(m map[string]any) {
		if m["handler"] == "reverse_proxy" {
			ups := m["upstreams"].([]any)
			dial := ups[0].(map[string]any)["dial"].(string)
			out[dial] = append(out[dial], m)
		}
	})
	return out
}

func TestGateKeepsTheTeamsConfig(t *testing.T) {
	in := taleConfig(t)
	cfg, found, err := Gate(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Upstream{{"rag", 8000}, {"platform", 8080}}; !slices.Equal(sorted(found), sorted(want)) {
		t.Errorf("gated %v, want %v", found, want)
	}
	ps := proxies(t, cfg)
	if len(ps["platform:8080"]) != 0 || len(ps["rag:8000"]) != 0 {
		t.Errorf("a stateless service is still proxied by its plain name: %v", ps)
	}
	// Every reverse_proxy to a stateless service is the gated pool of both colors.
	for _, first := range []string{"platform-blue:8080", "rag-blue:8000"} {
		for _, h := range ps[first] {
			ups := h["upstreams"].([]any)
			second := strings.Replace(first, "blue", "green", 1)
			if len(ups) != 2 || ups[1].(map[string]any)["dial"] != second {
				t.Errorf("upstreams %v, want %s then %s", ups, first, second)
			}
			active := h["health_checks"].(map[string]any)["active"].(map[string]any)
			if active["upstream"] != "127.0.0.1:2020" || active["uri"] != "/" {
				t.Errorf("active check %v does not ask the gate", active)
			}
			lb := h["load_balancing"].(map[string]any)
			if d := time.Duration(lb["try_duration"].(float64)); d < 5*time.Second {
				t.Errorf("try_duration %s: a request meeting the switch could fail", d)
			}
			if h["stream_close_delay"] == nil {
				t.Errorf("no stream_close_delay: streams would be cut at a config load")
			}
		}
	}
	if n := len(ps["platform-blue:8080"]); n != 2 {
		t.Errorf("%d reverse_proxy to platform, want both of the file's", n)
	}
	// The team's own settings stay: rag's header, transport and longer try
	// duration; a stateful service's and another upstream's proxies untouched.
	rag := ps["rag-blue:8000"][0]
	if rag["headers"] == nil || rag["transport"].(map[string]any)["read_timeout"] != float64(30*time.Second) ||
		rag["load_balancing"].(map[string]any)["try_duration"] != float64(10*time.Second) {
		t.Errorf("rag's own settings were lost: %v", rag)
	}
	for _, dial := range []string{"static:80", "db:5432"} {
		if len(ps[dial]) != 1 || ps[dial][0]["health_checks"] != nil {
			t.Errorf("%s was changed: %v", dial, ps[dial])
		}
	}
	for _, kept := range []string{`"handler": "encode"`, `"X-Frame-Options"`, `"maintenance"`, `"module": "internal"`, `"strip_path_prefix": "/rag"`} {
		if !strings.Contains(string(cfg), kept) {
			t.Errorf("the config lost %s of the Caddyfile", kept)
		}
	}
	// taledeploy's own parts: the admin socket, the gate, a quiet log.
	var c struct {
		Admin struct {
			Listen string
			Config struct{ Persist *bool }
		}
		Logging struct {
			Logs map[string]struct{ Exclude []string }
		}
		Apps struct {
			HTTP struct{ Servers map[string]json.RawMessage } `json:"http"`
		}
	}
	json.Unmarshal(cfg, &c)
	if c.Admin.Listen != "unix//run/caddy/admin.sock" || c.Admin.Config.Persist == nil || *c.Admin.Config.Persist {
		t.Errorf("admin %+v", c.Admin)
	}
	if gate := string(c.Apps.HTTP.Servers["taledeploy_gate"]); !strings.Contains(gate, "127.0.0.1:2020") || !strings.Contains(gate, "/run/caddy/live") {
		t.Errorf("gate server %s", gate)
	}
	if !slices.Contains(c.Logging.Logs["default"].Exclude, "http.handlers.reverse_proxy.health_checker.active") {
		t.Errorf("the gate's checks would fill the log: %+v", c.Logging)
	}
	// The same file gives the same config: a push with no change loads nothing.
	again, _, _ := Gate(in, opts)
	if string(again) != string(cfg) {
		t.Errorf("Gate is not deterministic")
	}
}

func sorted(u []Upstream) []Upstream {
	u = slices.Clone(u)
	slices.SortFunc(u, func(a, b Upstream) int { return strings.Compare(a.String(), b.String()) })
	return u
}

// What would break the switch is refused with the reason and the fix.
func TestGateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"own active health check", `"upstreams": [{"dial": "rag:8000"}]`, `"health_checks": {"active": {"uri": "/healthz"}}, "upstreams": [{"dial": "rag:8000"}]`,
			[]string{"rag:8000 has its own active health check", "health_path: /healthz"}},
		{"two colors' service and another upstream", `[{"dial": "rag:8000"}]`, `[{"dial": "rag:8000"}, {"dial": "10.0.0.5:8000"}]`,
			[]string{"also lists 10.0.0.5:8000"}},
		{"two stateless services in one", `[{"dial": "rag:8000"}]`, `[{"dial": "rag:8000"}, {"dial": "platform:8080"}]`,
			[]string{"lists rag:8000 and platform:8080"}},
		{"dynamic upstreams", `"upstreams": [{"dial": "rag:8000"}]`, `"dynamic_upstreams": {"source": "a"}, "upstreams": [{"dial": "rag:8000"}]`,
			[]string{"dynamic upstreams"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := compact(t, taleConfig(t))
			changed := strings.Replace(in, compactStr(t, tc.from), compactStr(t, tc.to), 1)
			if changed == in {
				t.Fatalf("the fixture has no %s", tc.from)
			}
			_, _, err := Gate([]byte(changed), opts)
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("err %v, want ErrConflict", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, _, err := Gate([]byte(`{"apps":{"http":{"servers":{"srv0":{"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"db:5432"}]}]}]}}}}}`), opts); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "no reverse_proxy in it sends traffic to a stateless service") {
		t.Errorf("a Caddyfile that proxies to no stateless service: %v", err)
	}
}

func compact(t *testing.T, data []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// compactStr compacts a JSON fragment written with spaces.
func compactStr(t *testing.T, s string) string {
	t.Helper()
	return strings.NewReplacer(`": `, `":`, `, "`, `,"`, `}, {`, `},{`, `"}, `, `"},`).Replace(s)
}

// An app reached over TLS keeps its transport, but the gate's check (plain
// HTTP on the proxy's loopback) is sent without TLS.
func TestGateTLSTransport(t *testing.T) {
	in := `{"apps":{"http":{"servers":{"s":{"routes":[{"handle":[{"handler":"reverse_proxy","transport":{"protocol":"http","tls":{}},"upstreams":[{"dial":"platform:8443"}]}]}]}}}}}`
	cfg, _, err := Gate([]byte(in), opts)
	if err != nil {
		t.Fatal(err)
	}
	h := proxies(t, cfg)["platform-blue:8443"][0]
	tlsCfg := h["transport"].(map[string]any)["tls"].(map[string]any)
	if ports, _ := tlsCfg["except_ports"].([]any); !slices.Contains(ports, any("2020")) {
		t.Errorf("the gate's check would speak TLS: %v", tlsCfg)
	}
}

// A config is gated when every proxy to a color of a stateless service asks
// the gate; the team's own proxies (to a stateful service) do not count.
func TestGated(t *testing.T) {
	cfg, _, err := Gate(taleConfig(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	json.Unmarshal(cfg, &v)
	if !Gated(v, opts) {
		t.Errorf("the gated tale config (with its proxies to static and db) is not seen as gated")
	}
	var team any
	json.Unmarshal(taleConfig(t), &team)
	if Gated(team, opts) {
		t.Errorf("the team's own config is seen as gated")
	}
	old := `{"s":{"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"platform-blue:8080"},{"dial":"platform-green:8080"}]}]}]}}`
	json.Unmarshal([]byte(old), &v)
	if Gated(v, opts) {
		t.Errorf("both colors without the gate are seen as gated")
	}
}
