package remote

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sshHome makes a home folder with .ssh/id_ed25519 and .ssh/id_work (empty
// files: Apply only checks they exist) and returns it.
func sshHome(t *testing.T) string {
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	for _, f := range []string{"id_ed25519", "id_work"} {
		os.WriteFile(filepath.Join(home, ".ssh", f), nil, 0o600)
	}
	return home
}

const testSSHConfig = `
# Explicit values first, defaults last: the first value wins.
Host web1 WEB2
  HostName %h.prod.example
  User deploy
  Port 2200
  IdentityFile ~/.ssh/id_work
  IdentityFile ~/.ssh/missing
  ProxyJump bastion

Host db1
  HostName 10.0.0.5
  ProxyJump admin@bastion:2201,ssh://inner, [2001:db8::7]:2022

Host bastion
  HostName bastion.example
  User jump
  Port 22022

Host inner
  HostName 10.0.0.2
  User hop

Host deep
  ProxyJump gateway
Host gateway
  HostName gw.example
  ProxyJump outer
Host outer
  HostName outer.example
  User o

Host loop
  ProxyJump loop2
Host loop2
  ProxyJump loop

Host legacy
  ProxyCommand nc -X 5 -x proxy:1080 %h %p

Host direct
  ProxyJump none

Host *
  IdentityFile %d/.ssh/id_ed25519
`

func TestSSHConfigApply(t *testing.T) {
	home := sshHome(t)
	sc, err := ParseSSHConfig("ssh_config", []byte(testSSHConfig))
	if err != nil {
		t.Fatal(err)
	}
	key := func(name string) string { return filepath.Join(home, ".ssh", name) }
	me := localUser()
	for _, tc := range []struct {
		name string
		in   Config
		want Config
	}{
		{"an alias: HostName with %h, User, Port, IdentityFile (a missing one skipped, Host * after it), ProxyJump alias",
			Config{Address: "web1"},
			Config{Address: "web1.prod.example", Port: 2200, User: "deploy", IdentityFiles: []string{key("id_work"), key("id_ed25519")},
				Jumps: []Hop{{Name: "bastion", Address: "bastion.example", Port: 22022, User: "jump", IdentityFiles: []string{key("id_ed25519")}}}}},
		{"host patterns match in lower case, %h keeps the name as written",
			Config{Address: "Web2"},
			Config{Address: "Web2.prod.example", Port: 2200, User: "deploy", IdentityFiles: []string{key("id_work"), key("id_ed25519")},
				Jumps: []Hop{{Name: "bastion", Address: "bastion.example", Port: 22022, User: "jump", IdentityFiles: []string{key("id_ed25519")}}}}},
		{"the inventory's port, user and identity file win",
			Config{Address: "web1", Port: 22, User: "root", IdentityFiles: []string{"/keys/deploy"}},
			Config{Address: "web1.prod.example", Port: 22, User: "root", IdentityFiles: []string{"/keys/deploy"},
				Jumps: []Hop{{Name: "bastion", Address: "bastion.example", Port: 22022, User: "jump", IdentityFiles: []string{key("id_ed25519")}}}}},
		{"several jump hosts: user@alias:port (its own values win), ssh:// and a bracketed IPv6 address with no entry",
			Config{Address: "db1", User: "deploy"},
			Config{Address: "10.0.0.5", User: "deploy", IdentityFiles: []string{key("id_ed25519")}, Jumps: []Hop{
				{Name: "admin@bastion:2201", Address: "bastion.example", Port: 2201, User: "admin", IdentityFiles: []string{key("id_ed25519")}},
				{Name: "ssh://inner", Address: "10.0.0.2", User: "hop", IdentityFiles: []string{key("id_ed25519")}},
				{Name: "[2001:db8::7]:2022", Address: "2001:db8::7", Port: 2022, User: me, IdentityFiles: []string{key("id_ed25519")}},
			}}},
		{"the first jump host's own ProxyJump comes before it",
			Config{Address: "deep", User: "u"},
			Config{Address: "deep", User: "u", IdentityFiles: []string{key("id_ed25519")}, Jumps: []Hop{
				{Name: "outer", Address: "outer.example", User: "o", IdentityFiles: []string{key("id_ed25519")}},
				{Name: "gateway", Address: "gw.example", User: me, IdentityFiles: []string{key("id_ed25519")}},
			}}},
		{"ProxyJump none",
			Config{Address: "direct", User: "u"},
			Config{Address: "direct", User: "u", IdentityFiles: []string{key("id_ed25519")}}},
		{"a host name with no entry of its own gets Host * only",
			Config{Address: "203.0.113.10", User: "u", Port: 2222},
			Config{Address: "203.0.113.10", User: "u", Port: 2222, IdentityFiles: []string{key("id_ed25519")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sc.Apply(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Apply(%+v)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestSSHConfigRefuses(t *testing.T) {
	sshHome(t)
	sc, err := ParseSSHConfig("ssh_config", []byte(testSSHConfig+"\nHost badport\n  Port 70000\nHost badjump\n  ProxyJump -oProxyCommand=evil\n"))
	if err != nil {
		t.Fatal(err)
	}
	for alias, want := range map[string]string{
		"loop":    "loop?",
		"legacy":  "ProxyCommand",
		"badport": `Port "70000"`,
		"badjump": `ProxyJump "-oProxyCommand=evil"`,
	} {
		if _, err := sc.Apply(Config{Address: alias, User: "u"}); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "ssh_config") {
			t.Errorf("Apply(%s) = %v, want an error naming the file and %q", alias, err, want)
		}
	}
}

func TestSSHConfigMissingFileIsEmpty(t *testing.T) {
	sc, err := LoadSSHConfig(filepath.Join(t.TempDir(), "config"))
	if err != nil {
		t.Fatal(err)
	}
	in := Config{Address: "web1", User: "u"}
	if got, err := sc.Apply(in); err != nil || !reflect.DeepEqual(got, in) {
		t.Errorf("Apply with no config file = %+v, %v; want it unchanged", got, err)
	}
	var none *SSHConfig
	if got, err := none.Apply(in); err != nil || !reflect.DeepEqual(got, in) {
		t.Errorf("Apply with no config = %+v, %v; want it unchanged", got, err)
	}
}

func TestParseJump(t *testing.T) {
	for in, want := range map[string]string{
		"host":                 "|host|0",
		"user@host":            "user|host|0",
		"user@host:2222":       "user|host|2222",
		"ssh://user@host:2222": "user|host|2222",
		"10.0.0.1:22":          "|10.0.0.1|22",
		"[::1]:2222":           "|::1|2222",
		"[::1]":                "|::1|0",
		"a@b@host":             "a@b|host|0",
		"host:0":               "error",
		"host:x":               "error",
		"-oProxyCommand=x":     "error",
		"user@":                "error",
		"ho st":                "error",
	} {
		u, h, p, err := parseJump(in)
		got := fmt.Sprintf("%s|%s|%d", u, h, p)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("parseJump(%q) = %s (%v), want %s", in, got, err, want)
		}
	}
}

// An alias of an ssh config whose ProxyJump names another alias, all three
// in-process servers: the connection goes through both jump hosts.
func TestSSHConfigProxyJumpDial(t *testing.T) {
	cfg, target, jumps := jumpSetup(t, 2)
	hp := func(addr string) (string, string) { h, p, _ := net.SplitHostPort(addr); return h, p }
	th, tp := hp(target.addr)
	j1h, j1p := hp(jumps[0].addr)
	j2h, j2p := hp(jumps[1].addr)
	text := fmt.Sprintf(`Host app
  HostName %s
  Port %s
  User deploy
  IdentityFile %s
  ProxyJump first,jumper@second
Host first
  HostName %s
  Port %s
  User jumper
Host second
  HostName %s
  Port %s
`, th, tp, cfg.IdentityFiles[0], j1h, j1p, j2h, j2p)
	sc, err := ParseSSHConfig("ssh_config", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := sc.Apply(Config{Name: "app", Address: "app", KnownHostsFile: cfg.KnownHostsFile})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), resolved)
	if err != nil {
		t.Fatalf("Dial %+v: %v", resolved, err)
	}
	defer c.Close()
	if out, err := c.Run(context.Background(), Cmd{Argv: []string{"echo", "ok"}}); err != nil || string(out) != "ok\n" {
		t.Fatalf("Run: %q, %v", out, err)
	}
	if jumps[0].forwards.Load() != 1 || jumps[1].forwards.Load() != 1 || target.logins.Load() != 1 {
		t.Errorf("forwards %d, %d and target logins %d; want 1, 1, 1", jumps[0].forwards.Load(), jumps[1].forwards.Load(), target.logins.Load())
	}
}

// FuzzSSHConfig: any config text is read or refused, never a panic, and what
// Apply resolves is an address and jump hosts that look like hosts.
func FuzzSSHConfig(f *testing.F) {
	f.Add([]byte(testSSHConfig), "web1")
	f.Add([]byte("Host *\n  ProxyJump a,b@c:22,ssh://d\n"), "x")
	f.Add([]byte("Match host x\n  HostName %h%%\n"), "x")
	f.Fuzz(func(t *testing.T, data []byte, alias string) {
		if bytes.Contains(bytes.ToLower(data), []byte("include")) {
			t.Skip("Include reads files of this machine (such as /dev/zero)")
		}
		sc, err := ParseSSHConfig("ssh_config", data)
		if err != nil {
			return
		}
		cfg, err := sc.Apply(Config{Address: alias, User: "u"})
		if err != nil {
			return
		}
		for _, j := range cfg.Jumps {
			if j.Address == "" || strings.HasPrefix(j.Address, "-") || j.Port < 0 || j.Port > 65535 {
				t.Fatalf("jump host %+v", j)
			}
		}
	})
}
