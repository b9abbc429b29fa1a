package host

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"taledeploy/internal/stack"
	"taledeploy/remote"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Conn is what the deploy logic needs of a connection to one host. remote.Client
// implements it; tests may use anything else that does.
type Conn interface {
	Name() string
	Run(ctx context.Context, cmd remote.Cmd) ([]byte, error)
	ReadFile(ctx context.Context, path string) ([]byte, error)
	WriteFile(ctx context.Context, path string, data []byte, mode os.FileMode) error
	AppendFile(ctx context.Context, path string, data []byte, mode os.FileMode) error
	Mkdir(ctx context.Context, path string, mode os.FileMode, exclusive bool) error
	Remove(ctx context.Context, path string) error
	Rename(ctx context.Context, oldpath, newpath string) error
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
}

// Container is one container of the stack as Docker reports it.
type Container struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Project string  `json:"project"`
	Service string  `json:"service"`
	Color   string  `json:"color,omitempty"`
	State   string  `json:"state"`            // running, exited, created, restarting, ...
	Status  string  `json:"-"`                // Docker's text: "Restarting (1) 2 seconds ago"
	Health  string  `json:"health,omitempty"` // healthy, unhealthy, starting; empty without a healthcheck
	Release string  `json:"release,omitempty"`
	Image   string  `json:"image"`
	IP      string  `json:"-"` // a color's on its color's network, others' on the first of theirs
	Mounts  []Mount `json:"-"`
	// Networks are the networks it is on (running or not).
	Networks []string `json:"-"`
	// ConfigHash is Compose's hash of the service definition the container was made from.
	ConfigHash string `json:"-"`
}

// Mount is a bind mount of a container.
type Mount struct{ Source, Destination string }

// Running tells whether the container runs.
func (c Container) Running() bool { return c.State == "running" }

// Ready tells whether the container runs and, when it has a healthcheck, passes it.
func (c Container) Ready() bool {
	return c.Running() && (c.Health == "" || c.Health == "healthy")
}

// InspectStack lists the containers of the stack's three projects.
func InspectStack(ctx context.Context, h Conn, s *stack.Stack) ([]Container, error) {
	return Inspect(ctx, h, s.Project, s.Project, s.ColorProject(stack.Blue), s.ColorProject(stack.Green))
}

// Inspect lists the containers of the given compose projects of the stack
// project, with their addresses: a color's on the color's network, others on
// the first of theirs. Health comes from the list: its health field (API
// 1.52 and later) or the end of its status.
func Inspect(ctx context.Context, h Conn, stackProject string, projects ...string) ([]Container, error) {
	raw, err := composeContainers(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var (
		cs  []Container
		ask []int // containers whose health or release the list lacks
	)
	for _, r := range raw {
		project := r.Labels["com.docker.compose.project"]
		if !slices.Contains(projects, project) {
			continue
		}
		c := Container{
			ID:         r.ID,
			Image:      r.ImageID,
			State:      string(r.State),
			Status:     r.Status,
			Project:    project,
			Service:    r.Labels["com.docker.compose.service"],
			Color:      r.Labels["taledeploy.color"],
			Release:    r.Labels["taledeploy.release"],
			ConfigHash: r.Labels["com.docker.compose.config-hash"],
		}
		if len(r.Names) > 0 {
			c.Name = strings.TrimPrefix(r.Names[0], "/")
		}
		if r.NetworkSettings != nil {
			names := slices.Sorted(maps.Keys(r.NetworkSettings.Networks))
			c.Networks = names
			if c.Color != "" {
				names = []string{stackProject + "-" + c.Color}
			}
			for _, n := range names {
				if ep := r.NetworkSettings.Networks[n]; ep != nil && ep.IPAddress.IsValid() {
					c.IP = ep.IPAddress.String()
					break
				}
			}
		}
		for _, m := range r.Mounts {
			if m.Type == "bind" {
				c.Mounts = append(c.Mounts, Mount{m.Source, m.Destination})
			}
		}
		if r.Health != nil {
			c.Health = health(c.State, r.Health.Status)
		} else {
			c.Health = health(c.State, statusHealth(r.Status))
		}
		// Made before the release became a label: it is in the environment.
		if c.Color != "" && c.Release == "" {
			ask = append(ask, len(cs))
		}
		cs = append(cs, c)
	}
	if err := inspectEach(ctx, h, cs, ask); err != nil {
		return nil, err
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Project != cs[j].Project {
			return cs[i].Project < cs[j].Project
		}
		return cs[i].Service < cs[j].Service
	})
	return cs, nil
}

// inspectEach asks the engine about cs[i] for each i in ask, all at once: the
// release of a container made before it was a label.
func inspectEach(ctx context.Context, h Conn, cs []Container, ask []int) error {
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(ask))
	)
	for k, i := range ask {
		wg.Go(func() {
			res, err := Engine(h).ContainerInspect(ctx, cs[i].ID, client.ContainerInspectOptions{})
			if cerrdefs.IsNotFound(err) {
				return // removed meanwhile
			}
			if errs[k] = dockerErr(err); err != nil {
				return
			}
			full := res.Container
			if full.State != nil && full.State.Health != nil {
				cs[i].Health = health(cs[i].State, full.State.Health.Status)
			}
			if cs[i].Release == "" && full.Config != nil {
				for _, e := range full.Config.Env {
					if v, ok := strings.CutPrefix(e, "TALEDEPLOY_RELEASE="); ok {
						cs[i].Release = v
					}
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("inspect containers: %w", err)
	}
	return nil
}

// statusHealth reads a container's health from the status the list gives
// on engines whose list has no health field (API before 1.52): Docker ends
// it with "(healthy)", "(unhealthy)" or "(health: starting)", as docker ps
// shows. Asking each container instead cost a round trip more.
func statusHealth(status string) container.HealthStatus {
	for _, h := range []container.HealthStatus{container.Healthy, container.Unhealthy} {
		if strings.HasSuffix(status, "("+string(h)+")") {
			return h
		}
	}
	if strings.HasSuffix(status, "(health: starting)") {
		return container.Starting
	}
	return container.NoHealthcheck
}

// health is what the engine says of a container's health check: "" when it
// has none or does not run.
func health(state string, h container.HealthStatus) string {
	if state != "running" || h == container.NoHealthcheck {
		return ""
	}
	return string(h)
}

// IDs returns the container IDs of cs.
func IDs(cs []Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// Services returns the distinct service names of cs, sorted.
func Services(cs []Container) []string {
	var out []string
	for _, c := range cs {
		if !slices.Contains(out, c.Service) {
			out = append(out, c.Service)
		}
	}
	sort.Strings(out)
	return out
}

// RunningProxy finds the stack's proxy container among cs, if it runs.
func RunningProxy(s *stack.Stack, cs []Container) (Container, bool) {
	for _, c := range cs {
		if c.Project == s.Project && c.Service == s.Proxy && c.Running() {
			return c, true
		}
	}
	return Container{}, false
}
