//go:build !windows

package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A push that was killed leaves its saved release (and its build's env
// file) behind; the next one removes it, and never a folder whose push still
// runs, in this process or another.
func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "layer"), 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	abandonedDir := mk(tempPrefix + "1")
	mine := mk(tempPrefix + "2")
	if err := hold(mine); err != nil {
		t.Fatal(err)
	}
	defer removeTemp(mine)
	// Another process's push: it holds its folder's lock while it runs.
	theirs := mk(tempPrefix + "3")
	other := exec.Command("flock", "-o", theirs, "sleep", "30") // -o: the lock is flock's own, not sleep's
	if err := other.Start(); err != nil {
		t.Fatalf("flock(1): %v", err)
	}
	defer other.Process.Kill()
	for !abandonedLocked(theirs) {
		time.Sleep(10 * time.Millisecond)
	}
	unrelated := mk("other-4")
	oldEnv, newEnv := filepath.Join(dir, "taledeploy-build-5.env"), filepath.Join(dir, "taledeploy-build-6.env")
	for _, f := range []string{oldEnv, newEnv} {
		os.WriteFile(f, []byte("SECRET=x\n"), 0o600)
	}
	os.Chtimes(oldEnv, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour))

	sweepTemp(dir)
	for p, removed := range map[string]bool{abandonedDir: true, mine: false, theirs: false, unrelated: false, oldEnv: true, newEnv: false} {
		if _, err := os.Stat(p); removed != os.IsNotExist(err) {
			t.Errorf("%s: removed %v, want %v", filepath.Base(p), os.IsNotExist(err), removed)
		}
	}
	other.Process.Kill()
	other.Wait()
	// The next push's sweep removes it. Swept a few times: once in CI the
	// first sweep after the holder's end still found the folder locked.
	for i := 0; i < 50; i++ {
		sweepTemp(dir)
		if _, err := os.Stat(theirs); os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("the folder of a push that ended is still there after a second of sweeps (held: %v)", !abandoned(theirs))
}

// abandonedLocked tells whether another process holds dir's lock yet.
func abandonedLocked(dir string) bool { return !abandoned(dir) }
