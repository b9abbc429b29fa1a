package images

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// tempPrefix names the folders a push saves its release and its build's
// files (the env file holds the stack's secrets) to.
const tempPrefix = "taledeploy-images-"

// held are the open locks on this process's folders, by path.
var held sync.Map

// tempDir makes a folder for this push, locked while the process lives,
// after removing those of pushes that ended without removing theirs (killed,
// or the machine stopped): each holds a whole release's layers.
func tempDir() (string, error) {
	sweepTemp(os.TempDir())
	// Locked under another name first, so that no sweep finds it unlocked.
	tmp, err := os.MkdirTemp("", "taledeploy-new-*")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(filepath.Dir(tmp), tempPrefix+strings.TrimPrefix(filepath.Base(tmp), "taledeploy-new-"))
	if err := hold(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		removeTemp(tmp)
		return "", err
	}
	if f, ok := held.LoadAndDelete(tmp); ok {
		held.Store(dir, f)
	}
	return dir, nil
}

// removeTemp removes a folder tempDir made, and lets go of its lock.
func removeTemp(dir string) error {
	err := os.RemoveAll(dir)
	if f, ok := held.LoadAndDelete(dir); ok {
		f.(*os.File).Close()
	}
	return err
}

// sweepTemp removes the folders below dir whose push is gone: no process
// holds their lock (a lock, unlike a pid, is seen across PID namespaces, as
// when CI jobs in containers share /tmp). Files older versions left there
// (named otherwise, without a lock) go once a day old.
func sweepTemp(dir string) {
	found, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	for _, d := range found {
		if abandoned(d) {
			os.RemoveAll(d)
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, "taledeploy-build-*"))
	for _, f := range old {
		if st, err := os.Lstat(f); err == nil && time.Since(st.ModTime()) > 24*time.Hour && strings.HasPrefix(filepath.Base(f), "taledeploy-build-") {
			os.Remove(f)
		}
	}
}
