package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/remote"

	"github.com/docker/go-units"
)

// upload sends the release's files that the host does not have as the last
// upload left them. Nothing is hashed on the host: a deploy must not take CPU
// or disk time from the color that serves.
func upload(ctx context.Context, h host.Conn, s *stack.Stack) (string, error) {
	files, err := s.ReleaseFiles()
	if err != nil {
		return "", err
	}
	// Every path is checked before anything is written.
	paths := make([]string, len(files))
	for i, f := range files {
		if paths[i], err = s.RemotePath(f.Rel); err != nil {
			return "", err
		}
	}
	have, err := currentFiles(ctx, h, s, files, true)
	if err != nil {
		return "", err
	}
	var (
		m         = uploadManifest{}
		send      []int
		bytesSent int
	)
	for i, f := range files {
		m[paths[i]] = manifestEntry{Sum: f.Sum, Mode: f.Mode.Perm()}
		if !have[paths[i]] {
			send = append(send, i)
			bytesSent += len(f.Data)
		}
	}
	// The files go together, a few at a time: SFTP keeps their requests in
	// flight at once.
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(send))
		slot = make(chan struct{}, 8)
	)
	for k, i := range send {
		wg.Go(func() {
			slot <- struct{}{}
			defer func() { <-slot }()
			errs[k] = h.WriteFile(ctx, paths[i], files[i].Data, files[i].Mode)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	sent := len(send)
	if sent > 0 || len(have) != len(files) {
		// Written after the files, so its time is later than theirs.
		data, _ := json.Marshal(m)
		if err := h.WriteFile(ctx, s.Paths().Uploads(), data, 0o600); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%d of %d files changed (%s)", sent, len(files), units.BytesSize(float64(bytesSent))), nil
}

// uploadManifest is what the last upload wrote: remote path -> content and mode.
type uploadManifest map[string]manifestEntry

type manifestEntry struct {
	Sum  string      `json:"sha256"`
	Mode os.FileMode `json:"mode"`
}

// currentFiles says which of the release's files the host holds as they are
// here: the last upload's manifest has them with this content and mode, and
// none was changed after the manifest was written. That is judged from one
// `find` listing of times, sizes and modes (metadata only, one round trip),
// never by reading the files on the host. Anything uncertain counts as missing,
// so it is uploaded again.
func currentFiles(ctx context.Context, h host.Conn, s *stack.Stack, files []stack.ReleaseFile, makeDirs bool) (map[string]bool, error) {
	have := map[string]bool{}
	// The stack's folders are made, and the manifest read, in one command
	// beside the listing: one round trip for both.
	var out []byte
	listing := make(chan struct{})
	go func() {
		defer close(listing)
		out, _ = h.Run(ctx, remote.Cmd{Argv: findArgv(s, files)})
	}()
	q := &host.Facts{}
	var dirs []int
	for _, dir := range []string{s.Paths().Meta(), s.Paths().Meta() + "/env", s.Paths().Admin()} {
		if makeDirs {
			dirs = append(dirs, q.Mkdir(dir, 0o700))
		}
	}
	manifest := q.Cat(s.Paths().Uploads())
	as, err := q.Run(ctx, h)
	<-listing
	if err != nil {
		return nil, err
	}
	for i, dir := range []string{s.Paths().Meta(), s.Paths().Meta() + "/env", s.Paths().Admin()}[:len(dirs)] {
		if err := as[dirs[i]].Err("mkdir " + dir); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	if as[manifest].Code != 0 {
		return have, nil
	}
	data := as[manifest].Out
	var m uploadManifest
	if json.Unmarshal(data, &m) != nil {
		return have, nil
	}
	listed := parseFind(out)
	mark, ok := listed[s.Paths().Uploads()]
	if !ok {
		return have, nil
	}
	for _, f := range files {
		p := s.Remote(f.Rel)
		st, ok := listed[p]
		e, known := m[p]
		if ok && known && e.Sum == f.Sum && e.Mode == f.Mode.Perm() &&
			st.mode == f.Mode.Perm() && st.size == int64(len(f.Data)) && !st.mtime.after(mark.mtime) {
			have[p] = true
		}
	}
	return have, nil
}

// findArgv lists the release's folders and files on the host: a start point
// per build context and per single file, so the command stays short however
// many files a context holds. Missing ones make find exit 1 but list the rest.
func findArgv(s *stack.Stack, files []stack.ReleaseFile) []string {
	argv := []string{"find", s.Paths().Uploads()}
	seen := map[string]bool{}
	for _, f := range files {
		p := s.Remote(f.Rel)
		if c := s.ContextOf(f.Rel); c != "" {
			p = path.Clean(s.Remote(c))
		}
		if !seen[p] {
			seen[p] = true
			argv = append(argv, p)
		}
	}
	return append(argv, "-type", "f", "-printf", `%T@ %s %m %p\n`)
}

type fileStat struct {
	mtime stamp
	size  int64
	mode  os.FileMode
}

// stamp is find's %T@, seconds and a fraction, kept as text pieces so no
// precision is lost to a float.
type stamp struct{ sec, frac string }

func (a stamp) after(b stamp) bool {
	if a.sec != b.sec {
		x, _ := strconv.ParseInt(a.sec, 10, 64)
		y, _ := strconv.ParseInt(b.sec, 10, 64)
		return x > y
	}
	n := max(len(a.frac), len(b.frac))
	return a.frac+strings.Repeat("0", n-len(a.frac)) > b.frac+strings.Repeat("0", n-len(b.frac))
}

// parseFind reads "MTIME SIZE MODE PATH" lines; a line it cannot read is left out.
func parseFind(out []byte) map[string]fileStat {
	listed := map[string]fileStat{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			continue
		}
		sec, frac, _ := strings.Cut(f[0], ".")
		size, err1 := strconv.ParseInt(f[1], 10, 64)
		mode, err2 := strconv.ParseUint(f[2], 8, 32)
		if _, err3 := strconv.ParseInt(sec, 10, 64); err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		listed[f[3]] = fileStat{mtime: stamp{sec, frac}, size: size, mode: os.FileMode(mode).Perm()}
	}
	return listed
}
