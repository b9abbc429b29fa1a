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
