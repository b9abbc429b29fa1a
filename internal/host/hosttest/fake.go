// Package hosttest is an in-process host for tests: it runs nothing, records
// what it is asked and keeps files in memory.
package hosttest

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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// Fake is a host that runs nothing: it records every command and file
// operation, answers commands from reply, and keeps written files in memory.
type Fake struct {
	mu    sync.Mutex
	Cmds  []remote.Cmd
	Files map[string][]byte
	Dirs  []string
	Gone  []string // removed paths
	// Reply answers a command; nil answers every command with no output.
	Reply func(argv []string) ([]byte, error)
	// Caddy serves Caddy's admin API on the stack's admin socket, when set.
	Caddy http.Handler
	Ops   []string // "write PATH" and "remove PATH", in order
	// Mtime is each file's write time, in ticks of a clock that advances on
	// every write: what find's %T@ prints.
	Mtime        map[string]int
	Mode         map[string]os.FileMode
	Clock        int
	NoForwarding bool // sshd forbids every tunnel
	// Containers answers the Docker API's container list (JSON), when set.
	Containers func() string
	// HostName is what Name returns; "fake" when empty.
	HostName string
	// Exec, when set, answers every command but the lock's heartbeat in place
	// of Reply, and sees the command's env.
	Exec func(cmd remote.Cmd) ([]byte, error)
	// Serve, when set, answers a dial first: the handler of what listens at
	// addr, or the error the dial meets; nil and nil leave the dial to the
	// fake's defaults.
	Serve func(network, addr string) (http.Handler, error)
	// Refuse, when set, fails a file operation ("write", "append", "remove")
	// on path with the error it returns.
	Refuse func(op, path string) error
	// Latency, when set, is one round trip: every remote call waits as many
	// as it costs over SSH (a command two, an atomic file write six, a
	// request over a tunnel one), and Trips counts them.
	Latency time.Duration
	trips   struct {
		all    int
		serial float64   // round trips waited out, see trip
		until  time.Time // when the calls on their way are all answered
	}
}

// trip waits n round trips: what the call costs over a real SSH connection
// (remote.Client), one exchange after another. The user waits out the time
// during which at least one call is on its way: a call made while another is
// costs only as much as it outlasts the others.
func (f *Fake) trip(n int) {
	if f.Latency == 0 {
		return
	}
	d := time.Duration(n) * f.Latency
	f.mu.Lock()
	f.trips.all += n
	now := time.Now()
	if end := now.Add(d); end.After(f.trips.until) {
		f.trips.serial += float64(end.Sub(later(now, f.trips.until))) / float64(f.Latency)
		f.trips.until = end
	}
	f.mu.Unlock()
	time.Sleep(d)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Trips counts the remote calls so far (with Latency set): the round trips
// of all of them, and those a user waits out one after another (calls on
// their way together count once).
func (f *Fake) Trips() (all, serial int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trips.all, int(f.trips.serial + 0.5)
}

// ResetTrips starts counting again.
func (f *Fake) ResetTrips() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trips.all, f.trips.serial, f.trips.until = 0, 0, time.Time{}
}

func (f *Fake) Name() string {
	if f.HostName != "" {
		return f.HostName
	}
	return "fake"
}

// refused asks Refuse about op on path; f.mu is held.
func (f *Fake) refused(op, path string) error {
	if f.Refuse == nil {
		return nil
	}
	if err := f.Refuse(op, path); err != nil {
		return &fs.PathError{Op: op, Path: path, Err: err}
	}
	return nil
}

