package plan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"taledeploy/remote"
)

// upload sends the release's files that the host does not have as the last
// upload left them. Nothing is hashed on the host: a deploy must not take CPU
// or disk time from the color that serves.
func (d *Deployer) upload(ctx context.Context) (string, error) {
	s := d.Stack
	files, err := s.releaseFiles()
	if err != nil {
		return "", err
	}
	// Every path is checked before anything is written.
	paths := make([]string, len(files))
	for i, f := range files {
		if paths[i], err = s.remotePath(f.rel); err != nil {
			return "", err
		}
	}
	for _, dir := range []string{s.metaDir(), s.metaDir() + "/env", s.adminDir()} {
		if err := d.Host.Mkdir(ctx, dir, 0o700, false); err != nil {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
	}
	have := currentFiles(ctx, d.Host, s, files)
	sent, bytesSent := 0, 0
	m := uploadManifest{}
	for i, f := range files {
		m[paths[i]] = manifestEntry{Sum: f.sum, Mode: f.mode.Perm()}
		if have[paths[i]] {
			continue
		}
		if err := d.Host.WriteFile(ctx, paths[i], f.data, f.mode); err != nil {
			return "", err
		}
		sent++
		bytesSent += len(f.data)
	}
	if sent > 0 || len(have) != len(files) {
		// Written after the files, so its time is later than theirs.
		data, _ := json.Marshal(m)
		if err := d.Host.WriteFile(ctx, s.uploadsPath(), data, 0o600); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%d of %d files changed (%s)", sent, len(files), humanBytes(bytesSent)), nil
}

// uploadManifest is what the last upload wrote: remote path -> content and mode.
type uploadManifest map[string]manifestEntry

type manifestEntry struct {
	Sum  string      `json:"sha256"`
	Mode os.FileMode `json:"mode"`
}

func (s *Stack) uploadsPath() string { return s.metaDir() + "/uploads.json" }

// currentFiles says which of the release's files the host holds as they are
// here: the last upload's manifest has them with this content and mode, and
// none was changed after the manifest was written. That is judged from one
// `find` listing of times, sizes and modes (metadata only, one round trip),
// never by reading the files on the host. Anything uncertain counts as missing,
// so it is uploaded again.
func currentFiles(ctx context.Context, h Conn, s *Stack, files []releaseFile) map[string]bool {
	have := map[string]bool{}
	// The manifest and the listing are asked for together: one round trip.
	var out []byte
	listing := make(chan struct{})
	go func() {
		defer close(listing)
		out, _ = h.Run(ctx, remote.Cmd{Argv: findArgv(s, files)})
	}()
	data, err := h.ReadFile(ctx, s.uploadsPath())
	<-listing
	if err != nil {
		return have
	}
	var m uploadManifest
	if json.Unmarshal(data, &m) != nil {
		return have
	}
	listed := parseFind(out)
	mark, ok := listed[s.uploadsPath()]
	if !ok {
		return have
	}
	for _, f := range files {
		p := s.remote(f.rel)
		st, ok := listed[p]
		e, known := m[p]
		if ok && known && e.Sum == f.sum && e.Mode == f.mode.Perm() &&
			st.mode == f.mode.Perm() && st.size == int64(len(f.data)) && !st.mtime.after(mark.mtime) {
			have[p] = true
		}
	}
	return have
}

// findArgv lists the release's folders and files on the host: a start point
// per build context and per single file, so the command stays short however
// many files a context holds. Missing ones make find exit 1 but list the rest.
func findArgv(s *Stack, files []releaseFile) []string {
	argv := []string{"find", s.uploadsPath()}
	seen := map[string]bool{}
	for _, f := range files {
		p := s.remote(f.rel)
		if c := s.contextOf(f.rel); c != "" {
			p = path.Clean(s.remote(c))
		}
		if !seen[p] {
			seen[p] = true
			argv = append(argv, p)
		}
	}
	return append(argv, "-type", "f", "-printf", `%T@ %s %m %p\n`)
}

// contextOf is the build context rel lies in, "" for a file of none.
func (s *Stack) contextOf(rel string) string {
	for _, c := range s.contexts() {
		if c.dir == "." || strings.HasPrefix(rel, c.dir+"/") {
			return c.dir
		}
	}
	return ""
}

// buildContext is a folder some service builds from: a slash path below the
// stack folder, and the first service (by name) that uses it.
type buildContext struct{ dir, service string }

// contexts lists the compose file's build contexts, each once.
func (s *Stack) contexts() []buildContext {
	var out []buildContext
	composeDir := filepath.Dir(s.ComposeFile)
	for _, name := range s.Compose.ServiceNames() {
		svc := s.Compose.Services[name]
		if svc.BuildContext == "" {
			continue
		}
		c := filepath.ToSlash(filepath.Join(composeDir, svc.BuildContext))
		if !slices.ContainsFunc(out, func(b buildContext) bool { return b.dir == c }) {
			out = append(out, buildContext{c, name})
		}
	}
	return out
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

type releaseFile struct {
	rel  string // slash path below remote_dir
	data []byte
	mode os.FileMode
	sum  string
}

// releaseFiles lists what a push uploads: the compose file, both overlays, the
// env file, and every service's build context. The Caddyfile is not among them:
// it changes only at the switch. Nothing is read from outside the stack folder,
// whatever symlinks the tree holds.
func (s *Stack) releaseFiles() ([]releaseFile, error) {
	var files []releaseFile
	add := func(rel string, data []byte, mode os.FileMode) {
		sum := sha256.Sum256(data)
		files = append(files, releaseFile{rel: rel, data: data, mode: mode, sum: hex.EncodeToString(sum[:])})
	}
	root, err := realPath(s.Root)
	if err != nil {
		return nil, fmt.Errorf("stack folder: %w", err)
	}
	composePath, err := inside(root, filepath.Join(s.Root, s.ComposeFile))
	if err != nil {
		return nil, fmt.Errorf("compose file: %w", err)
	}
	compose, err := os.ReadFile(composePath)
	if err != nil {
		return nil, err
	}
	add(filepath.ToSlash(s.ComposeFile), compose, 0o644)
	add(s.OverlayFile(Blue), s.Overlay(Blue), 0o644)
	add(s.OverlayFile(Green), s.Overlay(Green), 0o644)
	add(strings.TrimPrefix(s.envPath(), s.RemoteDir+"/"), s.envFile(), 0o600)
	for _, c := range s.contexts() {
		if err := s.walkContext(root, filepath.FromSlash(c.dir), add); err != nil {
			return nil, fmt.Errorf("build context of %s: %w", c.service, err)
		}
	}
	return files, nil
}

// walkContext adds the regular files of a build context. The context may be a
// symlink to a folder in the stack; its files keep the context's path. A symlink
// inside it is not uploaded, and one that points outside the stack is refused:
// the build would otherwise miss a file without a word.
func (s *Stack) walkContext(root, ctxDir string, add func(string, []byte, os.FileMode)) error {
	real, err := inside(root, filepath.Join(s.Root, ctxDir))
	if err != nil {
		return err
	}
	return filepath.WalkDir(real, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		relCtx, _ := filepath.Rel(real, p)
		rel := filepath.Join(ctxDir, relCtx)
		switch {
		case e.IsDir() && e.Name() == ".git":
			return filepath.SkipDir
		case e.IsDir():
			return nil
		case e.Type()&fs.ModeSymlink != 0:
			if _, err := inside(root, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: %w; copy what it points to into the stack folder, or remove the link", rel, err)
			}
			return nil
		case !e.Type().IsRegular() || filepath.ToSlash(rel) == filepath.ToSlash(s.Caddyfile) || slices.Contains(s.private, p):
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		add(filepath.ToSlash(rel), data, uploadMode(info.Mode()))
		return nil
	})
}

// realPath is p, absolute, with every symlink resolved.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// inside resolves p's symlinks and returns the real path when it is root or
// below it; root is a realPath.
func inside(root, p string) (string, error) {
	real, err := realPath(p)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(root, real); err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%s leads to %s, outside the stack folder %s; nothing is uploaded from there", p, real, root)
	}
	return real, nil
}

// remotePath is where rel goes on the host: below remote_dir, whatever rel holds.
// It is the last guard before an upload; the inventory's checks come first.
func (s *Stack) remotePath(rel string) (string, error) {
	if !path.IsAbs(s.RemoteDir) || path.Clean(s.RemoteDir) != s.RemoteDir || s.RemoteDir == "/" {
		return "", fmt.Errorf("%w: remote_dir %q is not an absolute clean folder; nothing is uploaded", ErrBadInput, s.RemoteDir)
	}
	p := path.Clean(s.RemoteDir + "/" + rel)
	if path.IsAbs(rel) || !strings.HasPrefix(p, s.RemoteDir+"/") {
		return "", fmt.Errorf("%w: %q would be uploaded to %s, outside remote_dir %s; keep the stack's files inside its folder", ErrBadInput, rel, p, s.RemoteDir)
	}
	return p, nil
}

// envFile renders stack.env; values never leave this file. Every value is
// double-quoted and escaped so that Compose's own env-file parser (compose-go's
// dotenv, used for --env-file and env_file:) reads it back byte for byte: no
// ${...} is expanded, no # starts a comment, quotes, backslashes and spaces at
// either end survive.
func (s *Stack) envFile() []byte {
	var keys []string
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("# Written by taledeploy from the inventory; mode 0600.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, envQuote(s.Env[k]))
	}
	return b.Bytes()
}

// envQuote writes v as a double-quoted dotenv value: \ and " are escaped,
// $ is doubled ($$ is a literal $ to Compose), line breaks become \n.
func envQuote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(v) + `"`
}

// uploadMode is the mode a context file gets on the host: readable by all,
// executable where it is executable here, writable by its owner only. SFTP
// ignores the host's umask, so a world-writable file here would stay so there.
func uploadMode(m os.FileMode) os.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}
