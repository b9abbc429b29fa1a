package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"taledeploy/internal/stack"
	"taledeploy/migcheck"
)

// MigrationsCmd is `taledeploy migrations check [DIR...]`.
type MigrationsCmd struct {
	Check MigrationsCheckCmd `cmd:"" help:"Check SQL migrations for statements that break the color still running during a push (drop, rename, type change, SET NOT NULL) or take heavy locks. Exit 1 on findings, 2 on SQL that does not parse."`
}

// MigrationsCheckCmd is `taledeploy migrations check [DIR...]`.
type MigrationsCheckCmd struct {
	Dirs []string `arg:"" optional:"" type:"path" name:"dir" help:"Folders of *.sql migrations, read in lexical order (default: the folders the inventory names, else migrations)."`
}

func (c *MigrationsCheckCmd) Run(cli *CLI) error {
	return c.run(cli, os.Stdout)
}

// errFindings: the check ran and flagged statements (exit status 1).
var errFindings = errors.New("unsafe migrations")

// migrationInputError is an unreadable or unparsable migration: bad input,
// exit status 2. Its message is the migration's own.
type migrationInputError struct{ error }

func (e migrationInputError) Unwrap() []error { return []error{e.error, stack.ErrBadInput} }

// migrationsReport is the --json document.
type migrationsReport struct {
	Files    int                   `json:"files"`
	Findings []migcheck.Finding    `json:"findings"`
	Errors   []migrationsReportErr `json:"errors"`
}

type migrationsReportErr struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (c *MigrationsCheckCmd) run(cli *CLI, w io.Writer) error {
	dirs := c.Dirs
	if len(dirs) == 0 {
		dirs = inventoryMigrationDirs(cli.Inventory)
	}
	files, err := migcheck.Files(dirs...)
	if err != nil {
		return migrationInputError{fmt.Errorf("%w; pass the folder of your *.sql migrations: taledeploy migrations check DIR", err)}
	}
	findings, checkErr := migcheck.Check(files)
	if findings == nil {
		findings = []migcheck.Finding{}
	}
	if cli.JSON {
		rep := migrationsReport{Files: len(files), Findings: findings, Errors: []migrationsReportErr{}}
		for _, e := range inputErrors(checkErr) {
			rep.Errors = append(rep.Errors, migrationsReportErr{File: e.File, Line: e.Line, Message: e.Msg})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			fmt.Fprintf(w, "%s:%d: %s: %s\n    fix: %s\n", f.File, f.Line, f.Rule, f.Message, f.Fix)
		}
	}
	switch {
	case checkErr != nil:
		return migrationInputError{fmt.Errorf("%w\nfix the SQL at the line named and run the check again", checkErr)}
	case len(findings) > 0:
		return fmt.Errorf("%w: %s in %s; fix them, make the file a contract migration (NAME.contract.sql) for one the old color no longer needs, or allow a statement with a `-- taledeploy:allow RULE` comment above it", errFindings, plural(len(findings), "finding"), plural(len(files), "file"))
	case len(files) == 0:
		fmt.Fprintf(os.Stderr, "taledeploy: no *.sql files in %v\n", dirs)
	case !cli.JSON:
		fmt.Fprintf(w, "taledeploy: %s checked, no findings\n", plural(len(files), "migration file"))
	}
	return nil
}

// inputErrors lists the files that could not be checked.
func inputErrors(err error) []*migcheck.InputError {
	var out []*migcheck.InputError
	if err == nil {
		return out
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, inputErrors(e)...)
		}
		return out
	}
	var ie *migcheck.InputError
	if errors.As(err, &ie) {
		out = append(out, ie)
	}
	return out
}

// plural is "1 file" or "2 files".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// inventoryMigrationDirs lists the migrations folders the inventory names, or
// "migrations" when it names none (or cannot be read).
func inventoryMigrationDirs(file string) []string {
	var dirs []string
	if inv, err := stack.Load(file); err == nil {
		for _, name := range slices.Sorted(maps.Keys(inv.Environments)) {
			s := inv.Environments[name].Stack
			for _, m := range s.Migrations {
				if d := filepath.Join(s.Root, m.Dir); !slices.Contains(dirs, d) {
					dirs = append(dirs, d)
				}
			}
		}
	}
	if len(dirs) == 0 {
		return []string{"migrations"}
	}
	return dirs
}
