package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runFacts runs q's command with the real sh, its input cut to keep bytes
// when keep >= 0.
func runFacts(t *testing.T, q *Facts, keep int) []Answer {
	t.Helper()
	cmd, boundary := q.Cmd()
	c := exec.Command(cmd.Argv[0], cmd.Argv[1:]...)
	var in []byte
	if cmd.Stdin != nil {
		in = q.stdin.Bytes()
	}
	if keep >= 0 {
		in = in[:keep]
	}
	c.Stdin = strings.NewReader(string(in))
	out, err := c.Output()
	if err != nil {
		t.Fatalf("facts: %v", err)
	}
	as, err := ParseFacts(out, boundary, q.n)
	if err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	return as
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// One command reads, lists, makes and writes, each ask answered on its own;
// files come out byte for byte with their mode, made in a folder that did
// not exist.
func TestFactsScript(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("no newline"), 0o600)
	q := &Facts{}
	cat := q.Cat(filepath.Join(dir, "a"))
	missing := q.Cat(filepath.Join(dir, "nope"))
	mk := q.Mkdir(filepath.Join(dir, "m/n"), 0o700)
	secret := "line\n\x00binary\n\n"
	w := q.Write(filepath.Join(dir, "new/env"), []byte(secret), 0o600)
	w2 := q.Write(filepath.Join(dir, "a"), []byte("replaced\n"), 0o644)
	ap := q.Append(filepath.Join(dir, "hist"), []byte("one\n"), 0o600)
	ls := q.List(filepath.Join(dir, "new"))
	denied := q.Mkdir("/proc/taledeploy/x", 0o700)
	after := q.Cat(filepath.Join(dir, "a"))
	age := q.Age(filepath.Join(dir, "a"))
	as := runFacts(t, q, -1)
	if as[cat].Code != 0 || string(as[cat].Out) != "no newline" {
		t.Errorf("cat: %+v", as[cat])
	}
	if as[missing].Code != CodeMissing || !IsNotExist(as[missing].Err("nope")) {
		t.Errorf("cat of a missing file: %+v", as[missing])
	}
	if as[mk].Code != 0 || mode(t, filepath.Join(dir, "m/n")) != 0o700 {
		t.Errorf("mkdir: %+v", as[mk])
	}
	// The folders made on the way (remote_dir on a first push) are 0755, as
	// mkdir -p makes them for a user: only the one asked for is closed.
	if got := mode(t, filepath.Join(dir, "m")); got != 0o755 {
		t.Errorf("mkdir made its parent %v, want 0755", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "new/env")); as[w].Code != 0 || string(got) != secret || mode(t, filepath.Join(dir, "new/env")) != 0o600 {
		t.Errorf("write: %+v, %q", as[w], got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); as[w2].Code != 0 || string(got) != "replaced\n" || mode(t, filepath.Join(dir, "a")) != 0o644 {
		t.Errorf("write over: %+v, %q", as[w2], got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "hist")); as[ap].Code != 0 || string(got) != "one\n" || mode(t, filepath.Join(dir, "hist")) != 0o600 {
		t.Errorf("append: %+v, %q", as[ap], got)
	}
	if as[ls].Code != 0 || strings.TrimSpace(string(as[ls].Out)) != "env" {
		t.Errorf("ls shows %q: a temp file left behind?", as[ls].Out)
	}
	if as[denied].Code == 0 || as[denied].Stderr == "" || !strings.Contains(as[denied].Err("mkdir").Error(), "mkdir: ") {
		t.Errorf("a failed ask: %+v", as[denied])
	}
	if as[after].Code != 0 || string(as[after].Out) != "replaced\n" {
		t.Errorf("the ask after a failed one: %+v", as[after])
	}
	if f := strings.Fields(string(as[age].Out)); as[age].Code != 0 || len(f) != 2 {
		t.Errorf("age: %+v", as[age])
	}
	q = &Facts{}
	q.Append(filepath.Join(dir, "hist"), []byte("two\n"), 0o600)
	runFacts(t, q, -1)
	if got, _ := os.ReadFile(filepath.Join(dir, "hist")); string(got) != "one\ntwo\n" {
		t.Errorf("appended twice: %q", got)
	}
}

// Input cut short (a lost connection) leaves every file as it was: the piece
// cut is not renamed into place, and no later piece takes its bytes.
func TestFactsScriptCutShort(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("old a"), 0o600)
	os.WriteFile(b, []byte("old b"), 0o600)
	q := &Facts{}
	wa := q.Write(a, []byte("new a, long"), 0o600)
	wb := q.Write(b, []byte("new b"), 0o600)
	as := runFacts(t, q, 8)
	if as[wa].Code == 0 || as[wb].Code == 0 {
		t.Errorf("writes of a cut input succeeded: %+v %+v", as[wa], as[wb])
	}
	for p, want := range map[string]string{a: "old a", b: "old b"} {
		if got, _ := os.ReadFile(p); string(got) != want {
			t.Errorf("%s is %q, want %q", p, got, want)
		}
	}
	if es, _ := os.ReadDir(dir); len(es) != 2 {
		t.Errorf("left behind: %v", es)
	}
}

// The lock is taken in one rename with its owner inside; a second taker is
// told it is held; only the holder's mark removes it.
func TestFactsScriptLock(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "lock")
	take := func(tok string) int {
		q := &Facts{}
		i := q.Lock(lock, tok, []byte(`{"token":"`+tok+`"}`))
		return runFacts(t, q, -1)[i].Code
	}
	unlock := func(tok string) int {
		q := &Facts{}
		i := q.Unlock(lock, `"token":"`+tok+`"`)
		return runFacts(t, q, -1)[i].Code
	}
	if code := take("t1"); code != 0 {
		t.Fatalf("take a free lock: exit %d", code)
	}
	if got, _ := os.ReadFile(lock + "/owner.json"); string(got) != `{"token":"t1"}` {
		t.Errorf("owner %q", got)
	}
	if code := take("t2"); code != CodeHeld {
		t.Errorf("take a held lock: exit %d, want %d", code, CodeHeld)
	}
	if got, _ := os.ReadFile(lock + "/owner.json"); string(got) != `{"token":"t1"}` {
		t.Errorf("a second taker changed the owner: %q", got)
	}
	if es, _ := os.ReadDir(filepath.Dir(lock)); len(es) != 1 {
		t.Errorf("left behind: %v", es)
	}
	if code := unlock("t2"); code != CodeHeld {
		t.Errorf("unlock another's lock: exit %d", code)
	}
	if code := unlock("t1"); code != 0 {
		t.Errorf("unlock: exit %d", code)
	}
	if code := unlock("t1"); code != CodeMissing {
		t.Errorf("unlock a free lock: exit %d", code)
	}
	if code := take("t3"); code != 0 {
		t.Errorf("take after unlock: exit %d", code)
	}
}
