package plan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"taledeploy/remote"
)

// fakeConn is a host that runs nothing: it records every command and file
// operation, answers commands from reply, and keeps written files in memory.
type fakeConn struct {
	mu    sync.Mutex
	cmds  []remote.Cmd
	files map[string][]byte
	dirs  []string
	gone  []string // removed paths
	// reply answers a command; nil answers every command with no output.
	reply func(argv []string) ([]byte, error)
	// caddy serves Caddy's admin API on the stack's admin socket, when set.
	caddy http.Handler
	ops   []string // "write PATH" and "remove PATH", in order
	// mtime is each file's write time, in ticks of a clock that advances on
	// every write: what find's %T@ prints.
	mtime        map[string]int
	mode         map[string]os.FileMode
	clock        int
	noForwarding bool // sshd forbids every tunnel
	// containers answers the Docker API's container list (JSON), when set.
	containers func() string
}

func (f *fakeConn) Name() string { return "fake" }

func (f *fakeConn) Run(_ context.Context, cmd remote.Cmd) ([]byte, error) {
	f.mu.Lock()
	f.cmds = append(f.cmds, remote.Cmd{Argv: slices.Clone(cmd.Argv), Env: slices.Clone(cmd.Env)})
	f.mu.Unlock()
	if len(cmd.Argv) == 6 && cmd.Argv[0] == "sh" && cmd.Argv[2] == beatScript {
		// The lock's heartbeat: write stdin only while the record holds the token.
		f.mu.Lock()
		defer f.mu.Unlock()
		rec := cmd.Argv[4] + "/owner.json"
		if !bytes.Contains(f.files[rec], []byte(cmd.Argv[5])) {
			return nil, &remote.ExitError{Argv: cmd.Argv, Code: 3}
		}
		data, _ := io.ReadAll(cmd.Stdin)
		f.files[rec] = data
		return nil, nil
	}
	if f.reply != nil {
		return f.reply(cmd.Argv)
	}
	return nil, nil
}

func (f *fakeConn) ReadFile(_ context.Context, path string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if data, ok := f.files[path]; ok {
		return data, nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func (f *fakeConn) WriteFile(_ context.Context, path string, data []byte, mode os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string][]byte{}
	}
	f.files[path] = slices.Clone(data)
	f.ops = append(f.ops, "write "+path)
	f.touch(path)
	if f.mode == nil {
		f.mode = map[string]os.FileMode{}
	}
	f.mode[path] = mode
	return nil
}

func (f *fakeConn) AppendFile(_ context.Context, path string, data []byte, _ os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string][]byte{}
	}
	f.files[path] = append(f.files[path], data...)
	return nil
}

func (f *fakeConn) Mkdir(_ context.Context, path string, _ os.FileMode, exclusive bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if exclusive && slices.Contains(f.dirs, path) {
		return fs.ErrExist
	}
	f.dirs = append(f.dirs, path)
	return nil
}

func (f *fakeConn) Remove(_ context.Context, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gone = append(f.gone, path)
	f.ops = append(f.ops, "remove "+path)
	for p := range f.files {
		if p == path || strings.HasPrefix(p, path+"/") {
			delete(f.files, p)
		}
	}
	f.dirs = slices.DeleteFunc(f.dirs, func(d string) bool { return d == path || strings.HasPrefix(d, path+"/") })
	return nil
}

func (f *fakeConn) Rename(_ context.Context, oldpath, newpath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirs = append(f.dirs, newpath)
	for p, data := range f.files {
		if p == oldpath || strings.HasPrefix(p, oldpath+"/") {
			delete(f.files, p)
			f.files[newpath+strings.TrimPrefix(p, oldpath)] = data
		}
	}
	return nil
}

// Dial serves a Docker API with no containers and no networks; anything else
// is unreachable.
func (f *fakeConn) Dial(_ context.Context, network, addr string) (net.Conn, error) {
	if f.noForwarding {
		return nil, fmt.Errorf("fake: tunnel to %s %s: %w", network, addr, remote.ErrForwardingRefused)
	}
	if network == "unix" && f.caddy != nil && strings.HasSuffix(addr, "/run/caddy/admin.sock") {
		client, server := net.Pipe()
		go http.Serve(&oneConnListener{conn: server}, f.caddy)
		return client, nil
	}
	if network != "unix" || addr != dockerSocket {
		return nil, errors.New("fake host: no network")
	}
	client, server := net.Pipe()
	go http.Serve(&oneConnListener{conn: server}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/containers/json" && f.containers != nil:
			w.Write([]byte(f.containers()))
		case r.URL.Path == "/containers/json":
			w.Write([]byte("[]"))
		case r.URL.Path == "/info":
			w.Write([]byte(`{"DockerRootDir":"/var/lib/docker"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	return client, nil
}

// oneConnListener hands out one connection, then reports itself closed.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil, net.ErrClosed
	}
	c := l.conn
	l.conn = nil
	return c, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: dockerSocket, Net: "unix"} }

// touch gives path the next write time; f.mu is held.
func (f *fakeConn) touch(path string) {
	if f.mtime == nil {
		f.mtime = map[string]int{}
	}
	f.clock++
	f.mtime[path] = f.clock
}

// find answers find's listing (START... -type f -printf '%T@ %s %m %p\n')
// from the files in memory.
func (f *fakeConn) find(argv []string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, start := range argv[1:slices.Index(argv, "-type")] {
		for p, data := range f.files {
			if p == start || strings.HasPrefix(p, start+"/") {
				fmt.Fprintf(&b, "%d.%09d %d %o %s\n", 1700000000+f.mtime[p], 0, len(data), f.mode[p], p)
			}
		}
	}
	return []byte(b.String()), nil
}

// touched lists every path the deploy wrote, appended, created or removed.
func (f *fakeConn) touched() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.files {
		out = append(out, p)
	}
	return append(append(out, f.dirs...), f.gone...)
}
