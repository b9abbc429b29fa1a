package hosttest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"

	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// Docker is a fake Docker engine with the Compose plugin, for one stack: it
// keeps containers, answers the docker and docker compose commands a deploy
// runs and the Engine API reads it makes, and serves each running container's
// HTTP port.
type Docker struct {
	mu         sync.Mutex
	stack      *stack.Stack
	containers []*Container
	networks   []string
	next       int            // for IDs and addresses
	builds     map[string]int // project/service -> images built
	built      []string       // images built through the API, by first tag
	// ImagesGone: the engine has no image (they were pruned).
	ImagesGone bool
	// Containerd: the engine uses the containerd image store.
	Containerd bool
	// BuildFail, if set, fails the API build of the image tagged so.
	BuildFail func(tag string) error

	// Engine is the ID /info reports: hosts with one engine are one machine.
	Engine string
	// APIVersion is the Engine API version it speaks ("1.41", Debian 12's
	// engine, when empty). From 1.52 the container list carries health.
	APIVersion    string
	EngineVersion string // what docker version says; 20.10.24+dfsg1 if empty
	// Hashes is what `compose config --hash` prints for a stateful service
	// ("hash-SERVICE" when missing); a container is made with it.
	Hashes map[string]string
	// Created, when set, adjusts each container as Compose makes it: a release
	// that never gets healthy, say. It must not call Docker's methods.
	Created func(c *Container)
}

// Container is one container of the fake engine.
type Container struct {
	ID, Name, Project, Service string
	Color, Release             string // taledeploy's labels; "" for a stateful service
	Image, ConfigHash, IP      string
	Env                        []string
	State                      string // running, exited, restarting
	Health                     string // healthy, unhealthy, starting; "" without a healthcheck
	Mounts                     []Mount
	// Answer is the status the container answers any HTTP request with; 200
	// when 0.
	Answer int
	Starts int // times started
}

// Mount is a bind mount.
type Mount struct{ Source, Destination string }

// Running tells whether the container runs.
func (c *Container) Running() bool { return c.State == "running" }

// NewDocker is an engine with nothing on it, for s.
func NewDocker(s *stack.Stack) *Docker {
	return &Docker{stack: s, builds: map[string]int{}, Engine: "engine-" + s.Project}
}

// Containers returns copies of the containers of a compose project ("" for
// every project), in the order they were made.
// Built lists the images built through the engine API (build: host), by
// their first tag (project/service:color), in order.
func (d *Docker) Built() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.built)
}

func (d *Docker) Containers(project string) []Container {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Container
	for _, c := range d.containers {
		if project == "" || c.Project == project {
			out = append(out, *c)
		}
	}
	return out
}

// Change calls fn on every container of project and service ("" for any),
// as a change made by hand on the host (docker rm, a crash) would.
func (d *Docker) Change(project, service string, fn func(c *Container)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.containers {
		if c.Project == project && (service == "" || c.Service == service) {
			fn(c)
		}
	}
}

// Remove removes the containers of project and service ("" for any), as
// `docker rm -f` by hand would.
func (d *Docker) Remove(project, service string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.containers = slices.DeleteFunc(d.containers, func(c *Container) bool {
		return c.Project == project && (service == "" || c.Service == service)
	})
}

// find returns the container of project and service, nil when there is none;
// d.mu is held.
func (d *Docker) find(project, service string) *Container {
	for _, c := range d.containers {
		if c.Project == project && c.Service == service {
			return c
		}
	}
	return nil
}

// byIP returns a copy of the container with the address, if any.
func (d *Docker) byIP(ip string) (Container, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.containers {
		if c.IP == ip {
			return *c, true
		}
	}
	return Container{}, false
}

// exit is a command that failed with stderr.
func exit(argv []string, format string, a ...any) error {
	return &remote.ExitError{Argv: argv, Code: 1, Stderr: fmt.Sprintf(format, a...)}
}

