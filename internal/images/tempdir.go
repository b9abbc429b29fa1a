package images

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// tempPrefix names the folders Save writes; the pid after it says whose.
const tempPrefix = "taledeploy-images-p"

// tempDir makes the folder a release is saved to, first removing those of
// pushes that ended without removing theirs (killed, or the machine
// stopped): each holds a whole release's layers.
func tempDir() (string, error) {
	sweepTemp(os.TempDir())
	return os.MkdirTemp("", fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
}

// sweepTemp removes the release folders below dir whose process is gone.
func sweepTemp(dir string) {
	found, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	for _, d := range found {
		pid, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), tempPrefix), "-")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || n <= 0 || n == os.Getpid() {
			continue
		}
		if gone(n) {
			os.RemoveAll(d)
		}
	}
}
