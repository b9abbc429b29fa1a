package images

import (
	"os"
	"path/filepath"
	"time"
)

// hold: Windows does not let a folder in use be removed, so nothing to do.
func hold(string) error { return nil }

// abandoned: on Windows a folder a running push has open cannot be removed,
// and the sweep ignores the error; a day-old one is surely abandoned.
func abandoned(dir string) bool {
	st, err := os.Stat(filepath.Clean(dir))
	return err == nil && time.Since(st.ModTime()) > 24*time.Hour
}
