package main

import (
	"testing"

	"taledeploy/plan"
)

// --accept-new-host-key is global: it may come before or after the command, and
// it reaches the SSH configuration of every host.
func TestAcceptNewHostKeyFlag(t *testing.T) {
	t.Setenv("TALEDEPLOY_SSH_CONFIG", "none")
	h := &plan.Host{Name: "vps1", Address: "203.0.113.10", Port: 22, User: "deploy", KnownHosts: "/home/u/.ssh/known_hosts"}
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"push", "prod"}, false},
		{[]string{"--accept-new-host-key", "push", "prod"}, true},
		{[]string{"status", "prod", "--accept-new-host-key"}, true},
		{[]string{"rollback", "--accept-new-host-key", "prod"}, true},
	} {
		var cli CLI
		if _, err := newParser(&cli).Parse(tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		opts, err := cli.dialOptions()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := hostConfig(h, opts)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.AcceptNewHostKey != tc.want {
			t.Errorf("%q: AcceptNewHostKey = %v, want %v", tc.args, cfg.AcceptNewHostKey, tc.want)
		}
		if cfg.KnownHostsFile != h.KnownHosts || cfg.Address != h.Address || cfg.Port != h.Port || cfg.User != h.User {
			t.Errorf("%q: host settings not passed on: %+v", tc.args, cfg)
		}
	}
}