func (f *Fake) Run(_ context.Context, cmd remote.Cmd) ([]byte, error) {
	switch {
	case len(cmd.Argv) == 7 && cmd.Argv[0] == "sh" && strings.Contains(cmd.Argv[2], "owner.json.beat"):
		// the lock's heartbeat runs beside the rest
	case cmd.Stdin != nil:
		f.trip(3) // open a channel, start the command, then send its input and wait for its end
	default:
		f.trip(2) // open a channel, then start the command
	}
	f.mu.Lock()
	f.Cmds = append(f.Cmds, remote.Cmd{Argv: slices.Clone(cmd.Argv), Env: slices.Clone(cmd.Env)})
	f.mu.Unlock()
	if len(cmd.Argv) == 7 && cmd.Argv[0] == "sh" && strings.Contains(cmd.Argv[2], "owner.json.beat") {
		// The lock's heartbeat: write stdin only while the record holds the token.
		f.mu.Lock()
		defer f.mu.Unlock()
		rec := cmd.Argv[4] + "/owner.json"
		if !bytes.Contains(f.Files[rec], []byte(cmd.Argv[5])) {
			return nil, &remote.ExitError{Argv: cmd.Argv, Code: 3}
		}
		data, _ := io.ReadAll(cmd.Stdin)
		if strconv.Itoa(len(data)) != cmd.Argv[6] {
			return nil, &remote.ExitError{Argv: cmd.Argv, Code: 1} // cut short: the record stays
		}
		f.Files[rec] = data
		return nil, nil
	}
	if len(cmd.Argv) >= 5 && cmd.Argv[0] == "sh" && strings.HasPrefix(cmd.Argv[2], "# taledeploy facts") {
		return f.facts(cmd)
	}
	if len(cmd.Argv) >= 5 && cmd.Argv[0] == "sh" && strings.HasPrefix(cmd.Argv[2], "# taledeploy gate") {
		return f.gate(cmd.Argv[4], cmd.Argv[5:])
	}
	if f.Exec != nil {
		return f.Exec(cmd)
	}
	if f.Reply != nil {
		return f.Reply(cmd.Argv)
	}
	return nil, nil
}

func (f *Fake) ReadFile(_ context.Context, path string) ([]byte, error) {
	f.trip(2) // a command: open a channel, run cat
	return f.Peek(path)
}

