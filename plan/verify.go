package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/remote"
	"time"
)

// logError is a failure that comes with the last log lines of the containers
// that failed; the step's event carries them, so --json output stays pure.
type logError struct {
	err error
	log string
}

func (e *logError) Error() string { return e.err.Error() }
func (e *logError) Unwrap() error { return e.err }

// verify waits until every container of the color is healthy and every routed
// service answers its health path, probed from the host through the SSH connection.
func verify(ctx context.Context, h host.Conn, s *stack.Stack, color string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.HealthTimeout.Duration)
	defer cancel()
	client := host.HTTPClient(h, 3*time.Second)
	project := s.ColorProject(color)
	var why string
	restarting := map[string]int{} // container ID -> polls that found it restarting
	for {
		cs, err := host.Inspect(ctx, h, s.Project, project)
		if errors.Is(err, remote.ErrDisconnected) {
			return "", err
		}
		if err == nil {
			why = notReady(ctx, h, s, client, cs)
			for _, c := range cs {
				if c.State != "restarting" {
					continue
				}
				// Crashing at start, in Docker's restart loop: waiting for the
				// health timeout cannot help.
				if restarting[c.ID]++; restarting[c.ID] >= 2 {
					why = fmt.Sprintf("failed: %s keeps restarting (%s)", c.Name, c.Status)
				}
			}
			if why == "" {
				return fmt.Sprintf("%d containers healthy, %d routes answer", len(cs), len(s.Routes)), nil
			}
			if strings.HasPrefix(why, "failed:") {
				return "", withLogs(ctx, h, s, color, fmt.Errorf("%w: %s", ErrUnhealthy, strings.TrimPrefix(why, "failed: ")))
			}
		} else {
			why = err.Error()
		}
		if err := host.Sleep(ctx, 500*time.Millisecond); err != nil {
			return "", withLogs(context.WithoutCancel(ctx), h, s, color, fmt.Errorf("%w within %s: %s", ErrUnhealthy, s.HealthTimeout.Duration, why))
		}
	}
}

// notReady says what is not ready yet ("" when all is), prefixed "failed:" when
// waiting longer cannot help.
func notReady(ctx context.Context, h host.Conn, s *stack.Stack, client *http.Client, cs []host.Container) string {
	if why := containersNotReady(s, cs); why != "" {
		return why
	}
	// Every route at once: one after another, each is a round trip more.
	whys := make([]string, len(s.Routes))
	var wg sync.WaitGroup
	for i, r := range s.Routes {
		c := cs[slices.IndexFunc(cs, func(c host.Container) bool { return c.Service == r.Service })]
		if c.IP == "" {
			whys[i] = c.Name + " has no address on network " + s.ColorNetwork(c.Color)
			continue
		}
		wg.Go(func() {
			url := fmt.Sprintf("http://%s%s", net.JoinHostPort(c.IP, fmt.Sprint(r.Port)), r.HealthPath)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				whys[i] = fmt.Sprintf("%s%s: %v", c.Name, r.HealthPath, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				whys[i] = fmt.Sprintf("%s%s answers %d", c.Name, r.HealthPath, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	for _, why := range whys {
		if why != "" {
			return why
		}
	}
	return ""
}

// containersNotReady says which stateless container is not ready ("" when all
// are), prefixed "failed:" when waiting longer cannot help.
func containersNotReady(s *stack.Stack, cs []host.Container) string {
	for _, svc := range s.Stateless {
		i := slices.IndexFunc(cs, func(c host.Container) bool { return c.Service == svc })
		if i < 0 {
			return svc + " has no container"
		}
		c := cs[i]
		switch {
		case c.State == "exited" || c.State == "dead":
			return fmt.Sprintf("failed: %s exited", c.Name)
		case c.Health == "unhealthy":
			return fmt.Sprintf("failed: %s is unhealthy", c.Name)
		case !c.Ready():
			return fmt.Sprintf("%s is %s %s", c.Name, c.State, c.Health)
		}
	}
	return ""
}

// withLogs attaches the color's last log lines to err.
func withLogs(ctx context.Context, h host.Conn, s *stack.Stack, color string, err error) error {
	out, _ := host.RunCompose(ctx, h, s, color, host.ComposeEnv(s, color, ""), "logs", "--no-color", "--tail", "20")
	if len(out) == 0 {
		return err
	}
	return &logError{err: err, log: fmt.Sprintf("last log lines of %s:\n%s", s.ColorProject(color), out)}
}
