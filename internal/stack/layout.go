package stack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"taledeploy/migcheck"

	"github.com/compose-spec/compose-go/v2/template"
)

// Paths are where taledeploy keeps its own files on the host, below the
// stack's remote_dir.
type Paths struct{ dir string }

// Paths are the stack's own files on the host.
func (s *Stack) Paths() Paths { return Paths{s.RemoteDir} }

// Meta holds the record, history, lock, env file and upload manifest.
func (p Paths) Meta() string       { return p.dir + "/.taledeploy" }
func (p Paths) State() string      { return p.Meta() + "/state.json" }
func (p Paths) History() string    { return p.Meta() + "/history.jsonl" }
func (p Paths) Lock() string       { return p.Meta() + "/lock" }
func (p Paths) Env() string        { return p.Meta() + "/env/stack.env" }
func (p Paths) Uploads() string    { return p.Meta() + "/uploads.json" }
func (p Paths) Migrations() string { return p.Meta() + "/migrations.json" }

// Admin is the folder the proxy shares with taledeploy: its admin socket.
func (p Paths) Admin() string { return p.dir + "/run/caddy" }

// CaddyConfig is the config the proxy starts with: the last one loaded.
func (p Paths) CaddyConfig() string { return p.Admin() + "/caddy.json" }

// ProxyAdminDir is where the proxy container sees Paths.Admin.
const ProxyAdminDir = "/run/caddy"

// Gate holds a file per upstream the gate admits.
func (p Paths) Gate() string { return p.Admin() + "/live" }

// Remote is the host path of rel, a path inside the stack folder.
func (s *Stack) Remote(rel string) string {
	return s.RemoteDir + "/" + rel
}

