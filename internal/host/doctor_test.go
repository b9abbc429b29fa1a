package host

import (
	"context"
	"strings"
	"taledeploy/internal/host/hosttest"
	"testing"
)

// doctor names an sshd that forbids forwarding, with the setting to change,
// instead of blaming the proxy or Docker.
func TestDoctorForwarding(t *testing.T) {
	s := hosttest.RawStack(t.TempDir(), "tale", "/srv/tale", "compose.yml", "platform", "db", "x")
	fs := Doctor(context.Background(), &hosttest.Fake{NoForwarding: true}, s)
	last := fs[len(fs)-1]
	if last.Check != "forwarding" || last.OK || !strings.Contains(last.Fix, "AllowStreamLocalForwarding") {
		t.Errorf("doctor on a host without forwarding ends with %+v", last)
	}
	for _, f := range fs {
		if f.Check == "proxy" || f.Check == "docker" {
			t.Errorf("doctor blamed %s: %+v", f.Check, f)
		}
	}
	fs = Doctor(context.Background(), &hosttest.Fake{}, s)
	if len(fs) < 2 || fs[1].Check != "forwarding" || !fs[1].OK {
		t.Errorf("doctor on a host that forwards: %+v", fs)
	}
}

// doctor says which image store each engine has: the containerd one is sent
// whole images, the classic one only the layers it lacks.
func TestDoctorImageStore(t *testing.T) {
	s := hosttest.RawStack(t.TempDir(), "tale", "/srv/tale", "compose.yml", "platform", "db", "x")
	for _, containerd := range []bool{false, true} {
		h := hosttest.NewHost("one", s)
		h.Docker.Containerd = containerd
		var docker Finding
		for _, f := range Doctor(context.Background(), h, s) {
			if f.Check == "docker" {
				docker = f
			}
		}
		want := map[bool]string{false: "classic image store (overlay2)", true: "containerd image store (overlayfs): images are sent as an OCI layout of the layers it lacks"}[containerd]
		if !strings.Contains(docker.Detail, want) {
			t.Errorf("containerd %v: doctor says %+v, want %q", containerd, docker, want)
		}
	}
}

// The engine's age is judged by its API version: version strings differ by
// packager (moby's own builds of the Engine 29 line say 2.0.0-beta.N).
func TestDoctorEngineAge(t *testing.T) {
	s := hosttest.RawStack(t.TempDir(), "tale", "/srv/tale", "compose.yml", "platform", "db", "x")
	for _, tc := range []struct {
		version, api string
		ok           bool
	}{
		{"19.03.15", "1.40", false},
		{"20.10.24+dfsg1", "1.41", true},
		{"29.1.2", "1.52", true},
		{"2.0.0-beta.24", "1.56", true},
	} {
		h := hosttest.NewHost("one", s)
		h.Docker.EngineVersion, h.Docker.APIVersion = tc.version, tc.api
		for _, f := range Doctor(context.Background(), h, s) {
			if f.Check == "docker" && (f.OK != tc.ok || !strings.Contains(f.Detail, "Docker Engine "+tc.version+", API "+tc.api)) {
				t.Errorf("%s (API %s): doctor says %+v", tc.version, tc.api, f)
			}
		}
	}
}
