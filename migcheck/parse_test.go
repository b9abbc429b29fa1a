package migcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// lt sets a lock timeout, so that a case shows only the rule it is about; its
// statements start on line 2.
const lt = "SET lock_timeout = '5s';\n"

// got runs CheckSQL and returns "rule@line" for each finding.
func got(t *testing.T, name, sql string) []string {
	t.Helper()
	fs, err := CheckSQL(name, []byte(sql))
	if err != nil {
		t.Fatalf("CheckSQL: %v", err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s@%d", f.Rule, f.Line))
		if f.File != name || f.Message == "" || f.Fix == "" {
			t.Errorf("finding lacks file, message or fix: %+v", f)
		}
	}
	return out
}

type checkCase struct {
	name string
	sql  string
	want []string // rule@line
}

func runCases(t *testing.T, file string, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if g := got(t, file, tc.sql); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("findings %q, want %q\nSQL:\n%s", g, tc.want, tc.sql)
			}
		})
	}
}

// Every rule: a finding with the right rule, on the statement's line.
func TestRules(t *testing.T) {
	runCases(t, "0001_x.sql", []checkCase{
		{"drop column", lt + "ALTER TABLE users DROP COLUMN email;", []string{"drop-column@2"}},
		{"drop column if exists", lt + "ALTER TABLE users DROP COLUMN IF EXISTS email CASCADE;", []string{"drop-column@2"}},
		{"drop table", lt + "DROP TABLE legacy;", []string{"drop-table@2"}},
		{"drop table schema", lt + "DROP TABLE IF EXISTS app.legacy, app.other;", []string{"drop-table@2"}},
		{"rename column", lt + "ALTER TABLE users RENAME COLUMN email TO mail;", []string{"rename-column@2"}},
		{"rename column short", lt + "ALTER TABLE users RENAME email TO mail;", []string{"rename-column@2"}},
		{"rename table", lt + "ALTER TABLE users RENAME TO people;", []string{"rename-table@2"}},
		{"alter column type", lt + "ALTER TABLE users ALTER COLUMN id TYPE bigint;", []string{"alter-column-type@2"}},
		{"alter column set data type", lt + "ALTER TABLE users ALTER id SET DATA TYPE bigint USING id::bigint;", []string{"alter-column-type@2"}},
		{"set not null", lt + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;", []string{"set-not-null@2"}},
		{"add column not null", lt + "ALTER TABLE users ADD COLUMN age int NOT NULL;", []string{"add-column-not-null@2"}},
		{"add column not null default null", lt + "ALTER TABLE users ADD COLUMN age int DEFAULT NULL NOT NULL;", []string{"add-column-not-null@2"}},
		{"add column primary key", lt + "ALTER TABLE users ADD COLUMN uid int PRIMARY KEY;", []string{"add-column-not-null@2"}},
		{"volatile default random", lt + "ALTER TABLE users ADD COLUMN r float8 DEFAULT random();", []string{"volatile-default@2"}},
		{"volatile default clock_timestamp", lt + "ALTER TABLE users ADD COLUMN seen timestamptz NOT NULL DEFAULT clock_timestamp();", []string{"volatile-default@2"}},
		{"volatile default uuid", lt + "ALTER TABLE users ADD COLUMN u uuid DEFAULT gen_random_uuid();", []string{"volatile-default@2"}},
		{"volatile default qualified", lt + "ALTER TABLE users ADD COLUMN u uuid DEFAULT public.uuid_generate_v4();", []string{"volatile-default@2"}},
		{"volatile default in expression", lt + "ALTER TABLE users ADD COLUMN n int DEFAULT (random() * 10)::int;", []string{"volatile-default@2"}},
		{"volatile default nextval", lt + "ALTER TABLE users ADD COLUMN n bigint DEFAULT nextval('users_n_seq');", []string{"volatile-default@2"}},
		{"serial", lt + "ALTER TABLE users ADD COLUMN n bigserial;", []string{"volatile-default@2"}},
		{"identity", lt + "ALTER TABLE users ADD COLUMN n int GENERATED ALWAYS AS IDENTITY;", []string{"volatile-default@2"}},
		{"stored generated", lt + "ALTER TABLE users ADD COLUMN l int GENERATED ALWAYS AS (length(name)) STORED;", []string{"volatile-default@2"}},
		{"create index", lt + "CREATE INDEX users_email ON users (email);", []string{"create-index@2"}},
		{"create unique index", lt + "CREATE UNIQUE INDEX IF NOT EXISTS users_email ON app.users USING btree (lower(email));", []string{"create-index@2"}},
		{"concurrent index in transaction", lt + "BEGIN;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nCOMMIT;", []string{"concurrent-in-transaction@3"}},
		{"concurrent index in start transaction", lt + "START TRANSACTION;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nCOMMIT;", []string{"concurrent-in-transaction@3"}},
		{"drop index concurrently in transaction", lt + "BEGIN;\nDROP INDEX CONCURRENTLY users_email;\nCOMMIT;", []string{"concurrent-in-transaction@3"}},
		{"foreign key", lt + "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id);", []string{"add-foreign-key@2"}},
		{"foreign key on new column", lt + "ALTER TABLE orders ADD COLUMN user_id bigint REFERENCES users (id);", []string{"add-foreign-key@2"}},
		{"check", lt + "ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0);", []string{"add-check@2"}},
		{"no lock timeout", "-- add an index\n\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nALTER TABLE users ADD COLUMN x int;", []string{"lock-timeout@3"}},
		{"lock timeout after the first lock", "ALTER TABLE users ADD COLUMN x int;\nSET lock_timeout = '5s';\nALTER TABLE users ADD COLUMN y int;", []string{"lock-timeout@1"}},
		{"lock timeout zero", "SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN x int;", []string{"lock-timeout@2"}},
		{"lock timeout zero string", "SET lock_timeout TO '0ms';\nALTER TABLE users ADD COLUMN x int;", []string{"lock-timeout@2"}},
		{"lock timeout reset", lt + "RESET lock_timeout;\nALTER TABLE users ADD COLUMN x int;", []string{"lock-timeout@3"}},
		{"lock timeout default", lt + "SET lock_timeout TO DEFAULT;\nALTER TABLE users ADD COLUMN x int;", []string{"lock-timeout@3"}},
		{"set local ends at commit", "BEGIN;\nSET LOCAL lock_timeout = '5s';\nALTER TABLE users ADD COLUMN x int;\nCOMMIT;\nALTER TABLE users ADD COLUMN y int;", []string{"lock-timeout@5"}},
		{"statement timeout is not lock timeout", "SET statement_timeout = '5s';\nDROP INDEX CONCURRENTLY users_email;", []string{"lock-timeout@2"}},
		{"foreign key of a new table locks the old one", "CREATE TABLE orders (id bigint, user_id bigint REFERENCES users (id));", []string{"lock-timeout@1"}},
		{"several in one statement", lt + "ALTER TABLE users DROP COLUMN a, ALTER COLUMN b SET NOT NULL;", []string{"drop-column@2", "set-not-null@2"}},
	})
}

// The safe forms: no finding.
func TestSafeForms(t *testing.T) {
	runCases(t, "0001_x.sql", []checkCase{
		{"create table", "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, at timestamptz DEFAULT clock_timestamp());", nil},
		{"add nullable column", lt + "ALTER TABLE users ADD COLUMN note text;", nil},
		{"constant default", lt + "ALTER TABLE users ADD COLUMN status text NOT NULL DEFAULT 'new';", nil},
		{"constant default cast", lt + "ALTER TABLE users ADD COLUMN prefs jsonb NOT NULL DEFAULT '{}'::jsonb;", nil},
		{"constant default expression", lt + "ALTER TABLE users ADD COLUMN n int DEFAULT 60 * 60 * 24;", nil},
		{"stable default now", lt + "ALTER TABLE users ADD COLUMN created timestamptz NOT NULL DEFAULT now();", nil},
		{"stable default current_timestamp", lt + "ALTER TABLE users ADD COLUMN created timestamptz DEFAULT CURRENT_TIMESTAMP;", nil},
		{"concurrent index", lt + "CREATE INDEX CONCURRENTLY users_email ON users (email);", nil},
		{"concurrent index after commit", lt + "BEGIN;\nALTER TABLE users ADD COLUMN x int;\nCOMMIT;\nCREATE INDEX CONCURRENTLY users_x ON users (x);", nil},
		{"not valid then validate", lt +
			"ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n" +
			"ALTER TABLE orders VALIDATE CONSTRAINT orders_user;\n" +
			"ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0) NOT VALID;\n" +
			"ALTER TABLE orders VALIDATE CONSTRAINT orders_total;", nil},
		{"set local lock timeout", "BEGIN;\nSET LOCAL lock_timeout = '5s';\nALTER TABLE users ADD COLUMN x int;\nCOMMIT;", nil},
		{"set session lock timeout", "SET SESSION lock_timeout = 5000;\nALTER TABLE users ADD COLUMN x int;", nil},
		{"new table in the same file", "CREATE TABLE t (id int);\nCREATE INDEX t_id ON t (id);\n" +
			"ALTER TABLE t ADD COLUMN n int NOT NULL;\nALTER TABLE t ADD CONSTRAINT t_n CHECK (n > 0);\n" +
			"ALTER TABLE t RENAME COLUMN n TO m;\nDROP TABLE t;", nil},
		{"data only", "INSERT INTO settings (k, v) VALUES ('a', 'b');\nUPDATE users SET note = '' WHERE note IS NULL;", nil},
		{"empty file", "", nil},
		{"comments only", "-- nothing yet\n/* later */\n", nil},
	})
}

// Comments, string literals, dollar quotes and identifiers cannot fool the
// parser.
func TestTraps(t *testing.T) {
	runCases(t, "0001_x.sql", []checkCase{
		{"line comment", lt + "-- ALTER TABLE users DROP COLUMN email;\nALTER TABLE users ADD COLUMN note text; -- DROP TABLE users;", nil},
		{"block comment", lt + "/* ALTER TABLE users DROP COLUMN email;\n   DROP TABLE users; */\nSELECT 1;", nil},
		{"nested block comment", lt + "/* outer /* DROP TABLE users; */ ALTER TABLE users DROP COLUMN email; */\nSELECT 1;", nil},
		{"string literal", lt + "INSERT INTO audit (note) VALUES ('ALTER TABLE users DROP COLUMN email; DROP TABLE users;');", nil},
		{"escape string", lt + "INSERT INTO audit (note) VALUES (E'it\\'s; DROP TABLE users; --');", nil},
		{"dollar quoted DO", lt + "DO $body$\nBEGIN\n  RAISE NOTICE 'ALTER TABLE users DROP COLUMN email';\nEND\n$body$;", nil},
		{"multibyte text before", "-- 日本語のコメント\n" + lt + "INSERT INTO t VALUES ('ÄÖÜ; DROP TABLE t;');\nALTER TABLE users DROP COLUMN émail;", []string{"drop-column@4"}},
		{"dollar quoted function", lt + "CREATE FUNCTION purge() RETURNS void LANGUAGE sql AS $$ DROP TABLE users $$;", nil},
		{"column named drop_column", lt + "ALTER TABLE users ADD COLUMN drop_column text;\nSELECT drop_column FROM users;", nil},
		{"quoted identifiers", lt + "CREATE TABLE \"drop table\" (id int);\nALTER TABLE users ADD COLUMN \"DROP COLUMN\" int;", nil},
		{"allow inside a string", lt + "INSERT INTO t VALUES ('-- taledeploy:allow drop-column');\nALTER TABLE a DROP COLUMN x;", []string{"drop-column@3"}},
	})
}

func TestAllowComments(t *testing.T) {
	runCases(t, "0001_x.sql", []checkCase{
		{"line before", lt + "-- taledeploy:allow drop-column\nALTER TABLE users DROP COLUMN email;", nil},
		{"lines before", lt + "-- the column is unused since v3\n-- taledeploy:allow drop-column\n\nALTER TABLE users DROP COLUMN email;", nil},
		{"same line", lt + "ALTER TABLE users DROP COLUMN email; -- taledeploy:allow drop-column", nil},
		{"inside a multi-line statement", lt + "ALTER TABLE users\n  DROP COLUMN email -- taledeploy:allow drop-column\n;", nil},
		{"block comment", lt + "/* taledeploy:allow drop-table */ DROP TABLE legacy;", nil},
		{"with a reason", lt + "-- taledeploy:allow drop-column -- unused since v3\nALTER TABLE users DROP COLUMN email;", nil},
		{"several rules", lt + "-- taledeploy:allow drop-column, set-not-null\nALTER TABLE users DROP COLUMN a, ALTER COLUMN b SET NOT NULL;", nil},
		{"lock timeout", "-- taledeploy:allow lock-timeout\nCREATE INDEX CONCURRENTLY users_email ON users (email);", nil},
		{"wrong rule", lt + "-- taledeploy:allow drop-table\nALTER TABLE users DROP COLUMN email;", []string{"drop-column@3"}},
		{"only one of two rules", lt + "-- taledeploy:allow drop-column\nALTER TABLE users DROP COLUMN a, ALTER COLUMN b SET NOT NULL;", []string{"set-not-null@3"}},
		{"next statement only", lt + "-- taledeploy:allow drop-column\nALTER TABLE a DROP COLUMN x;\nALTER TABLE b DROP COLUMN y;", []string{"drop-column@4"}},
		{"trailing allow stays on its line", lt + "ALTER TABLE a DROP COLUMN x; -- taledeploy:allow drop-column\nALTER TABLE b DROP COLUMN y;", []string{"drop-column@3"}},
		{"unknown rule", lt + "-- taledeploy:allow drop-colum\nALTER TABLE users DROP COLUMN email;", []string{"unknown-rule@2", "drop-column@3"}},
		{"unknown rule beside a known one", lt + "-- taledeploy:allow drop-column dorp-table\nALTER TABLE users DROP COLUMN email;", []string{"unknown-rule@2"}},
		{"unknown-rule cannot be allowed", lt + "-- taledeploy:allow unknown-rule\nSELECT 1;", []string{"unknown-rule@2"}},
		{"no rule", lt + "-- taledeploy:allow\nALTER TABLE users DROP COLUMN email;", []string{"unknown-rule@2", "drop-column@3"}},
		{"unknown directive", lt + "-- taledeploy:alow drop-column\nALTER TABLE users DROP COLUMN email;", []string{"unknown-rule@2", "drop-column@3"}},
		{"other comments", lt + "-- TODO: taledeploy: later\nSELECT 1;", nil},
	})
	fs, _ := CheckSQL("x.sql", []byte("-- taledeploy:allow drop-colum\nSELECT 1;"))
	if len(fs) != 1 || !strings.Contains(fs[0].Fix, "did you mean drop-column?") {
		t.Errorf("unknown rule: want a did-you-mean fix, got %+v", fs)
	}
}

// In a contract migration the contract rules are allowed; lock rules are not.
func TestContract(t *testing.T) {
	sql := lt +
		"ALTER TABLE users DROP COLUMN legacy;\n" +
		"DROP TABLE old_things;\n" +
		"ALTER TABLE users RENAME COLUMN a TO b;\n" +
		"ALTER TABLE users RENAME TO people;\n" +
		"ALTER TABLE people ALTER COLUMN id TYPE bigint;\n" +
		"ALTER TABLE people ALTER COLUMN b SET NOT NULL;\n" +
		"CREATE INDEX people_b ON people (b);\n" +
		"ALTER TABLE people ADD COLUMN c int NOT NULL;\n"
	lockOnly := []string{"create-index@8", "add-column-not-null@9"}
	if g := got(t, "0005_drop_legacy.contract.sql", sql); !reflect.DeepEqual(g, lockOnly) {
		t.Errorf("by name: %q, want %q", g, lockOnly)
	}
	if g := got(t, "0005_drop_legacy.sql", "-- taledeploy:contract\n"+sql); !reflect.DeepEqual(g, []string{"create-index@9", "add-column-not-null@10"}) {
		t.Errorf("by first line: %q", g)
	}
	all := []string{"drop-column@2", "drop-table@3", "rename-column@4", "rename-table@5", "alter-column-type@6", "set-not-null@7", "create-index@8", "add-column-not-null@9"}
	fs, err := CheckSQL("0005_drop_legacy.sql", []byte(sql))
	if err != nil {
		t.Fatal(err)
	}
	var g []string
	for _, f := range fs {
		g = append(g, fmt.Sprintf("%s@%d", f.Rule, f.Line))
		if r, _ := LookupRule(f.Rule); f.Contract != r.Contract || f.Contract != (f.Line <= 7) {
			t.Errorf("%s: Contract = %v", f.Rule, f.Contract)
		}
	}
	if !reflect.DeepEqual(g, all) {
		t.Errorf("not a contract: %q, want %q", g, all)
	}
	// The marker counts only on the first line.
	if g := got(t, "0005.sql", lt+"-- taledeploy:contract\nDROP TABLE t;"); !reflect.DeepEqual(g, []string{"unknown-rule@2", "drop-table@3"}) {
		t.Errorf("marker on line 2: %q", g)
	}
	for _, tc := range []struct {
		name, src string
		want      bool
	}{
		{"migrations/0005_drop_legacy.contract.sql", "", true},
		{"0005_drop_legacy.sql", "-- taledeploy:contract\nDROP TABLE t;", true},
		{"0005_drop_legacy.sql", "  -- taledeploy:contract  \r\nDROP TABLE t;", true},
		{"0005_drop_legacy.sql", "DROP TABLE t; -- taledeploy:contract", false},
		{"0005_drop_legacy.sql", "\n-- taledeploy:contract", false},
		{"contract/0005.sql", "", false},
		{"0005_contract.sql", "", false},
	} {
		if g := IsContract(tc.name, []byte(tc.src)); g != tc.want {
			t.Errorf("IsContract(%q, %q) = %v, want %v", tc.name, tc.src, g, tc.want)
		}
	}
}

// Lines come from the parser's byte offsets, past comments and blank lines.
func TestLines(t *testing.T) {
	sql := `-- 0007: split names
SET lock_timeout = '3s';

/* a block
   comment; with a semicolon */
ALTER TABLE users
  ADD COLUMN first_name text;
ALTER TABLE users ADD COLUMN x int; CREATE INDEX a ON users (x);
INSERT INTO notes VALUES ('line
break; DROP TABLE users;
'), ($$
$$);

ALTER TABLE users
  DROP COLUMN
  name;
DROP TABLE old_names -- last, no semicolon
`
	fs, err := CheckSQL("db/0007_names.sql", []byte(sql))
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{
		{File: "db/0007_names.sql", Line: 8, Rule: "create-index"},
		{File: "db/0007_names.sql", Line: 14, Rule: "drop-column", Contract: true},
		{File: "db/0007_names.sql", Line: 17, Rule: "drop-table", Contract: true},
	}
	if len(fs) != len(want) {
		t.Fatalf("findings %+v, want %+v", fs, want)
	}
	for i, f := range fs {
		w := want[i]
		if f.File != w.File || f.Line != w.Line || f.Rule != w.Rule || f.Contract != w.Contract {
			t.Errorf("finding %d: %+v, want %+v", i, f, w)
		}
	}
	if !strings.Contains(fs[1].Message, "users.name") || strings.Contains(fs[1].Message, "\n") {
		t.Errorf("message: %q", fs[1].Message)
	}
	if r, _ := LookupRule(RuleDropColumn); fs[1].Fix != r.Fix {
		t.Errorf("fix: %q", fs[1].Fix)
	}
}

func TestUnparsable(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		line int
		msg  string
	}{
		{"SELECT 1;\nALTER TABLE users\n  DROP COLUMNN email;", 3, `syntax error at or near "email"`},
		{"ALTER TABLE users ADD COLUMN x int", 0, ""}, // no semicolon at the end: valid
		{"SELECT 'unterminated;\nDROP TABLE t;", 1, "unterminated quoted string"},
		{"\n\nCREATE TABLE (id int);", 3, "syntax error"},
		{"--日本語のコメント、ünïcödé\nSELECT 'ÄÖÜ';\n\nSELEC 2;", 4, `syntax error at or near "SELEC"`},
	} {
		_, err := CheckSQL("0003_bad.sql", []byte(tc.sql))
		if tc.line == 0 {
			if err != nil {
				t.Errorf("%q: %v", tc.sql, err)
			}
			continue
		}
		var ie *InputError
		if !errors.Is(err, ErrBadInput) || !errors.As(err, &ie) {
			t.Fatalf("%q: error %v, want an InputError", tc.sql, err)
		}
		if ie.File != "0003_bad.sql" || ie.Line != tc.line || !strings.Contains(ie.Msg, tc.msg) {
			t.Errorf("%q: %+v, want line %d and %q", tc.sql, ie, tc.line, tc.msg)
		}
		if !strings.HasPrefix(err.Error(), fmt.Sprintf("0003_bad.sql:%d: ", tc.line)) {
			t.Errorf("error text %q", err)
		}
	}
}

func TestFilesAndCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, sql string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0010_b.sql", lt+"DROP TABLE b;")
	write("0002_a.sql", lt+"ALTER TABLE a DROP COLUMN x;")
	write("0003_bad.sql", "DROP TABLEE c;")
	write("README.md", "DROP TABLE d;")
	if err := os.Mkdir(filepath.Join(dir, "0001_dir.sql"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if want := []string{"0002_a.sql", "0003_bad.sql", "0010_b.sql"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Files: %q, want %q", names, want)
	}
	fs, err := Check(append(files, filepath.Join(dir, "missing.sql")))
	if len(fs) != 2 || fs[0].Rule != RuleDropColumn || fs[1].Rule != RuleDropTable {
		t.Errorf("Check findings %+v", fs)
	}
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "0003_bad.sql:1:") || !strings.Contains(err.Error(), "missing.sql") {
		t.Errorf("Check error %v", err)
	}
	if _, err := Files(filepath.Join(dir, "nope")); !errors.Is(err, ErrBadInput) {
		t.Errorf("Files of a missing folder: %v", err)
	}
}

// Every rule has a unique kebab-case name, a why and a fix.
func TestRuleTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules {
		if seen[r.Name] || r.Name != strings.ToLower(r.Name) || strings.ContainsAny(r.Name, " _") || r.Why == "" || r.Fix == "" {
			t.Errorf("rule %+v", r)
		}
		seen[r.Name] = true
	}
	contract := map[string]bool{RuleDropColumn: true, RuleDropTable: true, RuleRenameColumn: true, RuleRenameTable: true, RuleColumnType: true, RuleSetNotNull: true}
	for _, r := range Rules {
		if r.Contract != contract[r.Name] {
			t.Errorf("%s: Contract = %v", r.Name, r.Contract)
		}
	}
}
