package stack

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func (inv *Inventory) check(e *Environment) error {
	at := func(line int, format string, a ...any) error {
		return fmt.Errorf("%s:%d: environment %s: %s", inv.file, line, e.Name, fmt.Sprintf(format, a...))
	}
	if len(e.Hosts) == 0 {
		return at(keyLine(e.lines, "hosts", e.line), "no hosts; add at least one under hosts: with name and address")
	}
	seen := map[string]bool{}
	for _, h := range e.Hosts {
		if h == nil {
			return at(keyLine(e.lines, "hosts", e.line), "an empty entry under hosts:; give each host name, address, user and known_hosts")
		}
		switch {
		case h.Name == "":
			return at(h.line, "host without name; add name: (it prefixes every line of output)")
		case !nameRE.MatchString(h.Name) || len(h.Name) > maxName:
			return at(h.line, "host name %.40q: use lower-case letters, digits, - and _ (at most %d)", h.Name, maxName)
		case seen[h.Name]:
			return at(h.line, "host name %q used twice; names must be unique", h.Name)
		case h.Address == "":
			return at(h.line, "host %s has no address; add address: (IP, DNS name or ssh config alias)", h.Name)
		case !addressRE.MatchString(h.Address) || strings.HasPrefix(h.Address, "-"):
			return at(h.line, "host %s: address %q is not an IP, DNS name or ssh config alias", h.Name, h.Address)
		case h.Port < 0 || h.Port > 65535:
			return at(h.line, "host %s: port %d is out of range 1-65535", h.Name, h.Port)
		case !validBuild(h.Build):
			return at(h.line, "host %s: build %q: use local (build here, send the layers the host lacks), host (build on the host) or none (pull every image)", h.Name, h.Build)
		case h.KnownHosts == "" && !inv.opts.KnownHostsFromEnv && !inv.opts.NoSSH:
			return at(h.line, "host %s has no known_hosts; host keys are always verified, so add known_hosts: FILE (or set TALEDEPLOY_KNOWN_HOSTS to the hosts' known_hosts lines)", h.Name)
		}
		seen[h.Name] = true
		// An unset port or user may come from the ssh config; the connection
		// refuses a host with no user from either.
		h.IdentityFile = inv.localPath(h.IdentityFile)
		h.KnownHosts = inv.localPath(h.KnownHosts)
	}
	s := &e.Stack
	if s.line == 0 {
		return at(keyLine(e.lines, "stack", e.line), "no stack:; add project, remote_dir, stateless and stateful")
	}
	kat := func(key, format string, a ...any) error { return at(keyLine(s.lines, key, s.line), format, a...) }
	switch {
	case !nameRE.MatchString(s.Project) || len(s.Project) > maxName:
		return kat("project", "stack.project %.40q: set a compose project name (lower-case letters, digits, - and _, at most %d)", s.Project, maxName)
	case len(s.Stateless) == 0:
		return kat("stateless", "stack.stateless is empty; list the services that run once per color (blue/green)")
	case s.KeepReleases < 0:
		return kat("keep_releases", "stack.keep_releases %d: give how many releases' images each host keeps for rollback (1 or more; default 3)", s.KeepReleases)
	case !validBuild(s.Build):
		return kat("build", "stack.build %q: use local (build here, send the layers the host lacks), host (build on the host) or none (pull every image)", s.Build)
	}
	if err := checkRemoteDir(s.RemoteDir, s.Project); err != nil {
		return kat("remote_dir", "stack.remote_dir %v", err)
	}
	if s.ComposeFile == "" {
		s.ComposeFile = "compose.yml"
	}
	if s.Caddyfile == "" {
		s.Caddyfile = "services/proxy/Caddyfile"
	}
	if s.Proxy == "" {
		s.Proxy = "proxy"
	}
	if s.HealthTimeout.Duration == 0 {
		s.HealthTimeout.Duration = 90 * time.Second
	}
	if s.KeepReleases == 0 {
		s.KeepReleases = 3
	}
	if s.DrainTimeout.Duration == 0 {
		s.DrainTimeout.Duration = 30 * time.Second
	}
	if s.ReserveMemory.Bytes == 0 {
		s.ReserveMemory.Bytes = 256 << 20
	}
	if s.ReserveDisk.Bytes == 0 {
		s.ReserveDisk.Bytes = 1 << 30
	}
	for _, f := range []struct {
		key string
		p   *string
	}{{"compose_file", &s.ComposeFile}, {"caddyfile", &s.Caddyfile}} {
		if err := checkStackPath(*f.p); err != nil {
			return kat(f.key, "stack.%s %v", f.key, err)
		}
		*f.p = path.Clean(*f.p)
	}
	// The names go into the rendered overlays and Caddy's config, and stateless ones
	// into image names, so they keep to what Compose and Docker accept there.
	for _, n := range s.Stateless {
		if !imageNameRE.MatchString(n) {
			return kat("stateless", "stateless service %q: use lower-case letters, digits, ., - and _ (it names the color's image)", n)
		}
	}
	for _, n := range s.Stateful {
		if !serviceRE.MatchString(n) {
			return kat("stateful", "stateful service %q: use letters, digits, ., - and _, as Compose does", n)
		}
	}
	both := map[string]string{}
	for _, n := range s.Stateless {
		if both[n] != "" {
			return kat("stateless", "service %q is listed twice under stateless; list it once", n)
		}
		both[n] = "stateless"
	}
	for _, n := range s.Stateful {
		if both[n] == "stateful" {
			return kat("stateful", "service %q is listed twice under stateful; list it once", n)
		}
		if both[n] != "" {
			return kat("stateful", "service %q is listed as both stateless and stateful; keep one", n)
		}
		both[n] = "stateful"
	}
	if both[s.Proxy] != "stateful" {
		return kat("stateful", "the proxy service %q must be listed under stateful (it runs once and is never doubled)", s.Proxy)
	}
	for _, k := range slices.Sorted(slices.Values(slices.Collect(maps.Keys(s.Env)))) {
		if !envKeyRE.MatchString(k) {
			return kat("env", "env key %q is not a valid variable name", k)
		}
		if strings.ContainsAny(s.Env[k], "\n\r\x00") {
			// The value itself is never printed: it may be a secret.
			return kat("env", "env %s: the value holds a line break or NUL, which an env file cannot carry; keep it on one line", k)
		}
	}
	for _, h := range e.Hosts {
		switch {
		case h.Project != "" && !nameRE.MatchString(h.Project):
			return at(h.line, "host %s: project %q: use lower-case letters, digits, - and _", h.Name, h.Project)
		}
		if h.RemoteDir != "" {
			if err := checkRemoteDir(h.RemoteDir, s.Project); err != nil {
				return at(h.line, "host %s: remote_dir %v", h.Name, err)
			}
		}
		for k, v := range h.Env {
			if !envKeyRE.MatchString(k) {
				return at(h.line, "host %s: env key %q is not a valid variable name", h.Name, k)
			}
			if strings.ContainsAny(v, "\n\r\x00") {
				return at(h.line, "host %s: env %s: the value holds a line break, which an env file cannot carry; keep it on one line", h.Name, k)
			}
		}
	}
	routed := map[string]*Route{}
	checkRoutes := func() error {
		for _, r := range s.Routes {
			if r == nil {
				return kat("routes", "an empty entry under routes:; give each route site, path, service, port and health_path")
			}
			rat := func(format string, a ...any) error { return at(r.line, format, a...) }
			if r.Site == "" {
				r.Site = ":80"
			}
			if r.Path == "" {
				r.Path = "/*"
			}
			switch {
			case r.Service == s.Proxy:
				return rat("route to %q, the proxy itself; a route names the stateless service the proxy sends the traffic to, one of: %s", r.Service, strings.Join(s.Stateless, ", "))
			case both[r.Service] == "stateful":
				return rat("route to %q, a stateful service; routes go to a stateless service (those run in two colors and switch), one of: %s. Serve a stateful one from the Caddyfile", r.Service, strings.Join(s.Stateless, ", "))
			case both[r.Service] != "stateless":
				return rat("route to unknown service %q; routes go to a stateless service, one of: %s", r.Service, strings.Join(s.Stateless, ", "))
			case r.Port <= 0 || r.Port > 65535:
				return rat("route to %s: port %d; set the port the service listens on inside its container", r.Service, r.Port)
			case !strings.HasPrefix(r.HealthPath, "/"):
				return rat("route to %s: health_path %q must start with / (it is probed before traffic moves)", r.Service, r.HealthPath)
			case !strings.HasPrefix(r.Path, "/"):
				return rat("route to %s: path %q must start with /", r.Service, r.Path)
			case strings.ContainsAny(r.Site+r.Path+r.HealthPath, " \t\n{}\"#"):
				return rat("route to %s: site, path and health_path may not hold spaces, braces, quotes or #", r.Service)
			case routed[r.Site+" "+r.Path] != nil:
				return rat("site %s path %s is routed twice (line %d too); Caddy would only ever use one, so keep one route", r.Site, r.Path, routed[r.Site+" "+r.Path].line)
			}
			routed[r.Site+" "+r.Path] = r
		}
		return nil
	}
	explicit := len(s.Routes) > 0
	if explicit {
		// A route without a site takes the one the Caddyfile serves the
		// same upstream on: the window probes through Caddy as visitors come.
		if text, err := os.ReadFile(filepath.Join(inv.dir, s.Caddyfile)); err == nil {
			derived := s.caddyfileRoutes(text)
			for _, r := range s.Routes {
				if r == nil || r.Site != "" {
					continue
				}
				if i := slices.IndexFunc(derived, func(d *Route) bool {
					return d.Service == r.Service && d.Port == r.Port && (r.Path == "" || d.Path == r.Path)
				}); i >= 0 {
					r.Site = derived[i].Site
				}
			}
		}
		if err := checkRoutes(); err != nil {
			return err
		}
	}
	for _, m := range s.Migrations {
		if m == nil {
			return kat("migrations", "an empty entry under migrations:; give each one service, dir and command")
		}
		mat := func(format string, a ...any) error { return at(m.line, format, a...) }
		switch {
		case both[m.Service] != "stateless":
			return mat("migrations of unknown service %q; they run in a one-off container of a stateless service, one of: %s", m.Service, strings.Join(s.Stateless, ", "))
		case m.Dir == "":
			return mat("migrations of %s: dir is missing; name the folder of .sql files, relative to this file", m.Service)
		case len(m.Command) == 0 || m.Command[0] == "":
			return mat("migrations of %s: command is missing; give the program in the image that applies them, e.g. [/app/platform, migrate]", m.Service)
		case slices.ContainsFunc(m.Command, func(a string) bool { return strings.ContainsRune(a, 0) }):
			return mat("migrations of %s: command holds a NUL byte", m.Service)
		}
		if fi, err := os.Stat(filepath.Join(inv.dir, m.Dir)); err != nil || !fi.IsDir() {
			return mat("migrations of %s: dir %q is not a folder; create it (it may be empty)", m.Service, m.Dir)
		}
		root, err := realPath(inv.dir)
		if err == nil {
			_, err = inside(root, filepath.Join(inv.dir, m.Dir))
		}
		if err != nil {
			return mat("migrations of %s: dir %q must be inside %s", m.Service, m.Dir, inv.dir)
		}
	}
	s.Root = inv.dir
	if fi, err := os.Stat(filepath.Join(inv.dir, s.Caddyfile)); err != nil || !fi.Mode().IsRegular() {
		return kat("caddyfile", "stack.caddyfile %s is not a file in %s; point it at the stack's Caddyfile (the proxy's config, which taledeploy keeps as it is)", s.Caddyfile, inv.dir)
	}
	// The inventory and the local env files hold secrets or point to them:
	// never part of an upload, even when a build context holds them.
	s.private = []string{inv.file}
	// So do the SSH files the hosts name, when they live in the project.
	for _, h := range e.Hosts {
		for _, f := range []string{h.IdentityFile, h.KnownHosts} {
			if f != "" && !strings.HasPrefix(f, "~") {
				s.private = append(s.private, f)
			}
		}
	}
	s.private = append(s.private, s.EnvFiles...)
	for i, f := range s.private {
		if !filepath.IsAbs(f) {
			s.private[i] = filepath.Join(inv.dir, f)
		}
	}
	for i, p := range s.private {
		if real, err := realPath(p); err == nil {
			s.private[i] = real
		} else if abs, err := filepath.Abs(p); err == nil {
			s.private[i] = abs
		}
	}
	c, err := LoadCompose(filepath.Join(inv.dir, s.ComposeFile))
	if err != nil {
		return kat("compose_file", "%v", err)
	}
	for _, l := range []struct {
		key   string
		names []string
	}{{"stateless", s.Stateless}, {"stateful", s.Stateful}} {
		for _, name := range l.names {
			if c.Services[name] == nil {
				return kat(l.key, "stack.%s lists service %q but the compose file %s has no such service; it has: %s",
					l.key, name, c.File, strings.Join(c.ServiceNames(), ", "))
			}
		}
	}
	if err := c.check(s); err != nil {
		return kat("compose_file", "%v", err)
	}
	s.Compose = c
	if !explicit {
		// From the Caddyfile: each reverse_proxy to a stateless service, with
		// the path its compose healthcheck asks (or /). The running Caddy
		// checks the same list when it adapts the file.
		text, err := os.ReadFile(filepath.Join(inv.dir, s.Caddyfile))
		if err != nil {
			return kat("caddyfile", "%v", err)
		}
		s.Routes = s.caddyfileRoutes(text)
		if len(s.Routes) == 0 {
			return kat("routes", "no routes, and the Caddyfile %s has no reverse_proxy to a stateless service (%s); proxy to one by its compose name (reverse_proxy %s:8080), or list routes (site, path, service, port, health_path)",
				s.Caddyfile, strings.Join(s.Stateless, ", "), s.Stateless[0])
		}
		for _, r := range s.Routes {
			r.line = keyLine(e.lines, "stack", e.line)
		}
		if err := checkRoutes(); err != nil {
			return err
		}
	}
	return nil
}

