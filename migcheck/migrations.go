// Package migrations checks SQL migration files for statements that break the
// code of the color still running during a blue/green push (both colors share
// one Postgres database), or that take heavy locks. It parses SQL with
// Postgres's own parser (libpg_query), so comments, string literals and quoted
// identifiers never look like statements.
package migcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrBadInput marks a migration that cannot be checked: unreadable, or not
// valid SQL. Errors that match it are *InputError.
var ErrBadInput = errors.New("bad migration input")

// InputError is a migration file that cannot be checked.
type InputError struct {
	File string
	Line int // 0 when it is about the whole file
	Msg  string
}

func (e *InputError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Is makes errors.Is(err, ErrBadInput) true.
func (e *InputError) Is(target error) bool { return target == ErrBadInput }

// Finding is one statement a rule flags.
type Finding struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Rule     string `json:"rule"`
	Contract bool   `json:"contract"` // allowed in a contract migration
	Message  string `json:"message"`  // what the statement does and why it is unsafe
	Fix      string `json:"fix"`      // the safe alternative
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s\n\tfix: %s", f.File, f.Line, f.Rule, f.Message, f.Fix)
}

// Files lists the *.sql files of each folder, in lexical order, folder after
// folder.
func Files(dirs ...string) ([]string, error) {
	var files []string
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir) // sorted by name
		if err != nil {
			return nil, &InputError{File: dir, Msg: "cannot read the migrations folder: " + osReason(err)}
		}
		for _, e := range entries {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".sql") {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	return files, nil
}

// Check reads and checks each file. It checks every file it can and returns
// the findings of those with an error (matching ErrBadInput) for the others.
func Check(files []string) ([]Finding, error) {
	var all []Finding
	var errs []error
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, &InputError{File: f, Msg: osReason(err)})
			continue
		}
		fs, err := CheckSQL(f, src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		all = append(all, fs...)
	}
	return all, errors.Join(errs...)
}

// osReason is err without the path that the InputError names already.
func osReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// ContractMarker, alone on a migration's first line, makes it a contract
// migration, as does ".contract." in its file name.
const ContractMarker = "-- taledeploy:contract"

// IsContract tells whether the migration named name with text src is a
// contract migration: one run after the old color is gone, so that it may drop,
// rename, change a type or set NOT NULL. Its name contains ".contract."
// (0005_drop_legacy.contract.sql), or its first line is "-- taledeploy:contract".
func IsContract(name string, src []byte) bool {
	if strings.Contains(filepath.Base(name), ".contract.") {
		return true
	}
	first, _, _ := strings.Cut(string(src), "\n")
	return strings.TrimSpace(first) == ContractMarker
}
