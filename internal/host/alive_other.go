//go:build !unix

package host

import "os"

// processAlive tells whether a process of this machine runs. Where there is no
// signal 0, finding the process is the test (on Windows it opens the process).
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}