// checkRemoteDir refuses a remote_dir that is not one folder of its own: every
// upload and the deploy's own records go below it.
func checkRemoteDir(dir, project string) error {
	switch {
	case dir == "":
		return fmt.Errorf("is missing; set the stack's folder on the host, such as /srv/%s", project)
	case hasControl(dir):
		return fmt.Errorf("%q holds a control character; use a plain path such as /srv/%s", dir, project)
	case !path.IsAbs(dir):
		return fmt.Errorf("%q must be an absolute path on the host, such as /srv/%s", dir, project)
	case slices.Contains(strings.Split(dir, "/"), ".."):
		return fmt.Errorf("%q holds ..; use a folder of its own, such as /srv/%s", dir, project)
	case path.Clean(dir) == "/":
		return fmt.Errorf("%q is the root folder; use a folder of its own, such as /srv/%s", dir, project)
	case path.Clean(dir) != dir:
		return fmt.Errorf("%q is not a clean path; write it as %q", dir, path.Clean(dir))
	case systemDir(dir):
		return fmt.Errorf("%q is a system folder (or inside one) that the stack would share with the host's own files; use a folder of its own, such as /srv/%s", dir, project)
	}
	return nil
}

// systemDir tells whether dir is one of the host's own folders, or inside one
// that only the system writes: a push uploads into remote_dir and a compose
// file's relative bind mounts start there.
func systemDir(dir string) bool {
	for _, d := range []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr", "/var/lib/docker", "/var/run"} {
		if dir == d || strings.HasPrefix(dir, d+"/") {
			return true
		}
	}
	// Folders that hold others' files: a stack goes below them, not in them.
	return slices.Contains([]string{"/home", "/root", "/srv", "/opt", "/tmp", "/var", "/var/lib", "/var/tmp", "/mnt", "/media"}, dir)
}

// checkStackPath refuses a path of the stack (compose_file, caddyfile, a build
// context) that could point outside the stack's folder, here or on the host.
func checkStackPath(p string) error {
	switch {
	case hasControl(p):
		return fmt.Errorf("%q holds a control character; use a plain relative path", p)
	case filepath.IsAbs(p) || path.IsAbs(p):
		return fmt.Errorf("%q is absolute; write it relative to the stack folder (the inventory's), since it is uploaded below remote_dir", p)
	case slices.Contains(strings.Split(filepath.ToSlash(p), "/"), ".."):
		return fmt.Errorf("%q holds ..; keep it inside the stack folder (the inventory's), since it is uploaded below remote_dir", p)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// Build modes: where the stateless services' images come from.
const (
	BuildLocal = "local"
	BuildHost  = "host"
	BuildNone  = "none"
)

func validBuild(b string) bool {
	return b == "" || b == BuildLocal || b == BuildHost || b == BuildNone
}

// ValidBuild tells whether b names a build mode.
func ValidBuild(b string) bool { return b != "" && validBuild(b) }