// Peek reads a file as something on the host does (the proxy reading its
// config): no round trip.
func (f *Fake) Peek(path string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if data, ok := f.Files[path]; ok {
		return data, nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func (f *Fake) WriteFile(_ context.Context, path string, data []byte, mode os.FileMode) error {
	f.trip(6) // SFTP stat the folder, open, chmod, write, close, rename
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refused("write", path); err != nil {
		return err
	}
	if f.Files == nil {
		f.Files = map[string][]byte{}
	}
	f.Files[path] = slices.Clone(data)
	f.Ops = append(f.Ops, "write "+path)
	f.touch(path)
	if f.Mode == nil {
		f.Mode = map[string]os.FileMode{}
	}
	f.Mode[path] = mode
	return nil
}

func (f *Fake) AppendFile(_ context.Context, path string, data []byte, _ os.FileMode) error {
	f.trip(4) // SFTP open, stat, write, close
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refused("append", path); err != nil {
		return err
	}
	if f.Files == nil {
		f.Files = map[string][]byte{}
	}
	f.Files[path] = append(f.Files[path], data...)
	return nil
}

func (f *Fake) Mkdir(_ context.Context, path string, _ os.FileMode, exclusive bool) error {
	f.trip(3) // SFTP stat the parent and the folder, chmod
	f.mu.Lock()
	defer f.mu.Unlock()
	if exclusive && slices.Contains(f.Dirs, path) {
		return fs.ErrExist
	}
	f.Dirs = append(f.Dirs, path)
	return nil
}

func (f *Fake) Remove(_ context.Context, path string) error {
	f.trip(2) // SFTP lstat, remove
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refused("remove", path); err != nil {
		return err
	}
	f.Gone = append(f.Gone, path)
	f.Ops = append(f.Ops, "remove "+path)
	for p := range f.Files {
		if p == path || strings.HasPrefix(p, path+"/") {
			delete(f.Files, p)
		}
	}
	f.Dirs = slices.DeleteFunc(f.Dirs, func(d string) bool { return d == path || strings.HasPrefix(d, path+"/") })
	return nil
}

// Rename moves a file or folder; as rename(2) does, it refuses to replace a
// folder that is not empty (a lock someone holds).
func (f *Fake) Rename(_ context.Context, oldpath, newpath string) error {
	f.trip(1) // SFTP rename
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.Files {
		if strings.HasPrefix(p, newpath+"/") {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.ENOTEMPTY}
		}
	}
	f.Dirs = append(f.Dirs, newpath)
	for p, data := range f.Files {
		if p == oldpath || strings.HasPrefix(p, oldpath+"/") {
			delete(f.Files, p)
			f.Files[newpath+strings.TrimPrefix(p, oldpath)] = data
		}
	}
	return nil
}

// Dial serves a Docker API with no containers and no networks; anything else
// is unreachable.
func (f *Fake) Dial(_ context.Context, network, addr string) (net.Conn, error) {
	f.trip(1) // open a forwarding channel
	if f.NoForwarding {
		return nil, fmt.Errorf("fake: tunnel to %s %s: %w", network, addr, remote.ErrForwardingRefused)
	}
	if f.Serve != nil {
		h, err := f.Serve(network, addr)
		if err != nil {
			return nil, err
		}
		if h != nil {
			client, server := net.Pipe()
			go http.Serve(&oneConnListener{conn: server}, h)
			return f.slow(client), nil
		}
	}
	if network == "unix" && f.Caddy != nil && strings.HasSuffix(addr, "/run/caddy/admin.sock") {
		client, server := net.Pipe()
		go http.Serve(&oneConnListener{conn: server}, f.Caddy)
		return f.slow(client), nil
	}
	if network != "unix" || addr != fakeDockerSocket {
		return nil, errors.New("fake host: no network")
	}
	client, server := net.Pipe()
	go http.Serve(&oneConnListener{conn: server}, engineAPI("1.41", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/containers/json" && f.Containers != nil:
			w.Write([]byte(f.Containers()))
		case r.URL.Path == "/containers/json":
			w.Write([]byte("[]"))
		case r.URL.Path == "/info":
			w.Write([]byte(`{"DockerRootDir":"/var/lib/docker"}`))
		default:
			http.NotFound(w, r)
		}
	})))
	return f.slow(client), nil
}

// gate runs the gate's script: +NAME writes dir/NAME, -NAME removes it, then
// it lists dir.
func (f *Fake) gate(dir string, changes []string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Files == nil {
		f.Files = map[string][]byte{}
	}
	for _, a := range changes {
		p := dir + "/" + a[1:]
		switch a[0] {
		case '+':
			if err := f.refused("write", p); err != nil {
				return nil, &remote.ExitError{Argv: []string{"sh"}, Code: 1, Stderr: err.Error()}
			}
			f.Files[p] = nil
			f.Ops = append(f.Ops, "write "+p)
			f.touch(p)
		case '-':
			if err := f.refused("remove", p); err != nil {
				return nil, &remote.ExitError{Argv: []string{"sh"}, Code: 1, Stderr: err.Error()}
			}
			delete(f.Files, p)
			f.Gone = append(f.Gone, p)
			f.Ops = append(f.Ops, "remove "+p)
		}
	}
	var names []string
	for p := range f.Files {
		if name, ok := strings.CutPrefix(p, dir+"/"); ok && !strings.Contains(name, "/") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return []byte(strings.Join(names, "\n")), nil
}

// slow makes every request written to a tunnel wait a round trip.
func (f *Fake) slow(c net.Conn) net.Conn {
	if f.Latency == 0 {
		return c
	}
	return &slowConn{Conn: c, f: f}
}

type slowConn struct {
	net.Conn
	f       *Fake
	written atomic.Bool // a request went out since the last answer came in
}

func (c *slowConn) Write(b []byte) (int, error) {
	if !c.written.Swap(true) {
		c.f.trip(1)
	}
	return c.Conn.Write(b)
}

func (c *slowConn) Read(b []byte) (int, error) {
	c.written.Store(false)
	return c.Conn.Read(b)
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
func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: fakeDockerSocket, Net: "unix"} }

