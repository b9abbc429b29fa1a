package images

import "os"

// gone tells whether no process has the id pid: on Windows, finding one
// opens it, and fails when there is none.
func gone(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	p.Release()
	return false
}
