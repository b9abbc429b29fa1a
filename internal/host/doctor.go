package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"taledeploy/internal/images"
	"taledeploy/internal/stack"
	"taledeploy/remote"

	"github.com/moby/moby/client"
	"golang.org/x/mod/semver"
)

// Finding is one thing `taledeploy doctor` checked on a host.
type Finding struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Oldest versions taledeploy is tested against (compose --wait, config --hash).
const (
	minDocker  = "20.10"
	minAPI     = "1.41" // Engine 20.10's
	minCompose = "2.20"
)

// Doctor checks what a push needs of a host: Docker Engine and Compose v2,
// room for a second color, the proxy and its admin socket, the lock and the
// record. It changes nothing.
func Doctor(ctx context.Context, h Conn, s *stack.Stack) []Finding {
	var out []Finding
	add := func(check string, ok bool, detail, fix string) {
		f := Finding{Check: check, OK: ok, Detail: detail}
		if !ok {
			f.Fix = fix
		}
		out = append(out, f)
	}
	add("ssh", true, "connected, host key verified", "")

	// taledeploy reads Docker and Caddy through unix-socket tunnels and probes
	// the new color through TCP ones. Port 1 on the host's loopback answers
	// nothing: opening the tunnel only asks sshd whether it allows it.
	var refused []string
	for _, t := range []struct{ network, addr string }{{"unix", dockerSocket}, {"tcp", "127.0.0.1:1"}} {
		c, err := h.Dial(ctx, t.network, t.addr)
		if c != nil {
			c.Close()
		}
		if errors.Is(err, remote.ErrForwardingRefused) {
			refused = append(refused, err.Error())
		}
	}
	if len(refused) > 0 {
		add("forwarding", false, strings.Join(refused, "; "), "allow AllowTcpForwarding and AllowStreamLocalForwarding for the SSH user in the host's sshd_config (both are on by default), then reload sshd")
		return out // nothing below works without it
	}
	add("forwarding", true, "sshd allows TCP and unix-socket forwarding", "")

	v, err := h.Run(ctx, remote.Cmd{Argv: []string{"docker", "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"}})
	engine, api, _ := strings.Cut(strings.TrimSpace(string(v)), " ")
	about := "Docker Engine " + engine + ", API " + api + ", " + imageStore(ctx, h)
	switch {
	case err != nil:
		add("docker", false, err.Error(), "install Docker Engine and add the SSH user to the docker group (or deploy as root)")
	case !stack.APIAtLeast(api, minAPI):
		// By the API version: engine version strings differ by packager
		// (moby's own builds say 2.0.0-beta.N for an Engine 29 API).
		add("docker", false, about, "upgrade Docker Engine to "+minDocker+" (API "+minAPI+") or newer")
	default:
		add("docker", true, about, "")
	}
	v, err = h.Run(ctx, remote.Cmd{Argv: []string{"docker", "compose", "version", "--short"}})
	compose := strings.TrimPrefix(strings.TrimSpace(string(v)), "v")
	switch {
	case err != nil:
		add("compose", false, err.Error(), "install the Compose v2 plugin (docker compose), "+minCompose+" or newer")
	case !atLeast(compose, minCompose):
		add("compose", false, "Compose "+compose, "upgrade the Compose plugin to "+minCompose+" or newer")
	default:
		add("compose", true, "Compose "+compose, "")
	}
	if err != nil && engine == "" {
		return out // nothing below works without Docker
	}

	o, err := Observe(ctx, h, s)
	if err != nil {
		add("proxy", false, err.Error(), fmt.Sprintf("check that %s runs and mounts %s", s.Proxy, s.Paths().Admin()))
		return out
	}
	_, proxyRuns := RunningProxy(s, o.Containers)
	switch {
	case !proxyRuns && o.Containers == nil:
		add("proxy", true, "nothing deployed yet; the first push starts it", "")
	case !proxyRuns:
		add("proxy", false, s.Proxy+" is not running", "run `taledeploy push` to start it, or look at `docker logs "+s.Project+"-"+s.Proxy+"`")
	default:
		if _, err := NewCaddy(h, s).Config(ctx); err != nil {
			add("proxy", false, "admin socket "+s.Paths().Admin()+"/admin.sock: "+err.Error(),
				"the proxy must serve its admin API on that socket (`admin unix//run/caddy/admin.sock` in the Caddyfile) and mount "+s.Paths().Admin()+"; a non-root SSH user needs write access to the socket")
		} else {
			how := "the gate admits " + cmp.Or(strings.Join(o.Admitted, " and "), "nothing")
			if !o.Gated {
				how = "Caddy runs a Caddyfile from an older taledeploy, without the gate; the next push loads the current one (one reload)"
			}
			add("proxy", true, fmt.Sprintf("%s runs, admin socket answers, traffic goes to %s; %s", s.Proxy, cmp.Or(o.CaddyColor, "nothing"), how), "")
		}
	}

	if msg, err := CheckResources(ctx, h, s, o.Containers, o.Live); err != nil {
		add("room", false, err.Error(), "free memory or disk on the host, or lower reserve_memory / reserve_disk; push --skip-preflight pushes without this check")
	} else {
		add("room", true, msg, "")
	}

	if l, err := ReadLock(ctx, h, s); err != nil {
		add("lock", false, err.Error(), "`taledeploy lock release ENV --force` removes it")
	} else if l == nil {
		add("lock", true, "not locked", "")
	} else if why := l.Stale(time.Now()); why != "" {
		add("lock", false, "stale lock: "+l.Describe(time.Now())+" ("+why+")", "the next push takes it over, or `taledeploy lock release ENV` clears it")
	} else {
		add("lock", true, "a deploy runs: "+l.Describe(time.Now()), "")
	}

	st, stErr := ReadState(ctx, h, s)
	if probs := o.Disagreements(s, st, stErr); len(probs) > 0 {
		add("record", false, strings.Join(probs, "; "), "`taledeploy push ENV --repair` rebuilds the record from what runs")
	} else if st == nil {
		add("record", true, "no record: nothing deployed yet", "")
	} else {
		add("record", true, fmt.Sprintf("%s live with release %s, matching what runs", st.Active, st.Release), "")
	}
	return out
}

// atLeast compares versions as semver: "28.2.2" and "20.10.24+dfsg1" are at
// least "20.10"; a version that is not one is not.
func atLeast(have, want string) bool {
	// Distributions add their own suffixes: 24.0.7-0ubuntu2~22.04.1, 20.10.24+dfsg1.
	v, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(have), "v"), "~")
	if i := strings.IndexAny(v, "+-"); i >= 0 {
		v = v[:i]
	}
	return semver.IsValid("v"+v) && semver.Compare("v"+v, "v"+want) >= 0
}

// imageStore says how the engine stores images, and so how images are sent to
// it: a docker save archive to the classic store, an OCI layout to the
// containerd store, each with only the layers the host lacks.
func imageStore(ctx context.Context, h Conn) string {
	info, err := Engine(h).Info(ctx, client.InfoOptions{})
	switch {
	case err != nil:
		return "image store unknown (" + err.Error() + ")"
	case images.Containerd(info.Info.DriverStatus):
		return "containerd image store (" + info.Info.Driver + "): images are sent as an OCI layout of the layers it lacks"
	default:
		return "classic image store (" + info.Info.Driver + "): images are sent as the layers it lacks"
	}
}
