package migcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchTemplates are realistic migrations, safe and unsafe; %[1]d makes names
// unique.
var benchTemplates = []string{
	`-- %[1]d: orders
SET lock_timeout = '5s';

CREATE TABLE orders_%[1]d (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL,
    total numeric(12, 2) NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_%[1]d_user ON orders_%[1]d (user_id);
`,
	`SET lock_timeout = '5s';
ALTER TABLE users ADD COLUMN nickname_%[1]d text;
ALTER TABLE users ADD COLUMN prefs_%[1]d jsonb NOT NULL DEFAULT '{}'::jsonb;
COMMENT ON COLUMN users.nickname_%[1]d IS 'shown in the header; DROP TABLE users is not run';
`,
	`-- unsafe: drops and renames while the old color runs
ALTER TABLE users DROP COLUMN legacy_%[1]d;
ALTER TABLE users RENAME COLUMN name_%[1]d TO full_name_%[1]d;
DROP TABLE IF EXISTS tmp_%[1]d;
`,
	`SET lock_timeout = '3s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_%[1]d ON users (lower(email));
ALTER TABLE orders ADD CONSTRAINT orders_user_%[1]d FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_user_%[1]d;
`,
	`BEGIN;
SET LOCAL lock_timeout = '5s';
ALTER TABLE events ADD COLUMN seen_%[1]d timestamptz DEFAULT clock_timestamp();
CREATE INDEX events_seen_%[1]d ON events (seen_%[1]d);
ALTER TABLE events ADD CONSTRAINT events_kind_%[1]d CHECK (kind <> '');
UPDATE events SET seen_%[1]d = created_at WHERE seen_%[1]d IS NULL;
COMMIT;
`,
	`-- taledeploy:contract
SET lock_timeout = '5s';
ALTER TABLE users ALTER COLUMN email_%[1]d SET NOT NULL; -- taledeploy:allow set-not-null
ALTER TABLE users ALTER COLUMN score_%[1]d TYPE bigint;
CREATE OR REPLACE FUNCTION touch_%[1]d() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now(); -- not a DROP COLUMN
  RETURN NEW;
END
$$;
`,
}

func BenchmarkCheck1000Files(b *testing.B) {
	dir := b.TempDir()
	for i := range 1000 {
		sql := fmt.Sprintf(benchTemplates[i%len(benchTemplates)], i)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%04d_m.sql", i)), []byte(sql), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	files, err := Files(dir)
	if err != nil || len(files) != 1000 {
		b.Fatalf("Files: %d, %v", len(files), err)
	}
	// The first parse in a process is not measured: the wasm parser compiles
	// its module then (about a second or more).
	if _, err := CheckSQL("warmup.sql", []byte("SELECT 1;")); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var n int
	for b.Loop() {
		fs, err := Check(files)
		if err != nil {
			b.Fatal(err)
		}
		n = len(fs)
	}
	b.ReportMetric(float64(len(files)*b.N)/b.Elapsed().Seconds(), "files/s")
	b.ReportMetric(float64(n), "findings")
}

// The benchmark's files parse and give the findings their templates mean to.
func TestBenchTemplates(t *testing.T) {
	want := [][]string{
		nil,
		nil,
		{"drop-column@2", "lock-timeout@2", "rename-column@3", "drop-table@4"},
		nil,
		{"volatile-default@3", "create-index@4", "add-check@5"},
		nil,
	}
	for i, tpl := range benchTemplates {
		g := got(t, "x.sql", fmt.Sprintf(tpl, i))
		if strings.Join(g, " ") != strings.Join(want[i], " ") {
			t.Errorf("template %d: %q, want %q", i, g, want[i])
		}
	}
}