// Upstreams lists the dial addresses of one color's routed services, as the
// Caddyfile names them.
func (s *Stack) Upstreams(color string) []string {
	var out []string
	for _, r := range s.Routes {
		u := fmt.Sprintf("%s-%s:%d", r.Service, color, r.Port)
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// ContextOf is the build context rel lies in, "" for a file of none.
func (s *Stack) ContextOf(rel string) string {
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
		if !s.uploadsContext(name) {
			continue
		}
		c := filepath.ToSlash(filepath.Join(composeDir, svc.BuildContext))
		if !slices.ContainsFunc(out, func(b buildContext) bool { return b.dir == c }) {
			out = append(out, buildContext{c, name})
		}
	}
	return out
}

type ReleaseFile struct {
	Rel  string // slash path below remote_dir
	Data []byte
	Mode os.FileMode
	Sum  string
}

// uploadsContext tells whether a push uploads the service's build context: a
// stateful service's, which Compose builds on the host when its image is
// missing. A stateless service's image is built here, pulled, or built on the
// host from a context sent as one stream: never from remote_dir.
func (s *Stack) uploadsContext(service string) bool {
	svc := s.Compose.Services[service]
	return svc != nil && svc.BuildContext != "" && !slices.Contains(s.Stateless, service)
}

// HostBuilt lists the stateless services each host builds itself (build: host).
func (s *Stack) HostBuilt() []string {
	if s.Build == BuildLocal || s.Build == BuildNone {
		return nil
	}
	var out []string
	for _, name := range s.Stateless {
		if svc := s.Compose.Services[name]; svc != nil && svc.BuildContext != "" {
			out = append(out, name)
		}
	}
	return out
}

// Pulled lists the stateless services whose image each host pulls from a
// registry: those with no build context, or every one with build: none.
func (s *Stack) Pulled() []string {
	var out []string
	for _, name := range s.Stateless {
		if svc := s.Compose.Services[name]; svc != nil && (svc.BuildContext == "" || s.Build == BuildNone) {
			out = append(out, name)
		}
	}
	return out
}

// PullRef is the image a pulled service names, its ${...} replaced from the
// stack's env as Compose would on the host.
func (s *Stack) PullRef(service string) (string, error) {
	svc := s.Compose.Services[service]
	if svc == nil {
		return "", fmt.Errorf("service %q is not in %s", service, s.ComposeFile)
	}
	if svc.Image == "" {
		return "", fmt.Errorf("%w: %s:%d: service %q has no image: to pull (it has no build:, or build: none); give it an image: (or a build: section)", ErrBadInput, s.ComposeFile, svc.Line, service)
	}
	env := map[string]string{"TALEDEPLOY_PROJECT": s.Project}
	maps.Copy(env, s.Env)
	ref, err := template.Substitute(svc.Image, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil && ref == "" {
		err = errors.New("it is empty")
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s:%d: service %q: image %q: %v", ErrBadInput, s.ComposeFile, svc.ImageLine, service, svc.Image, err)
	}
	return ref, nil
}

// ReleaseFiles lists what a push uploads: the compose file, the overlays, the
// env file, the Caddyfile, every service's build context, read-only bind mounts
// of the project and the files the compose file names (env_file, include,
// extends). Nothing is read from outside the stack folder,
// whatever symlinks the tree holds.
func (s *Stack) ReleaseFiles() ([]ReleaseFile, error) {
	var files []ReleaseFile
	add := func(rel string, data []byte, mode os.FileMode) {
		sum := sha256.Sum256(data)
		files = append(files, ReleaseFile{Rel: rel, Data: data, Mode: mode, Sum: hex.EncodeToString(sum[:])})
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
	add(s.StatefulOverlayFile(), s.StatefulOverlay(), 0o644)
	// The team's Caddyfile, for the proxy's own mounts: taledeploy loads the
	// config it adapts to, never the file.
	caddyfile, err := s.ReadCaddyfile()
	if err != nil {
		return nil, err
	}
	add(filepath.ToSlash(s.Caddyfile), caddyfile, 0o644)
	add(strings.TrimPrefix(s.Paths().Env(), s.RemoteDir+"/"), s.envFile(), 0o600)
	for _, c := range s.contexts() {
		if err := s.walkContext(root, filepath.FromSlash(c.dir), add); err != nil {
			return nil, fmt.Errorf("build context of %s: %w", c.service, err)
		}
	}
	// Read-only bind mounts of the project (config files and folders) go with
	// the release; a read-write one holds data, and the host's copy is the live
	// one, so it is never replaced from here.
	composeDir := filepath.Dir(s.ComposeFile)
	for _, name := range s.Compose.ServiceNames() {
		for _, b := range s.Compose.Services[name].Binds {
			if !b.ReadOnly || !relativeBind(b.Source) {
				continue
			}
			rel := filepath.Join(composeDir, filepath.FromSlash(b.Source))
			if rel == "." || rel == composeDir {
				continue // the whole project, for live code locally: the build has it
			}
			if _, err := os.Lstat(filepath.Join(s.Root, rel)); errors.Is(err, fs.ErrNotExist) {
				continue // Docker makes an empty folder, as it would locally
			}
			err := s.walkContext(root, rel, func(r string, data []byte, mode os.FileMode) {
				if !slices.ContainsFunc(files, func(f ReleaseFile) bool { return f.Rel == r }) {
					add(r, data, mode)
				}
			})
			if err != nil {
				return nil, fmt.Errorf("bind mount %s of %s: %w", b.Source, name, err)
			}
		}
	}
	// The other files Compose reads on the host: env_file, include, extends.
	for _, r := range s.Compose.Refs {
		rel := filepath.ToSlash(filepath.Join(composeDir, filepath.FromSlash(r.Path)))
		if slices.ContainsFunc(files, func(f ReleaseFile) bool { return f.Rel == rel }) {
			continue // in a build context already
		}
		local := filepath.Join(s.Root, filepath.FromSlash(rel))
		if _, err := os.Lstat(local); errors.Is(err, fs.ErrNotExist) && r.Optional {
			continue
		}
		p, err := inside(root, local)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.What, err)
		}
		if slices.Contains(s.private, p) {
			continue // the inventory's own env_files stay here
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.What, r.Path, err)
		}
		mode := os.FileMode(0o644)
		if r.Secret {
			mode = 0o600
		}
		add(rel, data, mode)
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
		case !e.Type().IsRegular() || slices.Contains(s.private, p):
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

// RemotePath is where rel goes on the host: below remote_dir, whatever rel holds.
// It is the last guard before an upload; the inventory's checks come first.
func (s *Stack) RemotePath(rel string) (string, error) {
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
func (s *Stack) envFile() []byte { return EnvFile(s.Env) }

// EnvFile writes env as a dotenv file Compose reads back exactly.
func EnvFile(env map[string]string) []byte {
	var keys []string
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("# Written by taledeploy from the inventory; mode 0600.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, envQuote(env[k]))
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

// ComposeSum identifies what a stateful service's definition is made from: the
// compose file, the stateful project's overlay, the env file it interpolates,
// and where it runs.
func (s *Stack) ComposeSum() string {
	files, err := s.ReleaseFiles()
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", s.Project, s.RemoteDir)
	for _, f := range files {
		if f.Rel == s.ComposeFile {
			h.Write(f.Data)
		}
	}
	h.Write([]byte{0})
	h.Write(s.StatefulOverlay())
	h.Write([]byte{0})
	h.Write(s.envFile())
	return hex.EncodeToString(h.Sum(nil))
}

// MigrationFile is one migration file of the working tree.
type MigrationFile struct {
	Migration *Migration
	Name      string // file name, what the command is given
	Path      string // local path
	Contract  bool
}

// MigrationFiles lists the working tree's migrations, service by service, each
// folder's *.sql files in lexical order.
func (s *Stack) MigrationFiles() ([]MigrationFile, error) {
	var out []MigrationFile
	for _, m := range s.Migrations {
		dir := filepath.Join(s.Root, m.Dir)
		files, err := migcheck.Files(dir)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, MigrationFile{Migration: m, Name: filepath.Base(f), Path: f, Contract: migcheck.IsContract(f, src)})
		}
	}
	return out, nil
}
