package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// jumpLog is the sandbox jump host's sshd log (LogLevel DEBUG1, see
// scripts/sandbox.sh): it names every connection the jump host forwards.
func jumpLog(t *testing.T) string {
	t.Helper()
	return string(readFile(t, filepath.Join(sandboxHosts(t)["jump"].state, "sshd.log")))
}

// jumpCounts counts the jump host's logins and its forwards to the host the
// one-host tests deploy to.
func jumpCounts(t *testing.T) (logins, forwards int) {
	l := jumpLog(t)
	host1 := regexp.QuoteMeta(sandboxHosts(t)[singleHost()].addr)
	// sshd -E ends lines with \r\n.
	forwardToHost1 := regexp.MustCompile(`(?m)server_request_direct_tcpip: originator \S+ port \d+, target ` + host1 + ` port 2222\r?$`)
	// From this machine, or from the relay in the jump host (wan on).
	jumpLogin := regexp.MustCompile(`(?m)^Accepted publickey for root from \S+ `)
	return len(jumpLogin.FindAllString(l, -1)), len(forwardToHost1.FindAllString(l, -1))
}

// TestProxyJump deploys to the sandbox host1 through the jump host, as a CI
// runner would: the inventory's address is an alias of an ssh config that
// gives HostName, Port, User, IdentityFile and a ProxyJump; the inventory has
// no port, user, identity_file or known_hosts; the host keys of both hosts
// come from TALEDEPLOY_KNOWN_HOSTS, and later the key from TALEDEPLOY_SSH_KEY.
// The jump sshd's log must show a login and a forward to host1 for each
// command: a connection that bypassed the jump host leaves none.
func TestProxyJump(t *testing.T) {
	s := newStack(t, "tale-jump", 18120)
	key := filepath.Join(s.repo, ".sandbox/id_ed25519")
	hosts := sandboxHosts(t)
	sshConfig := func(name, identity string) string {
		p := filepath.Join(s.work, name)
		cfg := fmt.Sprintf(`# The sandbox host, reached through the jump host.
Host tale-jump-target
  HostName %[2]s
  Port 2222
  User root
  ProxyJump sandbox-jump

Host sandbox-jump
  HostName %[3]s
  Port 2222
  User root

Host *
%[1]s`, identity, s.host.addr, hosts["jump"].addr)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withKeyFile := sshConfig("ssh_config", "  IdentityFile "+key+"\n")
	withoutKey := sshConfig("ssh_config_nokey", "")
	s.editInventory(fmt.Sprintf(`        address: %[2]s
        port: 2222
        user: root
        identity_file: %[1]s/.sandbox/id_ed25519
        known_hosts: %[1]s/.sandbox/host1/known_hosts
`, s.repo, s.host.addr), "        address: tale-jump-target\n")
	hostLine := strings.TrimSpace(string(readFile(t, filepath.Join(s.repo, ".sandbox/host1/known_hosts"))))
	jumpLine := strings.TrimSpace(string(readFile(t, filepath.Join(s.repo, ".sandbox/jump/known_hosts"))))
	t.Setenv("TALEDEPLOY_KNOWN_HOSTS", hostLine+"\n"+jumpLine+"\n")
	t.Setenv("TALEDEPLOY_SSH_CONFIG", withKeyFile)
	t.Setenv("SSH_AUTH_SOCK", "")

	// push: key file from the ssh config.
	logins0, forwards0 := jumpCounts(t)
	if r := s.taledeploy("push", "e2e", "--release", "j1"); r.failed() {
		t.Fatalf("push through the jump host failed: %v", r.err)
	}
	logins1, forwards1 := jumpCounts(t)
	if logins1 <= logins0 || forwards1 <= forwards0 {
		t.Fatalf("the push did not go through the jump host: its log has %d -> %d logins, %d -> %d forwards to host1:2222",
			logins0, logins1, forwards0, forwards1)
	}
	st := s.status()
	if st.Release != "j1" || st.Active == "" || len(st.Problems) > 0 {
		t.Errorf("status after the push: %s %s live, problems %q; want release j1", st.Active, st.Release, st.Problems)
	}
	if got := get(t, s.port); !strings.HasPrefix(got, st.Active+"/j1/") {
		t.Errorf("the stack serves %s, want %s/j1", got, st.Active)
	}
	logins2, forwards2 := jumpCounts(t)
	if logins2 <= logins1 || forwards2 <= forwards1 {
		t.Errorf("status did not go through the jump host: %d -> %d logins, %d -> %d forwards", logins1, logins2, forwards1, forwards2)
	}

	// status: the key's text from TALEDEPLOY_SSH_KEY, no IdentityFile anywhere.
	keyText := strings.TrimSpace(string(readFile(t, key)))
	t.Setenv("TALEDEPLOY_SSH_CONFIG", withoutKey)
	t.Setenv("TALEDEPLOY_SSH_KEY", keyText+"\n")
	if st := s.status(); st.Release != "j1" {
		t.Errorf("status with TALEDEPLOY_SSH_KEY: release %q, want j1", st.Release)
	}
	logins3, forwards3 := jumpCounts(t)
	if logins3 <= logins2 || forwards3 <= forwards2 {
		t.Errorf("status with TALEDEPLOY_SSH_KEY did not go through the jump host: %d -> %d logins, %d -> %d forwards", logins2, logins3, forwards2, forwards3)
	}

	// The jump host's key is verified too: without its line, nothing connects.
	t.Setenv("TALEDEPLOY_KNOWN_HOSTS", hostLine+"\n")
	r := s.taledeploy("status", "e2e")
	if !r.failed() || !strings.Contains(r.out, "host key unknown for jump host ["+hosts["jump"].addr+"]:2222") || !strings.Contains(r.out, "TALEDEPLOY_KNOWN_HOSTS") {
		t.Errorf("status with the jump host's key unknown: %v\n%s\nwant a refusal that names the jump host and TALEDEPLOY_KNOWN_HOSTS", r.err, r.out)
	}
	if _, forwards4 := jumpCounts(t); forwards4 != forwards3 {
		t.Errorf("a connection was forwarded through a jump host whose key was refused")
	}

	s.outMu.Lock()
	defer s.outMu.Unlock()
	for _, out := range s.outputs {
		if strings.Contains(out, strings.Split(keyText, "\n")[1]) {
			t.Errorf("the key's text from TALEDEPLOY_SSH_KEY appeared in the output")
		}
	}
}
