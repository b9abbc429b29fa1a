package host

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// dockerSocket is where Docker Engine serves its API on the host.
const dockerSocket = "/var/run/docker.sock"

// DockerGet reads the Docker Engine API on the host's socket, reached through the
// SSH connection: one request instead of starting a docker CLI process on the
// host, which matters when a push polls and several hosts share a small VPS.
func DockerGet(ctx context.Context, h Conn, path string, out any) (int, error) {
	client := HTTPClient(h, 30*time.Second, dockerSocket, 0)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("docker API on %s (the SSH user needs access to it, as for the docker CLI): %w", dockerSocket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("docker API GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("docker API GET %s: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}

// composeContainers lists every container Compose made, as the API's
// /containers/json gives them.
func composeContainers(ctx context.Context, h Conn) ([]apiContainer, error) {
	q := url.Values{"all": {"1"}, "filters": {`{"label":["com.docker.compose.project"]}`}}
	var cs []apiContainer
	_, err := DockerGet(ctx, h, "/containers/json?"+q.Encode(), &cs)
	return cs, err
}

type apiContainer struct {
	ID              string `json:"Id"`
	Names           []string
	ImageID         string
	Labels          map[string]string
	State           string
	Status          string // "Up 3 minutes (healthy)"
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
	}
	Mounts []struct{ Type, Source, Destination string }
}

// health reads the health state out of the API's status text.
func (c apiContainer) health() string {
	switch {
	case c.State != "running":
		return ""
	case strings.Contains(c.Status, "(healthy)"):
		return "healthy"
	case strings.Contains(c.Status, "(unhealthy)"):
		return "unhealthy"
	case strings.Contains(c.Status, "(health: starting)"):
		return "starting"
	}
	return ""
}

// EngineID names the Docker engine a host runs, so that hosts that are one
// machine can be told apart from hosts that only look different. A host whose
// engine does not answer gets its own name.
func EngineID(ctx context.Context, h Conn) string {
	var info struct{ ID string }
	if _, err := DockerGet(ctx, h, "/info", &info); err != nil || info.ID == "" {
		return "host " + h.Name()
	}
	return "engine " + info.ID
}
