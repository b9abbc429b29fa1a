package plan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"taledeploy/internal/stack/stacktest"
	"testing"
)

const migrationsInventory = `      migrations:
        - {service: platform, dir: migrations, command: [/app/platform, migrate]}
`

// migrationStack is the good stack with a migrations folder holding files.
func migrationStack(t *testing.T, files map[string]string) *stack.Stack {
	t.Helper()
	p := stacktest.Write(t, strings.Replace(stacktest.Inventory, "      env:\n", migrationsInventory+"      env:\n", 1), stacktest.Compose)
	dir := filepath.Join(filepath.Dir(p), "migrations")
	os.Mkdir(dir, 0o755)
	for name, src := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644)
	}
	inv, err := stack.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s := inv.Environments["demo"].Stack
	return &s
}

func TestLoadRejectsBadMigrations(t *testing.T) {
	for _, c := range []struct{ entry, want string }{
		{"{service: db, dir: migrations, command: [x]}", "migrations of unknown service \"db\""},
		{"{service: platform, command: [x]}", "dir is missing"},
		{"{service: platform, dir: migrations}", "command is missing"},
		{"{service: platform, dir: nowhere, command: [x]}", "dir \"nowhere\" is not a folder"},
		{"{service: platform, dir: ../, command: [x]}", "must be inside"},
		{"{service: platform, dir: migrations, command: [x], sql: y}", "sql"},
	} {
		inv := strings.Replace(stacktest.Inventory, "      env:\n", "      migrations:\n        - "+c.entry+"\n      env:\n", 1)
		p := stacktest.Write(t, inv, stacktest.Compose)
		os.Mkdir(filepath.Join(filepath.Dir(p), "migrations"), 0o755)
		_, err := stack.Load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "inventory.yaml:") {
			t.Errorf("%s: got %v, want an error with file, line and %q", c.entry, err, c.want)
		}
	}
}

func TestPushAppliesOnlyPendingExpandMigrations(t *testing.T) {
	s := migrationStack(t, map[string]string{
		"0001_table.sql":           "SET lock_timeout = '5s';\nCREATE TABLE t (id int);\n",
		"0002_column.sql":          "SET lock_timeout = '5s';\nALTER TABLE t ADD COLUMN note text;\n",
		"0003_drop.contract.sql":   "SET lock_timeout = '5s';\nALTER TABLE t DROP COLUMN note;\n",
		"README.md":                "not a migration",
		"0004_later.sql.disabled":  "DROP TABLE t;",
		"0000_already_applied.sql": "SET lock_timeout = '5s';\nCREATE TABLE u (id int);\n",
	})
	f := &hosttest.Fake{}
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, color: stack.Green, release: "r1"}
	ctx := context.Background()
	if err := host.WriteMigrations(ctx, f, s, &host.MigrationLog{Applied: []host.AppliedMigration{{Service: "platform", File: "0000_already_applied.sql", Release: "r0"}}}); err != nil {
		t.Fatal(err)
	}
	msg, err := migrateExpand(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "applied 0001_table.sql, 0002_column.sql") || !strings.Contains(msg, "0003_drop.contract.sql") {
		t.Errorf("message %q", msg)
	}
	var ran []string
	for _, c := range f.Cmds {
		if i := slices.Index(c.Argv, "run"); i > 0 {
			// compose ... run --rm --no-deps -T --entrypoint /app/platform platform migrate FILE
			if got := c.Argv[i:]; !slices.Equal(got[:8], []string{"run", "--rm", "--no-deps", "-T", "--entrypoint", "/app/platform", "platform", "migrate"}) {
				t.Errorf("migration ran as %q", got)
			}
			ran = append(ran, c.Argv[len(c.Argv)-1])
		}
	}
	if !slices.Equal(ran, []string{"0001_table.sql", "0002_column.sql"}) {
		t.Errorf("ran %v, want the two pending expand migrations in order", ran)
	}
	log, err := host.ReadMigrations(ctx, f, s)
	if err != nil || len(log.Applied) != 3 || log.Applied[2].Release != "r1" || log.Applied[2].Kind != "expand" {
		t.Errorf("log after the push: %+v, %v", log, err)
	}
	// A second push has nothing to apply.
	f.Cmds = nil
	d.color, d.release = stack.Blue, "r2"
	if msg, err := migrateExpand(ctx, d); err != nil || !strings.HasPrefix(msg, "none pending") || len(f.Cmds) != 0 {
		t.Errorf("second push: %q, %v, ran %v", msg, err, f.Cmds)
	}
}

