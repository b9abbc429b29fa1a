//go:build !cgo

package migcheck

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Without cgo there is no parser: Check says so once, whatever the files.
func TestNoParser(t *testing.T) {
	f := filepath.Join(t.TempDir(), "0001.sql")
	if err := os.WriteFile(f, []byte("DROP TABLE t;"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check([]string{f, f}); !errors.Is(err, ErrNoParser) || errors.Is(err, ErrBadInput) {
		t.Errorf("Check: %v", err)
	}
}
