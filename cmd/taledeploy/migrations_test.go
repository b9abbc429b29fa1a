package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"taledeploy/internal/stack"
)

// runMigrationsCheck parses args as the command line and runs the command,
// returning its output, its error and the exit status main would use.
func runMigrationsCheck(t *testing.T, args ...string) (out string, code int, err error) {
	t.Helper()
	var cli CLI
	k, err := newParser(&cli).Parse(args)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if k.Command() != "migrations check" && k.Command() != "migrations check <dir>" {
		t.Fatalf("%q: command %q", args, k.Command())
	}
	var buf bytes.Buffer
	err = cli.Migrations.Check.run(&cli, &buf)
	return buf.String(), exitCode(err), err
}

func writeMigrations(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, sql := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMigrationsCheckExitCodes(t *testing.T) {
	clean := writeMigrations(t, map[string]string{
		"0001_users.sql": "CREATE TABLE users (id bigint PRIMARY KEY, email text);",
		"0002_note.sql":  "SET lock_timeout = '5s';\nALTER TABLE users ADD COLUMN note text;",
		"0003_drop.contract.sql": "SET lock_timeout = '5s';\n" +
			"ALTER TABLE users DROP COLUMN note;",
	})
	unsafe := writeMigrations(t, map[string]string{
		"0001_drop.sql": "SET lock_timeout = '5s';\n-- ALTER TABLE users DROP COLUMN x; (a comment)\nALTER TABLE users DROP COLUMN email;",
	})
	bad := writeMigrations(t, map[string]string{
		"0001_ok.sql":  "SET lock_timeout = '5s';\nDROP TABLE t;",
		"0002_bad.sql": "SELECT 1;\n\nALTER TABLE users DROPP COLUMN email;",
	})

	out, code, err := runMigrationsCheck(t, "migrations", "check", clean)
	if code != 0 || err != nil || !strings.Contains(out, "3 migration files checked, no findings") {
		t.Errorf("clean: exit %d, %v, %q", code, err, out)
	}

	out, code, err = runMigrationsCheck(t, "migrations", "check", clean, unsafe)
	if code != exitFailed || !errors.Is(err, errFindings) {
		t.Errorf("unsafe: exit %d, %v", code, err)
	}
	if want := filepath.Join(unsafe, "0001_drop.sql") + ":3: drop-column: drop column users.email"; !strings.Contains(out, want) || !strings.Contains(out, "fix: ") {
		t.Errorf("unsafe: output %q, want %q", out, want)
	}
	if !strings.Contains(err.Error(), "1 finding in 4 files") {
		t.Errorf("unsafe: error %q", err)
	}

	out, code, err = runMigrationsCheck(t, "migrations", "check", bad)
	if code != exitBadInput || !errors.Is(err, stack.ErrBadInput) {
		t.Errorf("bad: exit %d, %v", code, err)
	}
	if want := filepath.Join(bad, "0002_bad.sql") + `:3: syntax error at or near "DROPP"`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("bad: error %v, want %q", err, want)
	}
	if !strings.Contains(out, "drop-table") {
		t.Errorf("bad: the good file's findings are printed too: %q", out)
	}

	_, code, err = runMigrationsCheck(t, "migrations", "check", filepath.Join(clean, "missing"))
	if code != exitBadInput || err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing folder: exit %d, %v", code, err)
	}

	// The default folder is ./migrations.
	t.Chdir(filepath.Dir(unsafe))
	if err := os.Rename(unsafe, "migrations"); err != nil {
		t.Fatal(err)
	}
	if _, code, _ = runMigrationsCheck(t, "migrations", "check"); code != exitFailed {
		t.Errorf("default folder: exit %d", code)
	}
}

func TestMigrationsCheckJSON(t *testing.T) {
	dir := writeMigrations(t, map[string]string{
		"0001_idx.sql": "CREATE INDEX users_email ON users (email);",
		"0002_bad.sql": "ALTER TABLE;",
	})
	out, code, _ := runMigrationsCheck(t, "--json", "migrations", "check", dir)
	if code != exitBadInput {
		t.Errorf("exit %d", code)
	}
	var rep struct {
		Files    int `json:"files"`
		Findings []struct {
			File, Rule, Message, Fix string
			Line                     int
			Contract                 bool
		} `json:"findings"`
		Errors []struct {
			File, Message string
			Line          int
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Files != 2 || len(rep.Findings) != 2 || len(rep.Errors) != 1 {
		t.Fatalf("report %+v", rep)
	}
	f := rep.Findings[0]
	if f.Rule != "create-index" || f.Line != 1 || f.Contract || f.Message == "" || f.Fix == "" || filepath.Base(f.File) != "0001_idx.sql" {
		t.Errorf("finding %+v", f)
	}
	if e := rep.Errors[0]; filepath.Base(e.File) != "0002_bad.sql" || e.Line != 1 || !strings.Contains(e.Message, "syntax error") {
		t.Errorf("error %+v", e)
	}

	clean := writeMigrations(t, map[string]string{"0001.sql": "SELECT 1;"})
	out, code, err := runMigrationsCheck(t, "migrations", "check", "--json", clean)
	if code != 0 || err != nil || !strings.Contains(out, `"findings": []`) || !strings.Contains(out, `"errors": []`) {
		t.Errorf("clean JSON: exit %d, %v, %s", code, err, out)
	}
}
