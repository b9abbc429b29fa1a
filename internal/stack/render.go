package stack

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
			// Engine 25 (API 1.44) checks health every start_interval during
			// the start period, so a new color is found healthy within a
			// second of being so, not at the next interval (30 s by default).
			// An older engine refuses the field: decided by the host's API.
			if svc.StartPeriod && APIAtLeast(s.EngineAPI, "1.44") {
				ts.StartInterval = "1s"
			}
			ts.ResetContainerName, ts.ResetPorts = svc.ContainerName != 0, svc.Ports != 0
			ts.NetworkMode, ts.Aliases = svc.NetworkMode, svc.aliases()
			for _, n := range svc.Networks {
				if slices.Contains(s.Compose.External, n.Name) {
					ts.External = append(ts.External, n.Name)
				}
			}
			for _, dep := range svc.DependsOn {
				if slices.Contains(s.Stateful, dep) {
					ts.ResetDependsOn = append(ts.ResetDependsOn, dep)
				}
			}
			var dropped bool
			for _, l := range svc.Links {
				target, _, _ := strings.Cut(l, ":")
				if slices.Contains(s.Stateful, target) {
					dropped = true
				} else {
					ts.Links = append(ts.Links, l)
				}
			}
			if !dropped {
				ts.Links = nil
			} else if len(ts.Links) == 0 {
				ts.ResetLinks = true
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
		Blue: s.ColorNetwork(Blue), Green: s.ColorNetwork(Green),
		AdminDir: s.Paths().Admin(), ProxyAdminDir: ProxyAdminDir, Config: ProxyAdminDir + "/caddy.json"}
	for _, name := range s.Stateful {
		svc := s.Compose.Services[name]
		if svc == nil {
			continue
		}
		o.Services = append(o.Services, templates.StatefulService{Name: name, Proxy: name == s.Proxy,
			Networks: svc.NetworkMode == "", Default: len(svc.Networks) == 0, Aliases: svc.aliases()})
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
		var replaced []string
		if svc := s.Compose.Services[ts.Name]; svc != nil && ts.NetworkMode == "" {
			for _, n := range svc.Networks {
				if !slices.Contains(ts.External, n.Name) {
					replaced = append(replaced, n.Name)
				}
			}
		}
		if len(replaced) > 0 {
			out = append(out, fmt.Sprintf("%s: networks %s (each color's service is on its color's network, which the stateful services join, so its calls stay in the color)", ts.Name, strings.Join(replaced, ", ")))
		}
		if len(ts.External) > 0 {
			out = append(out, fmt.Sprintf("%s: keeps its external networks %s (made outside the stack), which both colors join: a name both colors have there may reach either", ts.Name, strings.Join(ts.External, ", ")))
		}
		if ts.ResetLinks || len(ts.Links) > 0 {
			out = append(out, ts.Name+": links to stateful services (they run in their own project; the service reaches them by name on the color's network)")
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

// caddyfileRoutes reads the routes from the Caddyfile: each reverse_proxy to a
// stateless service, with the path the service's healthcheck asks, or /.
func (s *Stack) caddyfileRoutes(text []byte) []*Route {
	d := &Draft{}
	health := map[string]string{}
	for _, name := range s.Stateless {
		d.Services = append(d.Services, DraftService{Name: name})
		if s.Compose == nil {
			continue
		}
		if svc := s.Compose.Services[name]; svc != nil && svc.HealthPath != "" {
			health[name] = svc.HealthPath
		}
	}
	var out []*Route
	for _, r := range caddyRoutes(text, d, health, s.Env) {
		out = append(out, &r)
	}
	return out
}

// ReadCaddyfile reads the team's Caddyfile, which must lie in the stack folder.
func (s *Stack) ReadCaddyfile() ([]byte, error) {
	root, err := realPath(s.Root)
	if err != nil {
		return nil, fmt.Errorf("stack folder: %w", err)
	}
	p, err := inside(root, filepath.Join(s.Root, s.Caddyfile))
	if err != nil {
		return nil, fmt.Errorf("caddyfile: %w", err)
	}
	return os.ReadFile(p)
}

// renderedMark starts every file render writes (see templates/).
const renderedMark = "# Rendered by `taledeploy render`"

// RenderTo writes the overlays below dir, at the paths the stack uses. The
// Caddyfile is the team's: taledeploy never writes it.
func (s *Stack) RenderTo(dir string) ([]string, error) {
	files := map[string][]byte{
		s.OverlayFile(Blue):     s.Overlay(Blue),
		s.OverlayFile(Green):    s.Overlay(Green),
		s.StatefulOverlayFile(): s.StatefulOverlay(),
	}
	order := []string{s.OverlayFile(Blue), s.OverlayFile(Green), s.StatefulOverlayFile()}
	// A file that taledeploy did not render is never replaced: all are checked
	// before any is written.
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

// APIAtLeast tells whether Docker Engine API version v (as "1.44") is want or
// newer; an unknown version is not.
func APIAtLeast(v, want string) bool {
	parse := func(s string) (int, int, bool) {
		maj, min, ok := strings.Cut(s, ".")
		a, err1 := strconv.Atoi(maj)
		b, err2 := strconv.Atoi(min)
		return a, b, ok && err1 == nil && err2 == nil
	}
	a, b, ok := parse(v)
	wa, wb, _ := parse(want)
	return ok && (a > wa || a == wa && b >= wb)
}
