//go:build !windows

package images

import (
	"os"
	"syscall"
)

// hold locks the folder for as long as this process runs (or until
// removeTemp): the kernel lets go of the lock when the process ends,
// however it ends.
func hold(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return err
	}
	held.Store(dir, f)
	return nil
}

// abandoned tells whether no process holds the folder's lock.
func abandoned(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
