package stack

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"taledeploy/templates"
)

// Overlay renders the compose overlay of one color.
func (s *Stack) Overlay(color string) []byte {
	return templates.Overlay{
		Project:     s.Project,
		Color:       color,
		ComposeFile: s.ComposeFile,
		Network:     s.ColorNetwork(color),
		Stateless:   s.overlayServices(),
		Volumes:     s.Compose.Volumes,
	}.Render()
}

// overlayServices says, per stateless service, what of the compose file the
// color overlay resets: the team's file stays as it is for local use.
func (s *Stack) overlayServices() []templates.Service {
	var out []templates.Service
	for _, name := range s.Stateless {
		ts := templates.Service{Name: name}
		if svc := s.Compose.Services[name]; svc != nil {
			ts.ResetContainerName, ts.ResetPorts = svc.ContainerName != 0, svc.Ports != 0
			ts.NetworkMode, ts.Aliases = svc.NetworkMode, svc.aliases()
			for _, dep := range svc.DependsOn {
				if slices.Contains(s.Stateful, dep) {
					ts.ResetDependsOn = append(ts.ResetDependsOn, dep)
				}
			}
		}
		out = append(out, ts)
	}
	return out
}

// aliases lists the aliases a service gives itself on any of its networks.
func (svc *ComposeService) aliases() []string {
	var out []string
	for _, n := range svc.Networks {
		for _, a := range n.Aliases {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// ColorNetwork is a color's own network: its stateless services and every
// stateful one are on it, so a service's plain name (rag, db) always finds the
// caller's color. A name that is on two networks of a container resolves on
// whichever sorts first, so the colors never share a network.
func (s *Stack) ColorNetwork(color string) string { return s.Project + "-" + color }

// StatefulOverlay renders the stateful project's overlay: every stateful
// service joins both colors' networks.
func (s *Stack) StatefulOverlay() []byte {
	o := templates.Stateful{Project: s.Project, ComposeFile: s.ComposeFile, File: s.StatefulOverlayFile(),
		Blue: s.ColorNetwork(Blue), Green: s.ColorNetwork(Green)}
	for _, name := range s.Stateful {
		svc := s.Compose.Services[name]
		if svc == nil || svc.NetworkMode != "" {
			continue
		}
		o.Services = append(o.Services, templates.StatefulService{Name: name, Default: len(svc.Networks) == 0, Aliases: svc.aliases()})
	}
	return o.Render()
}

// StatefulOverlayFile is where the stateful project's overlay lives.
func (s *Stack) StatefulOverlayFile() string {
	return filepath.ToSlash(filepath.Join(filepath.Dir(s.ComposeFile), "compose.stateful.yml"))
}

// Neutralised lists what of the compose file the color overlays reset, with why.
func (s *Stack) Neutralised() []string {
	var out []string
	for _, ts := range s.overlayServices() {
		if ts.ResetContainerName {
			out = append(out, ts.Name+": container_name (two colors run side by side, and a name can be used once)")
		}
		if ts.ResetPorts {
			out = append(out, ts.Name+": ports (two colors cannot bind one host port; traffic comes through the proxy)")
		}
		if len(ts.ResetDependsOn) > 0 {
			out = append(out, fmt.Sprintf("%s: depends_on %s (stateful services run in their own project, started before the color)", ts.Name, strings.Join(ts.ResetDependsOn, ", ")))
		}
	}
	return out
}

// OverlayFile is where a color's overlay lives, next to the compose file.
func (s *Stack) OverlayFile(color string) string {
	return filepath.ToSlash(filepath.Join(filepath.Dir(s.ComposeFile), "compose."+color+".yml"))
}

// CaddyfileText renders the proxy's Caddyfile. It is the same whichever color is
// live: the gate (gate.go) decides where traffic goes.
func (s *Stack) CaddyfileText() []byte {
	c := templates.Caddyfile{StreamCloseDelay: s.DrainTimeout.Duration}
	index := map[string]int{}
	for _, r := range s.Routes {
		i, ok := index[r.Site]
		if !ok {
			i = len(c.Sites)
			index[r.Site] = i
			c.Sites = append(c.Sites, templates.Site{Address: r.Site})
		}
		c.Sites[i].Routes = append(c.Sites[i].Routes, templates.Route{
			Path: r.Path, Service: r.Service, HealthPath: r.HealthPath, Port: r.Port})
	}
	return c.Render()
}

// renderedMark starts every file render writes (see templates/).
const renderedMark = "# Rendered by `taledeploy render`"

// RenderTo writes both overlays and the Caddyfile
// below dir, at the paths the stack uses.
func (s *Stack) RenderTo(dir string) ([]string, error) {
	files := map[string][]byte{
		s.OverlayFile(Blue):     s.Overlay(Blue),
		s.OverlayFile(Green):    s.Overlay(Green),
		s.StatefulOverlayFile(): s.StatefulOverlay(),
		s.Caddyfile:             s.CaddyfileText(),
	}
	order := []string{s.OverlayFile(Blue), s.OverlayFile(Green), s.StatefulOverlayFile(), s.Caddyfile}
	// A file that taledeploy did not render (a hand-written Caddyfile, say) is
	// never replaced: all are checked before any is written.
	for _, rel := range order {
		p := filepath.Join(dir, rel)
		old, err := os.ReadFile(p)
		if err == nil && !bytes.HasPrefix(old, []byte(renderedMark)) {
			return nil, fmt.Errorf("%w: %s exists and was not rendered by taledeploy; nothing was written. Pass another --out, or move the file away", ErrBadInput, p)
		}
	}
	var written []string
	for _, rel := range order {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(p, files[rel], 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}
