package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"taledeploy/internal/stack"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// dockerSocket is where Docker Engine serves its API on the host.
const dockerSocket = "/var/run/docker.sock"

// engines holds one Engine API client per host connection: a client asks the
// engine for its API version once, and keeps its connection to the socket open
// for the next request (a round trip less over a WAN).
var engines sync.Map // Conn -> *client.Client

// Engine is the Docker Engine API client of the host, on its socket reached
// through the SSH connection: one request instead of starting a docker CLI
// process on the host, which matters when a push polls and several hosts
// share a small VPS. It speaks the engine's own API version.
func Engine(h Conn) *client.Client {
	if c, ok := engines.Load(h); ok {
		return c.(*client.Client)
	}
	// Each connection is a tunnel, opened with a round trip: keep as many
	// idle as the calls made at once (image inspects, tags), not Go's two,
	// so the next batch does not open them again.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 16, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}, CheckRedirect: client.CheckRedirect}
	c, err := client.New(
		client.WithHTTPClient(hc),
		client.WithHost("unix://"+dockerSocket),
		client.WithScheme("http"),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return h.Dial(ctx, "unix", dockerSocket)
		}),
	)
	if err != nil {
		panic(err) // only a bad option fails, and these are fixed
	}
	actual, loaded := engines.LoadOrStore(h, c)
	if loaded {
		c.Close()
	}
	return actual.(*client.Client)
}

// dockerErr says where the Docker API was asked, for an error that names no
// socket.
func dockerErr(err error) error {
	if err == nil || cerrdefs.IsNotFound(err) {
		return err
	}
	return fmt.Errorf("docker API on %s (the SSH user needs access to it, as for the docker CLI): %w", dockerSocket, err)
}

// composeContainers lists every container Compose made.
func composeContainers(ctx context.Context, h Conn) ([]container.Summary, error) {
	res, err := Engine(h).ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "com.docker.compose.project")})
	return res.Items, dockerErr(err)
}

// NetworkExists tells whether the host has the named Docker network.
func NetworkExists(ctx context.Context, h Conn, name string) (bool, error) {
	_, err := Engine(h).NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, dockerErr(err)
}

// MissingNetworks lists which of the named networks the host lacks, asking for
// all at once (one round trip).
func MissingNetworks(ctx context.Context, h Conn, names ...string) ([]string, error) {
	exists := make([]bool, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { exists[i], errs[i] = NetworkExists(ctx, h, name) })
	}
	wg.Wait()
	var missing []string
	for i, name := range names {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if !exists[i] {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// JoinColorNetworks puts each container of a color that is not on its color's
// network (made by an older taledeploy, when colors shared one network) on
// it, with the names the color's overlay gives: it keeps serving, and its
// calls keep reaching the stateful services, once those move to the colors'
// networks.
func JoinColorNetworks(ctx context.Context, h Conn, s *stack.Stack, cs []Container) (int, error) {
	var errs []error
	joined := 0
	for _, c := range cs {
		if c.Color == "" || c.Project != s.ColorProject(c.Color) || slices.Contains(c.Networks, s.ColorNetwork(c.Color)) {
			continue
		}
		_, err := Engine(h).NetworkConnect(ctx, s.ColorNetwork(c.Color), client.NetworkConnectOptions{
			Container:      c.ID,
			EndpointConfig: &network.EndpointSettings{Aliases: []string{c.Service + "-" + c.Color, c.Service}},
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("connect %s to %s: %w", c.Name, s.ColorNetwork(c.Color), dockerErr(err)))
			continue
		}
		joined++
	}
	return joined, errors.Join(errs...)
}

// EngineID names the Docker engine a host runs, so that hosts that are one
// machine can be told apart from hosts that only look different. A host whose
// engine does not answer gets its own name.
func EngineID(ctx context.Context, h Conn) string {
	info, err := Engine(h).Info(ctx, client.InfoOptions{})
	if err != nil || info.Info.ID == "" {
		return "host " + h.Name()
	}
	return "engine " + info.Info.ID
}
