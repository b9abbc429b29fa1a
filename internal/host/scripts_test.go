package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sh runs script as the host's sh -c would, with args and stdin.
func sh(t *testing.T, script, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// A heartbeat cut off mid-way (the SSH connection lost) leaves the record
// as it was, never empty or half written; one for another holder's lock
// writes nothing and says so (exit 3).
func TestBeatScript(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "owner.json")
	old := `{"token":"t1","step":"switch"}`
	os.WriteFile(rec, []byte(old), 0o600)
	next := `{"token":"t1","step":"window"}`
	for _, cut := range []string{"", next[:10]} {
		if _, code := sh(t, beatScript, cut, dir, `"token":"t1"`, strconv.Itoa(len(next))); code == 0 {
			t.Errorf("a beat that received %d of %d bytes succeeded", len(cut), len(next))
		}
		if got, _ := os.ReadFile(rec); string(got) != old {
			t.Errorf("after a cut beat the record is %q", got)
		}
	}
	if _, code := sh(t, beatScript, next, dir, `"token":"t1"`, strconv.Itoa(len(next))); code != 0 {
		t.Fatalf("a whole beat failed: exit %d", code)
	}
	if got, _ := os.ReadFile(rec); string(got) != next {
		t.Errorf("the record is %q, want %q", got, next)
	}
	if _, code := sh(t, beatScript, `{"token":"t2"}`, dir, `"token":"t2"`, "14"); code != 3 {
		t.Errorf("a beat for another token: exit %d, want 3", code)
	}
}

// The gate changes in one command and says what it admits afterwards.
func TestGateScript(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "live")
	out, code := sh(t, gateScript, "", dir, "+platform-blue:8080", "+rag-blue:8000")
	if code != 0 || !slices.Equal(strings.Fields(out), []string{"platform-blue:8080", "rag-blue:8000"}) {
		t.Fatalf("admit: %q, exit %d", out, code)
	}
	out, code = sh(t, gateScript, "", dir, "+platform-green:8080", "-platform-blue:8080", "-rag-blue:8000", "-rag-blue:8000")
	if code != 0 || !slices.Equal(strings.Fields(out), []string{"platform-green:8080"}) {
		t.Errorf("switch: %q, exit %d", out, code)
	}
	if out, code := sh(t, gateScript, "", dir); code != 0 || strings.TrimSpace(out) != "platform-green:8080" {
		t.Errorf("list: %q, exit %d", out, code)
	}
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if os.Getuid() != 0 {
		if _, code := sh(t, gateScript, "", dir, "+x:1"); code == 0 {
			t.Errorf("a gate that cannot be written succeeded")
		}
	}
}

// The resources script reads, in one command, the host's available memory,
// the free space of the stack's folder and of Docker's data root, and each
// container's memory counter ("-" where none is found): with a docker on
// PATH that names the data root, as the real one does.
func TestResourcesScript(t *testing.T) {
	bin := t.TempDir()
	root := t.TempDir()
	os.WriteFile(filepath.Join(bin, "docker"), []byte("#!/bin/sh\necho "+root+"\n"), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	// Before the first push the stack's folder does not exist yet.
	dir := filepath.Join(t.TempDir(), "not", "yet")
	cmd := ResourcesCmd(dir, []string{"0123abcd"})
	out, code := sh(t, cmd.Argv[2], "", cmd.Argv[4:]...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var mem, df, cg int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "mem":
			mem++
		case len(f) == 2 && f[0] == "df":
			if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
				t.Errorf("df line %q", line)
			}
			df++
		case len(f) == 3 && f[0] == "cg" && f[1] == "0123abcd" && f[2] == "-":
			cg++
		default:
			t.Errorf("unexpected line %q", line)
		}
	}
	if mem != 1 || df != 2 || cg != 1 {
		t.Errorf("mem %d, df %d, cg %d lines, want 1, 2, 1:\n%s", mem, df, cg, out)
	}
	// Docker not answering fails the command: no figures made up.
	os.WriteFile(filepath.Join(bin, "docker"), []byte("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2; exit 1\n"), 0o755)
	if _, code := sh(t, cmd.Argv[2], "", cmd.Argv[4:]...); code == 0 {
		t.Errorf("the script succeeded with Docker down")
	}
}
