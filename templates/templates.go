// Package templates renders the per-color compose overlay and the Caddyfile from
// the templates embedded next to it.
package templates

import (
	"bytes"
	_ "embed"
	"fmt"
	"text/template"
	"time"
)

var (
	//go:embed overlay.yml.tmpl
	overlaySrc string
	//go:embed Caddyfile.tmpl
	caddySrc string
	//go:embed stateful.yml.tmpl
	statefulSrc string

	overlayTmpl  = template.Must(template.New("overlay").Parse(overlaySrc))
	caddyTmpl    = template.Must(template.New("Caddyfile").Parse(caddySrc))
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
	Aliases            []string // its own aliases on its networks, kept on the color's network
	NetworkMode        string   // network_mode: then it joins no network
}

// Stateful is the data of the stateful project's overlay.
type Stateful struct {
	Project, ComposeFile, File string
	Blue, Green                string // the colors' networks
	Services                   []StatefulService
}

// StatefulService is one stateful service that joins the colors' networks.
type StatefulService struct {
	Name    string
	Default bool     // it names no network of its own, so it is on Compose's default
	Aliases []string // its own aliases on its networks, kept on the colors'
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

// Caddyfile is the data of the proxy's Caddyfile.
type Caddyfile struct {
	Sites            []Site
	StreamCloseDelay time.Duration
}

// Site is one site address with its routes.
type Site struct {
	Address string
	Routes  []Route
}

// Route sends a path to a service of either color.
type Route struct {
	Path, Service, HealthPath string
	Port                      int
}

// Render returns the Caddyfile text.
func (c Caddyfile) Render() []byte {
	var b bytes.Buffer
	data := struct {
		Caddyfile
		Gate, GateHeader    string
		GatePort, GateFails int
		GateInterval        time.Duration
	}{c, fmt.Sprintf("127.0.0.1:%d", GatePort), GateHeader, GatePort, GateFails, GateInterval}
	if err := caddyTmpl.Execute(&b, data); err != nil {
		panic(err)
	}
	return b.Bytes()
}
