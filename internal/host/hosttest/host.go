package hosttest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// Host is a fake host that runs one stack: a Docker engine with Compose, and
// the stack's Caddy once its proxy service runs. Files, the commands it ran
// and the lock's heartbeat are the embedded Fake's.
type Host struct {
	*Fake
	Docker *Docker
	Caddy  *Caddy
	// Fail, when set, fails a command before it runs: the error it returns is
	// the command's stderr.
	Fail  func(argv []string) error
	stack *stack.Stack
}

// NewHost is a host named name with Docker installed and nothing running, for s.
func NewHost(name string, s *stack.Stack) *Host {
	h := &Host{Fake: &Fake{HostName: name, Files: map[string][]byte{"/proc/meminfo": []byte("MemTotal: 8000000 kB\nMemAvailable: 4000000 kB\n")}},
		Docker: NewDocker(s), stack: s}
	h.Caddy = &Caddy{host: h}
	h.Docker.Engine = "engine-" + name
	h.Fake.Exec = h.run
	h.Fake.Serve = h.serve
	return h
}

// Commands lists the commands run so far but the lock's heartbeat (which
// runs on a timer), each as Short puts it: "docker compose -p tale-blue up -d
// --no-deps --remove-orphans platform rag".
func (h *Host) Commands() []string {
	h.Fake.mu.Lock()
	defer h.Fake.mu.Unlock()
	var out []string
	for _, c := range h.Fake.Cmds {
		if len(c.Argv) > 2 && c.Argv[0] == "sh" && strings.Contains(c.Argv[2], "owner.json.beat") {
			continue
		}
		out = append(out, Short(c.Argv))
	}
	return out
}

// Short is argv joined by spaces, without the nice prefix and compose's
// options but -p.
func Short(argv []string) string {
	if len(argv) > 3 && argv[0] == "nice" && argv[1] == "-n" {
		argv = argv[3:]
	}
	if len(argv) < 2 || argv[0] != "docker" || argv[1] != "compose" {
		return strings.Join(argv, " ")
	}
	out := []string{"docker", "compose"}
	for i := 2; i < len(argv); i++ {
		switch argv[i] {
		case "--project-directory", "--env-file", "-f":
			i++
		case "-p":
			out = append(out, argv[i:min(i+2, len(argv))]...)
			i++
		default:
			return strings.Join(append(out, argv[i:]...), " ")
		}
	}
	return strings.Join(out, " ")
}

func (h *Host) run(cmd remote.Cmd) ([]byte, error) {
	argv := cmd.Argv
	if h.Fail != nil {
		if err := h.Fail(argv); err != nil {
			return nil, &remote.ExitError{Argv: argv, Code: 1, Stderr: err.Error()}
		}
	}
	a := argv
	if len(a) > 3 && a[0] == "nice" && a[1] == "-n" {
		a = a[3:]
	}
	var (
		out []byte
		err error
	)
	switch {
	case len(a) > 1 && a[0] == "docker" && a[1] == "compose":
		out, err = h.Docker.Compose(cmd, a[1:])
	case a[0] == "docker":
		out, err = h.Docker.Docker(cmd, a)
	case a[0] == "find":
		return h.Fake.Find(argv)
	case len(a) >= 5 && a[0] == "sh" && strings.HasPrefix(a[2], "# taledeploy resources"):
		return h.resources(a[4], a[5:])
	case a[0] == "df":
		var b strings.Builder
		b.WriteString("Filesystem 1024-blocks Used Available Capacity Mounted on\n")
		for range a[3:] {
			b.WriteString("/dev/sda1 40000000 10000000 30000000 25% /\n")
		}
		return []byte(b.String()), nil
	default:
		return nil, &remote.ExitError{Argv: argv, Code: 127, Stderr: "fake host: " + a[0] + ": command not found"}
	}
	h.proxyStarted()
	return out, err
}

// proxyStarted has Caddy read its config when the proxy container started.
func (h *Host) proxyStarted() {
	s := h.stack
	for _, c := range h.Docker.Containers(s.Project) {
		if c.Service == s.Proxy && c.Running() {
			data, _ := h.Fake.Peek(s.Paths().CaddyConfig())
			h.Caddy.started(fmt.Sprintf("%s#%d", c.ID, c.Starts), data)
		}
	}
}

func refused(network, addr string) error {
	return &net.OpError{Op: "dial", Net: network, Addr: fakeAddr(addr), Err: syscall.ECONNREFUSED}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

// serve answers a dial: the Docker API, Caddy's admin socket and sites, and
// the containers' ports.
func (h *Host) serve(network, addr string) (http.Handler, error) {
	s := h.stack
	proxy := func() (Container, bool) {
		for _, c := range h.Docker.Containers(s.Project) {
			if c.Service == s.Proxy && c.Running() {
				return c, true
			}
		}
		return Container{}, false
	}
	switch {
	case network == "unix" && addr == fakeDockerSocket:
		return h.Docker, nil
	case network == "unix" && addr == s.Paths().Admin()+"/admin.sock":
		if _, ok := proxy(); !ok {
			return nil, refused(network, addr)
		}
		return h.Caddy, nil
	case network == "tcp":
		ip, _, _ := net.SplitHostPort(addr)
		c, ok := h.Docker.byIP(ip)
		if !ok || !c.Running() {
			return nil, refused(network, addr)
		}
		if c.Project == s.Project && c.Service == s.Proxy {
			return http.HandlerFunc(h.Caddy.site), nil
		}
		return app(c), nil
	}
	return nil, errors.New("fake host: nothing listens at " + network + " " + addr)
}

// resources answers host.ResourcesCmd ($1 the folder, then container IDs) as a host whose containers' memory
// counters are not where Docker usually puts them (so docker stats is asked).
func (h *Host) resources(dir string, ids []string) ([]byte, error) {
	var b strings.Builder
	meminfo, _ := h.Fake.Peek("/proc/meminfo")
	for _, line := range strings.Split(string(meminfo), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			fmt.Fprintf(&b, "mem %s\n", strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	b.WriteString("df 30000000\ndf 30000000\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "cg %s -\n", id)
	}
	return []byte(b.String()), nil
}