// touch gives path the next write time; f.mu is held.
func (f *Fake) touch(path string) {
	if f.Mtime == nil {
		f.Mtime = map[string]int{}
	}
	f.Clock++
	f.Mtime[path] = f.Clock
}

// Find answers Find's listing (START... -type f -printf '%T@ %s %m %p\n')
// from the files in memory.
func (f *Fake) Find(argv []string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, start := range argv[1:slices.Index(argv, "-type")] {
		for p, data := range f.Files {
			if p == start || strings.HasPrefix(p, start+"/") {
				fmt.Fprintf(&b, "%d.%09d %d %o %s\n", 1700000000+f.Mtime[p], 0, len(data), f.Mode[p], p)
			}
		}
	}
	return []byte(b.String()), nil
}

// Touched lists every path the deploy wrote, appended, created or removed.
func (f *Fake) Touched() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.Files {
		out = append(out, p)
	}
	return append(append(out, f.Dirs...), f.Gone...)
}

// fakeDockerSocket is where Docker serves its API on every host.
const fakeDockerSocket = "/var/run/docker.sock"

// Touch gives path a later write time, as an edit on the host would.
func (f *Fake) Touch(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touch(path)
}

// Ran returns the commands run so far; unlike reading Cmds, it is safe while
// a lock's heartbeat runs commands.
func (f *Fake) Ran() []remote.Cmd {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.Cmds)
}

// ResetCmds forgets the commands run so far.
func (f *Fake) ResetCmds() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Cmds = nil
}

// RawStack is a stack made straight from the fuzzed strings, without the
// inventory's checks, so the commands are tested with whatever reaches them.
func RawStack(root, project, remoteDir, composeFile, stateless, stateful, envValue string) *stack.Stack {
	os.MkdirAll(filepath.Join(root, "services", "proxy"), 0o755)
	os.WriteFile(filepath.Join(root, "services", "proxy", "Caddyfile"), fmt.Appendf(nil, ":80 {\n\treverse_proxy %s:8080\n}\n", stateless), 0o644)
	return &stack.Stack{
		Project: project, RemoteDir: remoteDir, ComposeFile: composeFile, Caddyfile: "services/proxy/Caddyfile",
		Proxy: "proxy", Stateless: []string{stateless}, Stateful: []string{"proxy", stateful},
		Routes:        []*stack.Route{{Site: ":80", Path: "/*", Service: stateless, Port: 8080, HealthPath: "/health"}},
		HealthTimeout: stack.Duration{Duration: time.Millisecond}, DrainTimeout: stack.Duration{Duration: time.Millisecond},
		Env:  map[string]string{"SECRET": envValue},
		Root: root,
		Compose: &stack.Compose{Services: map[string]*stack.ComposeService{
			"proxy": {Name: "proxy"}, stateless: {Name: stateless, BuildContext: "."}, stateful: {Name: stateful},
		}},
	}
}

// ageScript is how the host is asked for its time and a file's; Reply or
// Exec answer it, as they answered it before it was one of the facts.
const ageScript = `date +%s && date -r "$1" +%s`

