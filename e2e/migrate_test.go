package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMigrations runs the expand/contract cycle on the shared PostgreSQL under
// load: an expand migration the old release survives, a migration that fails, an
// unsafe one refused, a contract one that waits for `migrate contract`, and the
// rollback that contract rules out. No request may fail throughout.
func TestMigrations(t *testing.T) {
	s := newStack(t, "tale-mig", 18092)
	dir := filepath.Join(s.work, "services/platform/migrations")
	write := func(name, sql string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	psql := func(query string) string {
		t.Helper()
		out, err := s.host.docker("exec", "-u", "postgres", s.project+"-db-1", "psql", "-d", "tale", "-tAc", query).CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q: %v: %s", query, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	const hasNote = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'visits' AND column_name = 'note'"

	if r := s.taledeploy("push", "e2e", "--release", "m1"); r.failed() || !strings.Contains(r.out, "applied 0001_visits.sql") {
		t.Fatalf("first push: %v:\n%s", r.err, r.out)
	}
	if got := s.status().Migrations["m1"]; !slices.Equal(got, []string{"0001_visits.sql"}) {
		t.Errorf("status: release m1 applied %v, want 0001_visits.sql", got)
	}
	l := startLoad(t, s.port, 60, 15)
	defer l.stopOnce()
	time.Sleep(2 * time.Second)

	// 1. An expand migration, and the old release keeps working with it: the push
	// is stopped right after its migrate step, before the new color starts.
	l.phase("1-expand-old-serves")
	write("0002_add_note.sql", "SET lock_timeout = '5s';\nALTER TABLE visits ADD COLUMN note text;\n")
	s.buildServices("-X main.build=2 -X main.note=true")
	r := s.taledeployEnv([]string{"TALEDEPLOY_KILL_AFTER=migrate"}, "push", "e2e", "--release", "m2")
	if !killed(r.err) || !strings.Contains(r.out, "applied 0002_add_note.sql") {
		t.Fatalf("push killed after its migration: %v:\n%s", r.err, r.out)
	}
	if got := psql(hasNote); got != "1" {
		t.Fatalf("column visits.note after the expand migration: %q", got)
	}
	time.Sleep(3 * time.Second)
	if got := l.served("1-expand-old-serves"); got["blue/m1/build 1"] == 0 || len(got) != 1 {
		t.Errorf("with the new column in place the old release should serve alone: %v", got)
	}

	// 2. The next push takes over and finishes; the migration is not run twice.
	l.phase("2-expand-push")
	r = s.taledeploy("push", "e2e", "--release", "m2")
	if r.failed() || strings.Contains(r.out, "applied 0002") || !strings.Contains(r.out, "none pending") {
		t.Errorf("push after the interrupted one: %v:\n%s", r.err, r.out)
	}
	expectServing(t, s.port, "green/m2/build 2")
	if got := psql("SELECT note FROM visits WHERE id = 1"); got != "m2" {
		t.Errorf("the new release should write visits.note: %q", got)
	}

	// 3. A migration that fails: the old color keeps serving, nothing switches.
	l.phase("3-failed-migration")
	write("0003_broken.sql", "SET lock_timeout = '5s';\nALTER TABLE no_such_table ADD COLUMN x int;\n")
	s.buildServices("-X main.build=3 -X main.note=true")
	r = s.taledeploy("push", "e2e", "--release", "m3")
	if !r.failed() || !strings.Contains(r.out, "migration failed: 0003_broken.sql") || !strings.Contains(r.out, "no_such_table") {
		t.Errorf("push with a failing migration: %v:\n%s", r.err, r.out)
	}
	for _, step := range []string{"start", "switch"} {
		if contains(r.steps(), step) {
			t.Errorf("the push ran %s after its migration failed: %v", step, r.steps())
		}
	}
	if st := s.status(); st.Active != "green" || st.Release != "m2" || len(st.Problems) > 0 {
		t.Errorf("after the failed migration: %s %s, problems %v", st.Active, st.Release, st.Problems)
	}
	os.Remove(filepath.Join(dir, "0003_broken.sql"))

	// 4. An unsafe migration that is not marked contract is refused before
	// anything is built; the release that needs it no longer uses the column.
	l.phase("4-unsafe-refused")
	write("0003_drop_note.sql", "SET lock_timeout = '5s';\nALTER TABLE visits DROP COLUMN note;\n")
	s.buildServices("-X main.build=4")
	r = s.taledeploy("push", "e2e", "--release", "m4")
	if !r.failed() || !strings.Contains(r.out, "0003_drop_note.sql:2: drop-column") || !strings.Contains(r.out, "NAME.contract.sql") {
		t.Errorf("push with an unmarked DROP COLUMN: %v:\n%s", r.err, r.out)
	}
	if contains(r.steps(), "images") || contains(r.steps(), "build") {
		t.Errorf("the refused push sent or built images: %v", r.steps())
	}

	// 5. Marked contract, the push leaves it for `migrate contract`.
	l.phase("5-contract-waits")
	if err := os.Rename(filepath.Join(dir, "0003_drop_note.sql"), filepath.Join(dir, "0003_drop_note.contract.sql")); err != nil {
		t.Fatal(err)
	}
	r = s.taledeploy("push", "e2e", "--release", "m4")
	if r.failed() || !strings.Contains(r.out, "wait for `taledeploy migrate contract`: 0003_drop_note.contract.sql") {
		t.Errorf("push with a contract migration: %v:\n%s", r.err, r.out)
	}
	if got := psql(hasNote); got != "1" {
		t.Errorf("the push ran the contract migration: note columns %q", got)
	}

	// 6. migrate contract refuses while the older release is kept for rollback,
	// then removes it when asked and drops the column.
	l.phase("6-contract")
	r = s.taledeploy("migrate", "contract", "e2e")
	if !r.failed() || exitCode(r.err) != 1 || !strings.Contains(r.out, s.project+"-green-platform-1 (release m2, exited)") || !strings.Contains(r.out, "--remove-old") {
		t.Errorf("migrate contract with the older release kept: exit %d:\n%s", exitCode(r.err), r.out)
	}
	if got := psql(hasNote); got != "1" {
		t.Errorf("a refused migrate contract dropped the column")
	}
	r = s.taledeploy("migrate", "contract", "e2e", "--remove-old")
	if r.failed() || !strings.Contains(r.out, "applied 0003_drop_note.contract.sql with release m4") {
		t.Errorf("migrate contract --remove-old: %v:\n%s", r.err, r.out)
	}
	if got := psql(hasNote); got != "0" {
		t.Errorf("column visits.note after migrate contract: %q", got)
	}
	st := s.status()
	for _, c := range st.Containers {
		if c.Color == "green" {
			t.Errorf("container %s of the older release is left", c.Name)
		}
	}
	if st.Contract == nil || st.Contract.Release != "m4" || st.Previous != nil {
		t.Errorf("status after contract: contract %+v, previous %+v", st.Contract, st.Previous)
	}

	// 7. Rollback past the contract is refused, with the reason.
	r = s.taledeploy("rollback", "e2e")
	if !r.failed() || !strings.Contains(r.out, "contract migrations (0003_drop_note.contract.sql) ran with release m4") {
		t.Errorf("rollback after contract: %v:\n%s", r.err, r.out)
	}
	expectServing(t, s.port, "blue/m4/build 4")

	// 8. history names each release's migrations, the interrupted push's too.
	r = s.taledeploy("history", "e2e")
	for _, want := range []string{`push +m1 .* 0001_visits\.sql +ok`, `push +m2 .* 0002_add_note\.sql +interrupted: interrupted at step migrate`,
		`contract +m4 .* 0003_drop_note\.contract\.sql +ok`} {
		if !regexp.MustCompile(want).MatchString(r.out) {
			t.Errorf("history lacks a line matching %s:\n%s", want, r.out)
		}
	}

	l.stopOnce()
	sent, failed := l.totals()
	t.Logf("load: %d requests sent, %d failed\n%s", sent, failed, l.report())
	if sent < 1000 || failed > 0 {
		t.Errorf("%d of %d requests failed:\n%s", failed, sent, l.report())
	}
	if got := psql("SELECT count FROM visits WHERE id = 1"); got == "" || got == "0" {
		t.Errorf("visit count after every push: %q", got)
	}
}
