package stack

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"taledeploy/internal/stack/stacktest"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// The env file reaches containers byte for byte: Compose's own parser reads
// back exactly the inventory's values, whatever they hold.
func TestEnvFileRoundTrip(t *testing.T) {
	values := map[string]string{
		"DOLLAR":      "pa$word123",
		"BRACES":      "${HOME} and $HOME and $$",
		"HASH":        "abc #def",
		"HASH_TIGHT":  "abc#def",
		"DOUBLE":      `"wrapped"`,
		"SINGLE":      "'abc123",
		"BOTH":        `it's "quoted"`,
		"BACKSLASH":   `C:\new\table\`,
		"ESCAPES":     `\n \t \$ \" \\ \0123`,
		"SPACES":      "  padded  ",
		"EMPTY":       "",
		"UNICODE":     "pässwörd ✓ 秘密",
		"EQUALS":      "a=b==c",
		"TRAILING_BS": `ends with \`,
	}
	s := &Stack{Env: values}
	got, err := dotenv.UnmarshalBytesWithLookup(s.envFile(), func(string) (string, bool) { return "LOOKED-UP", true })
	if err != nil {
		t.Fatalf("compose-go cannot read the env file (its message is not shown: it may quote a value)")
	}
	if !maps.Equal(got, values) {
		for k, want := range values {
			if got[k] != want {
				t.Errorf("%s: compose reads %q, want %q", k, got[k], want)
			}
		}
	}
}

// FuzzEnvFile: any value the inventory accepts (one line, no NUL) reads back
// exactly.
func FuzzEnvFile(f *testing.F) {
	f.Add("pa$word123")
	f.Add(`\"'${X}#`)
	f.Fuzz(func(t *testing.T, v string) {
		if hasControl(v) {
			t.Skip()
		}
		s := &Stack{Env: map[string]string{"V": v}}
		got, err := dotenv.UnmarshalBytesWithLookup(s.envFile(), func(string) (string, bool) { return "", false })
		if err != nil || got["V"] != v {
			t.Fatalf("%q reads back as %q (%v)", v, got["V"], err)
		}
	})
}

// Secrets stay out of the inventory: ${NAME} comes from the environment of the
// machine running taledeploy, env_files from local files; a missing one is
// named, its value never shown.
func TestResolveEnv(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".env.prod"), []byte("FROM_FILE=file-value\nOVERRIDDEN=file\nQUOTED=\"a #b\"\n"), 0o600)
	load := func(env string) *Environment {
		inv := strings.Replace(stacktest.Inventory, "      env:\n        SECRET: s3cret\n", env, 1)
		i, err := Load(stacktest.Write(t, inv, stacktest.Compose))
		if err != nil {
			t.Fatal(err)
		}
		e, _ := i.Env("demo")
		e.Stack.Root = dir
		return e
	}
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"DB_PASS": "db-secret-Ω", "HOST_TOKEN": "tok"}[k]
		return v, ok
	}
	e := load("      env_files: [.env.prod]\n      env:\n        POSTGRES_PASSWORD: ${DB_PASS}\n        URL: postgres://u:${DB_PASS}@db/x\n        LITERAL: $${HOME}\n        OVERRIDDEN: inventory\n")
	e.Hosts[0].Env = EnvMap{"TOKEN": "${HOST_TOKEN}"}
	if err := e.ResolveEnv(lookup); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"POSTGRES_PASSWORD": "db-secret-Ω", "URL": "postgres://u:db-secret-Ω@db/x", "LITERAL": "${HOME}",
		"OVERRIDDEN": "inventory", "FROM_FILE": "file-value", "QUOTED": "a #b", "TOKEN": "tok"}
	if got := e.StackFor("one").Env; !maps.Equal(got, want) {
		t.Errorf("env = %v, want %v", got, want)
	}

	e = load("      env:\n        A: ${NOPE_ONE}\n        B: x${NOPE_TWO}y\n")
	e.Hosts[0].Env = EnvMap{"C": "${DB_PASS}"}
	err := e.ResolveEnv(lookup)
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "NOPE_ONE (used by env A)") || !strings.Contains(err.Error(), "NOPE_TWO (used by env B)") {
		t.Errorf("missing variables: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "db-secret") {
		t.Errorf("the error shows a value: %v", err)
	}

	os.WriteFile(filepath.Join(dir, ".env.bad"), []byte("GOOD=1\nBAD=\"db-secret-unterminated\n"), 0o600)
	e = load("      env_files: [.env.bad]\n      env:\n        X: y\n")
	if err := e.ResolveEnv(lookup); err == nil || strings.Contains(err.Error(), "db-secret") || !strings.Contains(err.Error(), ".env.bad") {
		t.Errorf("a malformed env file: %v", err)
	}
	e = load("      env_files: [.env.missing]\n      env:\n        X: y\n")
	if err := e.ResolveEnv(lookup); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), ".env.missing") {
		t.Errorf("a missing env file: %v", err)
	}
}

// env_commands take a value from a command (a password manager), run once
// each, without a shell; a failing one is named with its own message, and
// nothing it printed on stdout is shown.
func TestEnvCommands(t *testing.T) {
	load := func(block string) *Environment {
		inv := strings.Replace(stacktest.Inventory, "      env:\n        SECRET: s3cret\n", block, 1)
		i, err := Load(stacktest.Write(t, inv, stacktest.Compose))
		if err != nil {
			t.Fatal(err)
		}
		e, _ := i.Env("demo")
		return e
	}
	none := func(string) (string, bool) { return "", false }
	e := load("      env_commands:\n        DB_PASSWORD: [printf, \"%s\\n\", \"pass word $HOME ;\"]\n        OVERRIDDEN: [printf, cmd]\n      env:\n        OVERRIDDEN: inventory\n")
	if err := e.ResolveEnv(none); err != nil {
		t.Fatal(err)
	}
	if got := e.StackFor("one").Env; got["DB_PASSWORD"] != "pass word $HOME ;" || got["OVERRIDDEN"] != "inventory" {
		t.Errorf("env = %q", got)
	}

	e = load("      env_commands:\n        DB_PASSWORD: [sh, -c, \"echo cmd-secret-output; echo 'item not found' >&2; exit 3\"]\n      env:\n        X: y\n")
	err := e.ResolveEnv(none)
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "env_commands DB_PASSWORD: sh failed") || !strings.Contains(err.Error(), "item not found") {
		t.Errorf("a failing command: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "cmd-secret-output") {
		t.Errorf("the error shows the command's output: %v", err)
	}
	// init writes NAME: ${NAME} for every variable: a command for NAME fills it
	// when the shell does not export it.
	e = load("      env_commands:\n        DB: [printf, from-command]\n      env:\n        DB: ${DB}\n")
	if err := e.ResolveEnv(none); err != nil || e.StackFor("one").Env["DB"] != "from-command" {
		t.Errorf("${DB} with DB from env_commands: %v, %q", err, e.StackFor("one").Env["DB"])
	}
	runs := 0
	e = load("      env_commands:\n        A: [x]\n      env:\n        X: y\n")
	for range 2 {
		e.ResolveEnvWith(none, func([]string) ([]byte, error) { runs++; return []byte("v\n"), nil })
	}
	if runs != 1 {
		t.Errorf("the command ran %d times, want once per run", runs)
	}
}
