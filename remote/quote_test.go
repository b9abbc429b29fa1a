package remote

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteGolden(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"docker", "compose", "-p", "tale-blue", "up", "-d"}, "docker compose -p tale-blue up -d"},
		{[]string{"echo", ""}, "echo ''"},
		{[]string{"echo", "a b"}, "echo 'a b'"},
		{[]string{"echo", "it's"}, `echo 'it'\''s'`},
		{[]string{"echo", "$(reboot)"}, "echo '$(reboot)'"},
		{[]string{"echo", "`id`;rm -rf /"}, "echo '`id`;rm -rf /'"},
		{[]string{"env", "K=v w"}, "env 'K=v w'"},
		{[]string{"echo", "x\ny"}, "echo 'x\ny'"},
	} {
		if got := Quote(tc.argv); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}

// shellArgv runs the quoted text through a real POSIX shell and returns the argv
// the shell hands to the command: what a host's login shell would do.
func shellArgv(t testing.TB, argv []string) []string {
	script := "set -- " + Quote(argv) + "\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\n"
	cmd := exec.Command("/bin/sh", "-c", script)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sh: %v (script %q)", err, script)
	}
	got := strings.Split(out.String(), "\x00")
	return got[:len(got)-1]
}

func TestQuoteThroughShell(t *testing.T) {
	hostile := []string{"a b", "'", `"`, "$HOME", "$(touch /tmp/pwned)", "`id`", ";", "&&", "|", ">", "<", "*", "?", "~", "#x", "\\", "\n", "\t", "!", "{a,b}", "-rf", "", "é ü"}
	got := shellArgv(t, hostile)
	if !slices.Equal(got, hostile) {
		t.Fatalf("shell saw %q, want %q", got, hostile)
	}
}

// FuzzQuote proves that whatever the strings, the shell on the host receives
// exactly the intended argv: no word split, joined, expanded or executed.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"plain", "a b", "it's", "$(reboot)", "`x`", "\\'\"", "\n#", "*"} {
		f.Add(s, "second")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		// Process arguments cannot hold NUL, and the shell reads text, not bytes.
		if strings.ContainsRune(a+b, 0) || !utf8.ValidString(a+b) {
			t.Skip()
		}
		want := []string{"cmd", a, b}
		if got := shellArgv(t, want); !slices.Equal(got, want) {
			t.Fatalf("shell saw %q, want %q (quoted: %s)", got, want, Quote(want))
		}
	})
}
