//go:build !windows

package images

import (
	"errors"
	"syscall"
)

// gone tells whether no process has the id pid.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
