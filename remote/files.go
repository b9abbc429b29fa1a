package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

func (c *Client) files() (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	// Writes of a file in flight together, not one 32 KiB packet a round
	// trip: at a VPS's 100 ms that is 320 KiB/s, and a 10 MiB binary takes
	// half a minute. Out-of-order writes are safe here: a file is written to a
	// temporary name and renamed into place only once all of it arrived.
	// 16 in flight (512 KiB) is about 5 MiB/s at 100 ms, and little enough
	// that the keepalive's request, queued behind them, is answered within
	// keepaliveWait on an uplink down to about 40 KiB/s.
	s, err := sftp.NewClient(c.ssh, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(16))
	if err != nil {
		return nil, fmt.Errorf("%s: start sftp: %w", c.cfg.Name, err)
	}
	c.sftp = s
	c.active.Add(1)
	return s, nil
}

// ReadFile reads a file on the host. A missing file gives an error matching
// os.ErrNotExist.
//
// It runs cat, not SFTP: a command costs one round trip (two when no spare
// session waits), an SFTP read three (open, read, close), and three more to
// start SFTP when nothing else needed it yet; a push that changes no file
// never does.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	out, err := c.Run(ctx, Cmd{Argv: []string{"sh", "-c", readScript, "sh", path}})
	var ee *ExitError
	if errors.As(err, &ee) && ee.Code == codeMissing {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	if errors.As(err, &ee) {
		return nil, fmt.Errorf("%s: read %s: %s", c.cfg.Name, path, cmp.Or(strings.TrimSpace(ee.Stderr), fmt.Sprintf("exit status %d", ee.Code)))
	}
	return out, err
}

// readScript prints the file $1, or exits codeMissing when there is none. A
// folder on the way this user cannot search hides the file: that is said,
// not taken for a missing file.
const readScript = `# taledeploy read
[ -e "$1" ] && exec cat -- "$1"
d=$(dirname -- "$1")
while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname -- "$d"); done
if [ -d "$d" ] && [ ! -x "$d" ]; then echo "permission denied: $d" >&2; exit 1; fi
exit 66`

const codeMissing = 66

// WriteFile writes data to path atomically: a temp file in the same folder is
// written, given its mode and renamed over path, so readers see the old or the new
// content, never a mix. Missing folders are created (mode 0755).
func (c *Client) WriteFile(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.writeFile(path, data, mode)
}

// writeFile is WriteFile without a context.
func (c *Client) writeFile(path string, data []byte, mode os.FileMode) error {
	s, err := c.files()
	if err != nil {
		return err
	}
	dir := parentDir(path)
	if err := s.MkdirAll(dir); err != nil {
		return fmt.Errorf("%s: mkdir %s: %w", c.cfg.Name, dir, err)
	}
	tmp := fmt.Sprintf("%s/.%s.taledeploy-%d", dir, baseName(path), time.Now().UnixNano())
	f, err := s.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("%s: create %s: %w", c.cfg.Name, tmp, err)
	}
	// Set the mode before any byte lands, so a secret is never readable by others.
	if err := f.Chmod(mode.Perm()); err != nil {
		f.Close()
		s.Remove(tmp)
		return fmt.Errorf("%s: chmod %s: %w", c.cfg.Name, tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		s.Remove(tmp)
		return fmt.Errorf("%s: write %s: %w", c.cfg.Name, path, err)
	}
	if err := f.Close(); err != nil {
		s.Remove(tmp)
		return fmt.Errorf("%s: write %s: %w", c.cfg.Name, path, err)
	}
	if err := s.PosixRename(tmp, path); err != nil {
		s.Remove(tmp)
		return fmt.Errorf("%s: rename into %s: %w", c.cfg.Name, path, err)
	}
	return nil
}

// AppendFile appends data to path, creating it with mode when missing.
func (c *Client) AppendFile(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.appendFile(path, data, mode)
}

// appendFile is AppendFile without a context.
func (c *Client) appendFile(path string, data []byte, mode os.FileMode) error {
	s, err := c.files()
	if err != nil {
		return err
	}
	if err := s.MkdirAll(parentDir(path)); err != nil {
		return err
	}
	f, err := s.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND)
	if err != nil {
		return fmt.Errorf("%s: open %s: %w", c.cfg.Name, path, err)
	}
	defer f.Close()
	if err := f.Chmod(mode.Perm()); err != nil {
		return err
	}
	_, err = f.Write(data)
	return err
}

// Mkdir creates path (and its parents) with mode. It reports os.ErrExist when
// exclusive is set and path already exists, which makes it a lock primitive.
func (c *Client) Mkdir(ctx context.Context, path string, mode os.FileMode, exclusive bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.mkdir(path, mode, exclusive)
}

// mkdir is Mkdir without a context.
func (c *Client) mkdir(path string, mode os.FileMode, exclusive bool) error {
	s, err := c.files()
	if err != nil {
		return err
	}
	if err := s.MkdirAll(parentDir(path)); err != nil {
		return err
	}
	if exclusive {
		if err := s.Mkdir(path); err != nil {
			if _, serr := s.Stat(path); serr == nil {
				return fmt.Errorf("%s: %w", path, os.ErrExist)
			}
			return err
		}
	} else if err := s.MkdirAll(path); err != nil {
		return err
	}
	return s.Chmod(path, mode.Perm())
}

// Rename moves oldpath to newpath with rename(2), so it is atomic and fails when
// newpath is a folder that is not empty: with folders that always hold a file,
// that makes it a lock primitive.
func (c *Client) Rename(ctx context.Context, oldpath, newpath string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.rename(oldpath, newpath)
}

// rename is Rename without a context.
func (c *Client) rename(oldpath, newpath string) error {
	s, err := c.files()
	if err != nil {
		return err
	}
	return s.PosixRename(oldpath, newpath)
}

// Remove deletes a file or a folder tree on the host; a missing one is not an error.
func (c *Client) Remove(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.remove(path)
}

// remove is Remove without a context.
func (c *Client) remove(path string) error {
	s, err := c.files()
	if err != nil {
		return err
	}
	err = s.RemoveAll(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	switch {
	case i < 0:
		return "."
	case i == 0:
		return "/"
	}
	return p[:i]
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// withContext runs op, an SFTP read that takes no context, and returns when it
// ends or when ctx is done: a hung host then fails the caller in time, while
// the call finishes in the background. Writes do not use it: one that went on
// in the background could land after its caller moved on (a gate file put
// back after it was retired), so a write starts only while ctx is live and is
// then waited for. The lock's heartbeat, which must give up in time, writes
// with a host command instead (see beatScript).
func withContext[T any](ctx context.Context, op func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	done := make(chan result, 1)
	go func() {
		v, err := op()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