func TestPushRefusesUnsafeMigrationsUnlessContract(t *testing.T) {
	s := migrationStack(t, map[string]string{
		"0001_drop.sql": "SET lock_timeout = '5s';\n-- DROP TABLE in a comment does not count\nALTER TABLE t DROP COLUMN note;\n",
	})
	f := &hosttest.Fake{}
	d := &run{Deployer: &Deployer{Host: f, Stack: s}, color: stack.Blue, release: "r1"}
	_, err := d.checkPendingMigrations(context.Background())
	if !errors.Is(err, ErrUnsafeMigration) || !strings.Contains(err.Error(), "0001_drop.sql:3: drop-column") || !strings.Contains(err.Error(), "NAME.contract.sql") {
		t.Errorf("got %v, want the drop-column finding with its line and how to mark it contract", err)
	}
	if _, err := migrateExpand(context.Background(), d); !errors.Is(err, ErrUnsafeMigration) || len(f.Cmds) != 0 {
		t.Errorf("push applied an unsafe migration: %v, ran %v", err, f.Cmds)
	}
	os.Rename(filepath.Join(s.Root, "migrations", "0001_drop.sql"), filepath.Join(s.Root, "migrations", "0001_drop.contract.sql"))
	if msg, err := d.checkPendingMigrations(context.Background()); err != nil || msg != "no migration pending" {
		t.Errorf("a contract migration is not the push's: %q, %v", msg, err)
	}
}

func TestMigrateContractRefusesWhileAnOlderReleaseIsLeft(t *testing.T) {
	s := migrationStack(t, map[string]string{"0001_drop.contract.sql": "SET lock_timeout = '5s';\nALTER TABLE t DROP COLUMN note;\n"})
	f := &hosttest.Fake{}
	d := &Deployer{Host: f, Stack: s}
	cur := &Current{State: &host.State{Active: stack.Green, Release: "r2", Previous: &host.Slot{Color: stack.Blue, Release: "r1"}}, Live: stack.Green,
		Containers: []host.Container{{Name: "tale-blue-platform-1", Color: stack.Blue, Release: "r1", State: "exited"}, {Name: "tale-green-platform-1", Color: stack.Green, Release: "r2", State: "running"}}}
	err := d.MigrateContract(context.Background(), cur)
	if !errors.Is(err, ErrOlderRelease) || !strings.Contains(err.Error(), "tale-blue-platform-1 (release r1, exited)") || len(f.Cmds) != 0 {
		t.Fatalf("got %v (ran %v), want a refusal naming the stopped rollback container", err, f.Cmds)
	}
	cur.Containers = cur.Containers[1:]
	cur.State.Previous = nil
	if err := d.MigrateContract(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	log, _ := host.ReadMigrations(context.Background(), f, s)
	if log.Contract == nil || log.Contract.Release != "r2" || !slices.Equal(log.Contract.Files, []string{"0001_drop.contract.sql"}) {
		t.Fatalf("contract record %+v", log.Contract)
	}
	err = d.Rollback(context.Background(), cur)
	if !errors.Is(err, ErrNoRollback) || !strings.Contains(err.Error(), "contract migrations (0001_drop.contract.sql) ran with release r2") {
		t.Errorf("rollback after contract: %v", err)
	}
}
