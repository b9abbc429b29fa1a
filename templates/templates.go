// Package templates renders the per-color compose overlay and the Caddyfile from
// the templates embedded next to it.
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
	//go:embed Caddyfile.tmpl
	caddySrc string

	overlayTmpl = template.Must(template.New("overlay").Parse(overlaySrc))
	caddyTmpl   = template.Must(template.New("Caddyfile").Parse(caddySrc))
)

// Overlay is the data of one color's compose overlay.
type Overlay struct {
	Project     string
	Color       string
	ComposeFile string
	Stateless   []string
	Volumes     []string
}

// Render returns the overlay's YAML.
func (o Overlay) Render() []byte {
	var b bytes.Buffer
	if err := overlayTmpl.Execute(&b, o); err != nil {
		panic(err) // the data is plain strings: a failure is a bug in the template
	}
	return b.Bytes()
}

// Caddyfile is the data of the proxy's Caddyfile.
type Caddyfile struct {
	Live, Other      string
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
	if err := caddyTmpl.Execute(&b, c); err != nil {
		panic(err)
	}
	return b.Bytes()
}