// Compose answers `docker compose [--project-directory D] [--env-file F]
// [-f FILE]... -p PROJECT COMMAND ARGS...`, argv starting at "compose".
func (d *Docker) Compose(cmd remote.Cmd, argv []string) ([]byte, error) {
	project, sub, args := "", "", []string(nil)
	for i := 1; i < len(argv); i++ {
		switch argv[i] {
		case "--project-directory", "--env-file", "-f":
			i++
		case "-p":
			i++
			project = argv[i]
		default:
			sub, args = argv[i], argv[i+1:]
			i = len(argv)
		}
	}
	env := map[string]string{}
	for _, e := range cmd.Env {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	var services []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			services = append(services, a)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch sub {
	case "build":
		for _, svc := range services {
			d.builds[project+"/"+svc]++
		}
		return nil, nil
	case "up":
		// The overlays put every service on the colors' networks, declared external.
		for _, n := range []string{d.stack.ColorNetwork(stack.Blue), d.stack.ColorNetwork(stack.Green)} {
			if !slices.Contains(d.networks, n) {
				return nil, exit(cmd.Argv, "network %s declared as external, but could not be found", n)
			}
		}
		for _, svc := range services {
			d.up(project, svc, env)
		}
		if slices.Contains(args, "--wait") {
			for _, svc := range services {
				if c := d.find(project, svc); !c.Running() || c.Health != "" && c.Health != "healthy" {
					return nil, exit(cmd.Argv, "container %s is %s", c.Name, strings.TrimSpace(c.State+" "+c.Health))
				}
			}
		}
		return nil, nil
	case "down":
		d.containers = slices.DeleteFunc(d.containers, func(c *Container) bool { return c.Project == project })
		return nil, nil
	case "config":
		var b strings.Builder
		if len(services) == 1 {
			for _, svc := range strings.Split(services[0], ",") {
				fmt.Fprintf(&b, "%s %s\n", svc, d.hash(svc))
			}
		}
		return []byte(b.String()), nil
	case "logs":
		var b strings.Builder
		for _, c := range d.containers {
			if c.Project == project {
				fmt.Fprintf(&b, "%s  | %s %s\n", c.Name, c.Service, c.State)
			}
		}
		return []byte(b.String()), nil
	case "run":
		// A one-off container (a migration): the fake runs nothing.
		return nil, nil
	}
	return nil, exit(cmd.Argv, "unknown docker command: \"compose %s\"", sub)
}

func (d *Docker) hash(svc string) string {
	if h := d.Hashes[svc]; h != "" {
		return h
	}
	return "hash-" + svc
}

// up makes the container of project and svc unless one runs as it would be
// made; d.mu is held.
func (d *Docker) up(project, svc string, env map[string]string) {
	s := d.stack
	c := &Container{Project: project, Service: svc, Name: project + "-" + svc + "-1", State: "running", Health: "healthy"}
	if color := env["TALEDEPLOY_COLOR"]; color != "" {
		c.Color, c.Release = color, env["TALEDEPLOY_RELEASE"]
		if c.Release == "" {
			c.Release = "unknown" // as the overlay says
		}
		c.Env = []string{"TALEDEPLOY_COLOR=" + color, "TALEDEPLOY_RELEASE=" + c.Release}
	} else {
		c.ConfigHash = d.hash(svc)
	}
	c.Image = fmt.Sprintf("sha256:%s-%s-%d", project, svc, d.builds[project+"/"+svc])
	if svc == s.Proxy {
		c.Mounts = []Mount{{Source: path.Dir(s.Remote(s.Caddyfile)), Destination: "/etc/caddy"}, {Source: s.Paths().Admin(), Destination: "/run/caddy"}}
	}
	if old := d.find(project, svc); old != nil {
		if old.Running() && old.Image == c.Image && old.Release == c.Release && old.ConfigHash == c.ConfigHash {
			return
		}
		d.containers = slices.DeleteFunc(d.containers, func(o *Container) bool { return o == old })
	}
	d.next++
	c.ID = fmt.Sprintf("%012x", 0xc0000+d.next)
	c.IP = fmt.Sprintf("10.0.0.%d", d.next+1)
	c.Starts = 1
	if d.Created != nil {
		d.Created(c)
	}
	d.containers = append(d.containers, c)
}

// Docker answers the docker CLI's commands a deploy runs, argv starting at "docker".
func (d *Docker) Docker(cmd remote.Cmd, argv []string) ([]byte, error) {
	if len(argv) < 2 {
		return nil, exit(cmd.Argv, "usage: docker COMMAND")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch argv[1] {
	case "version":
		return []byte(cmp.Or(d.EngineVersion, "20.10.24+dfsg1") + " " + d.version() + "\n"), nil
	case "stop", "start":
		for _, id := range argv[2:] {
			i := slices.IndexFunc(d.containers, func(c *Container) bool { return c.ID == id })
			if i < 0 {
				return nil, exit(cmd.Argv, "Error response from daemon: No such container: %s", id)
			}
			c := d.containers[i]
			if argv[1] == "stop" {
				c.State, c.Health = "exited", ""
			} else if !c.Running() {
				c.State, c.Health = "running", "healthy"
				c.Starts++
			}
		}
		return []byte(strings.Join(argv[2:], "\n") + "\n"), nil
	case "network":
		if len(argv) > 2 && argv[2] == "create" {
			name := argv[len(argv)-1]
			if slices.Contains(d.networks, name) {
				return nil, exit(cmd.Argv, "Error response from daemon: network with name %s already exists", name)
			}
			d.networks = append(d.networks, name)
			return []byte("n-" + name + "\n"), nil
		}
	case "stats":
		var b strings.Builder
		for _, a := range argv[2:] {
			if !strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "{{") {
				b.WriteString("64MiB / 1GiB\n")
			}
		}
		return []byte(b.String()), nil
	}
	return nil, exit(cmd.Argv, "unknown docker command: %q", strings.Join(argv[1:], " "))
}

// ServeHTTP answers the Engine API reads a deploy makes.
func (d *Docker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	engineAPI(d.version(), http.HandlerFunc(d.serve)).ServeHTTP(w, r)
}

func (d *Docker) version() string {
	if d.APIVersion == "" {
		return "1.41"
	}
	return d.APIVersion
}

func (d *Docker) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/containers/json":
		out := []map[string]any{}
		for _, c := range d.containers {
			out = append(out, c.api(d.stack, atLeast(d.version(), "1.52")))
		}
		json.NewEncoder(w).Encode(out)
	case strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/json"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/containers/"), "/json")
		for _, c := range d.containers {
			if c.ID == id {
				state := map[string]any{"Status": c.State}
				if c.Health != "" {
					state["Health"] = map[string]any{"Status": c.Health}
				}
				json.NewEncoder(w).Encode(map[string]any{"Id": c.ID, "State": state, "Config": map[string]any{"Env": c.Env}})
				return
			}
		}
		http.Error(w, `{"message":"No such container: `+id+`"}`, http.StatusNotFound)
	case strings.HasPrefix(p, "/networks/"):
		name := strings.TrimPrefix(p, "/networks/")
		if !slices.Contains(d.networks, name) {
			http.Error(w, `{"message":"network `+name+` not found"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"Name": name})
	case p == "/info":
		info := map[string]any{"ID": d.Engine, "DockerRootDir": "/var/lib/docker", "Driver": "overlay2"}
		if d.Containerd {
			info["Driver"], info["DriverStatus"] = "overlayfs", [][2]string{{"driver-type", "io.containerd.snapshotter.v1"}}
		}
		json.NewEncoder(w).Encode(info)
	case p == "/build" && r.Method == http.MethodPost:
		// A build from a context stream (build: host): the first tag names
		// the color, as project/service:color.
		io.Copy(io.Discard, r.Body)
		tags := r.URL.Query()["t"]
		if len(tags) == 0 {
			http.Error(w, `{"message":"no tag"}`, http.StatusBadRequest)
			return
		}
		if d.BuildFail != nil {
			if err := d.BuildFail(tags[0]); err != nil {
				json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "errorDetail": map[string]any{"message": err.Error()}})
				return
			}
		}
		name, color, _ := strings.Cut(tags[0], ":")
		_, svc, _ := strings.Cut(name, "/")
		d.builds[d.stack.ColorProject(color)+"/"+svc]++
		d.built = append(d.built, tags[0])
		json.NewEncoder(w).Encode(map[string]any{"stream": "Successfully built\n"})
	case p == "/images/json":
		json.NewEncoder(w).Encode([]any{})
	case strings.HasPrefix(p, "/images/") && strings.HasSuffix(p, "/tag"):
		w.WriteHeader(http.StatusCreated)
	case strings.HasPrefix(p, "/images/") && d.ImagesGone:
		http.Error(w, `{"message":"No such image"}`, http.StatusNotFound)
	case strings.HasPrefix(p, "/images/"):
		json.NewEncoder(w).Encode(map[string]any{"Size": 200 << 20})
	default:
		http.NotFound(w, r)
	}
}

// api is the container as /containers/json lists it.
func (c *Container) api(s *stack.Stack, withHealth bool) map[string]any {
	network := s.Project + "_default"
	if c.Color != "" {
		network = s.ColorNetwork(c.Color)
	}
	status := "Exited (0) 2 seconds ago"
	switch c.State {
	case "running":
		status = "Up 2 seconds"
		switch c.Health {
		case "healthy", "unhealthy":
			status += " (" + c.Health + ")"
		case "starting":
			status += " (health: starting)"
		}
	case "restarting":
		status = "Restarting (1) 1 second ago"
	}
	labels := map[string]string{"com.docker.compose.project": c.Project, "com.docker.compose.service": c.Service}
	if c.Color != "" {
		labels["taledeploy.color"], labels["taledeploy.release"] = c.Color, c.Release
	}
	if c.ConfigHash != "" {
		labels["com.docker.compose.config-hash"] = c.ConfigHash
	}
	var mounts []map[string]string
	for _, m := range c.Mounts {
		mounts = append(mounts, map[string]string{"Type": "bind", "Source": m.Source, "Destination": m.Destination})
	}
	out := map[string]any{
		"Id": c.ID, "Names": []string{"/" + c.Name}, "ImageID": c.Image, "Labels": labels, "State": c.State, "Status": status,
		"NetworkSettings": map[string]any{"Networks": map[string]any{network: map[string]string{"IPAddress": c.IP}}},
		"Mounts":          mounts,
	}
	if withHealth {
		h := c.Health
		if h == "" || c.State != "running" {
			h = "none"
		}
		out["Health"] = map[string]any{"Status": h}
	}
	return out
}

// app is what a stateless container serves on its port: Answer, and its name
// in a header so a test can tell which color answered.
func app(c Container) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Container", c.Name)
		if c.Answer != 0 {
			w.WriteHeader(c.Answer)
		}
		fmt.Fprintf(w, "%s %s\n", c.Name, r.URL.Path)
	})
}