// facts answers host.Facts's script: $1 the boundary, then the asks.
func (f *Fake) facts(cmd remote.Cmd) ([]byte, error) {
	boundary, args := cmd.Argv[4], cmd.Argv[5:]
	var in []byte
	if cmd.Stdin != nil {
		in, _ = io.ReadAll(cmd.Stdin)
	}
	input := func(n string) ([]byte, bool) {
		k, err := strconv.Atoi(n)
		if err != nil || k > len(in) {
			in = nil
			return nil, false
		}
		data := in[:k]
		in = in[k:]
		return slices.Clone(data), true
	}
	var (
		out bytes.Buffer
		bad bool // a write failed: the later ones fail too
	)
	for len(args) > 0 {
		op := args[0]
		arity := map[string]int{"cat": 1, "ls": 1, "age": 1, "mkdir": 2, "write": 3, "append": 3, "lock": 3, "unlock": 2}[op]
		if arity == 0 || len(args) < 1+arity {
			return nil, &remote.ExitError{Argv: cmd.Argv, Code: 2, Stderr: "taledeploy facts: unknown ask " + op}
		}
		a := args[1 : 1+arity]
		args = args[1+arity:]
		var (
			code   int
			stderr string
		)
		if op == "age" {
			if _, err := f.Peek(a[0]); err != nil {
				code = 66
			} else {
				var (
					b   []byte
					err error
				)
				switch argv := []string{"sh", "-c", ageScript, "sh", a[0]}; {
				case f.Exec != nil:
					b, err = f.Exec(remote.Cmd{Argv: argv})
				case f.Reply != nil:
					b, err = f.Reply(argv)
				}
				out.Write(b)
				if err != nil || len(b) == 0 {
					code = 1
				}
			}
		} else if bad && (op == "write" || op == "append" || op == "lock") {
			code = 1
		} else {
			code, stderr = f.ask(&out, op, a, input)
			bad = bad || code != 0 && (op == "write" || op == "append")
		}
		fmt.Fprintf(&out, "\n%s %d %d\n%s", boundary, code, len(stderr), stderr)
	}
	return out.Bytes(), nil
}

// ask answers one ask of host.Facts but age, writing its output to out.
func (f *Fake) ask(out *bytes.Buffer, op string, a []string, input func(string) ([]byte, bool)) (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Files == nil {
		f.Files = map[string][]byte{}
	}
	switch op {
	case "cat":
		data, ok := f.Files[a[0]]
		if !ok {
			return 66, ""
		}
		out.Write(data)
	case "ls":
		var names []string
		for p := range f.Files {
			if name, ok := strings.CutPrefix(p, a[0]+"/"); ok {
				name, _, _ = strings.Cut(name, "/")
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
		if len(names) == 0 && !slices.Contains(f.Dirs, a[0]) {
			return 66, ""
		}
		slices.Sort(names)
		for _, n := range names {
			out.WriteString(n + "\n")
		}
	case "mkdir":
		if !slices.Contains(f.Dirs, a[0]) {
			f.Dirs = append(f.Dirs, a[0])
		}
	case "write", "append":
		data, ok := input(a[2])
		if !ok {
			return 1, ""
		}
		if err := f.refused(op, a[0]); err != nil {
			return 1, err.Error() + "\n"
		}
		mode, _ := strconv.ParseUint(a[1], 8, 32)
		if op == "write" {
			f.Files[a[0]] = data
			f.Ops = append(f.Ops, "write "+a[0])
			f.touch(a[0])
		} else {
			f.Files[a[0]] = append(f.Files[a[0]], data...)
		}
		if f.Mode == nil {
			f.Mode = map[string]os.FileMode{}
		}
		f.Mode[a[0]] = os.FileMode(mode)
	case "lock":
		data, ok := input(a[2])
		if !ok {
			return 1, ""
		}
		for p := range f.Files {
			if strings.HasPrefix(p, a[0]+"/") {
				return 3, ""
			}
		}
		f.Files[a[0]+"/owner.json"] = data
		f.Dirs = append(f.Dirs, a[0])
	case "unlock":
		rec, ok := f.Files[a[0]+"/owner.json"]
		switch {
		case !ok:
			return 66, ""
		case !bytes.Contains(rec, []byte(a[1])):
			return 3, ""
		case f.refused("remove", a[0]) != nil:
			return 1, f.refused("remove", a[0]).Error() + "\n"
		}
		f.Gone = append(f.Gone, a[0])
		f.Ops = append(f.Ops, "remove "+a[0])
		for p := range f.Files {
			if strings.HasPrefix(p, a[0]+"/") {
				delete(f.Files, p)
			}
		}
		f.Dirs = slices.DeleteFunc(f.Dirs, func(d string) bool { return d == a[0] || strings.HasPrefix(d, a[0]+"/") })
	}
	return 0, ""
}
