// Package templates renders the compose overlays (each color's and the stateful
// project's) from the templates embedded next to it.
package templates

import (
	"bytes"
	_ "embed"
	"text/template"
	"time"
)

var (
	//go:embed overlay.yml.tmpl
	overlaySrc string
	//go:embed stateful.yml.tmpl
	statefulSrc string

	overlayTmpl  = template.Must(template.New("overlay").Parse(overlaySrc))
	statefulTmpl = template.Must(template.New("stateful").Parse(statefulSrc))
)

// Overlay is the data of one color's compose overlay.
type Overlay struct {
	Project     string
	Color       string
	ComposeFile string
	Network     string // the color's own network
	Stateless   []Service
	Volumes     []string
}

// Service is one stateless service of the overlay, with what of the team's
// compose file cannot run twice side by side and is reset for the color.
type Service struct {
	Name               string
	ResetContainerName bool     // a container name can be used once
	ResetPorts         bool     // two colors cannot bind one host port
	ResetDependsOn     []string // stateful services it depends on: they run in their own project
	// Links, when set, replace its links: those to stateful services go
	// (Compose would start them in the color's project); the rest stay.
	Links       []string
	ResetLinks  bool     // every link was to a stateful service
	Aliases     []string // its own aliases on its networks, kept on the color's network
	External    []string // external networks it is on: kept (made outside the stack)
	NetworkMode string   // network_mode: then it joins no network
	// StartInterval, when set, is how often the host's engine checks its
	// health during its start period.
	StartInterval string
}

// Stateful is the data of the stateful project's overlay.
type Stateful struct {
	Project, ComposeFile, File string
	Blue, Green                string // the colors' networks
	Services                   []StatefulService
	// The proxy: the host folder of its admin socket, gate and config, where
	// the container sees it, and the config it starts with.
	AdminDir, ProxyAdminDir, Config string
}

// StatefulService is one stateful service that joins the colors' networks.
type StatefulService struct {
	Name     string
	Proxy    bool     // the stack's proxy
	Networks bool     // it joins networks (it has no network_mode)
	Default  bool     // it names no network of its own, so it is on Compose's default
	Aliases  []string // its own aliases on its networks, kept on the colors'
}

// Render returns the overlay's YAML.
func (o Stateful) Render() []byte {
	var b bytes.Buffer
	if err := statefulTmpl.Execute(&b, o); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// Render returns the overlay's YAML.
func (o Overlay) Render() []byte {
	var b bytes.Buffer
	if err := overlayTmpl.Execute(&b, o); err != nil {
		panic(err) // the data is plain strings: a failure is a bug in the template
	}
	return b.Bytes()
}

// The gate is a site inside the proxy that tells Caddy's active health checks
// which upstreams may take traffic: taledeploy switches colors by adding and
// removing files in its folder, with no config reload. A reload would close the
// old server while it still accepts connections, and Go's HTTP server drops a
// request that arrives on such a connection (golang/go#75591).
const (
	GatePort     = 2020
	GateHeader   = "X-Taledeploy-Upstream"
	GateInterval = 250 * time.Millisecond
	// GateFails is how many failed checks in a row retire an upstream.
	GateFails = 2
)
