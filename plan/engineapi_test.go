package plan

import (
	"context"
	"strings"
	"testing"

	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
)

// Health is read the way each engine offers it: from the container list on
// API 1.52 and later, from each running container's inspect before that
// (Debian 12's engine speaks 1.41). Both decide a push the same way.
func TestHealthOnEachEngineAPI(t *testing.T) {
	for _, version := range []string{"1.41", "1.52", "1.56"} {
		t.Run(version, func(t *testing.T) {
			s := deployStack(t)
			h := hosttest.NewHost("one", s)
			h.Docker.APIVersion = version
			if err := push(t, deployer(h, s, "r1", &events{})); err != nil {
				t.Fatalf("push of a healthy release: %v", err)
			}
			cs, err := host.InspectStack(context.Background(), h, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.Running() && c.Health != "healthy" {
					t.Errorf("%s: health %q, want healthy", c.Name, c.Health)
				}
			}
			h.Docker.Created = func(c *hosttest.Container) {
				if c.Color == stack.Green && c.Service == "rag" {
					c.Health = "unhealthy"
				}
			}
			err = push(t, deployer(h, s, "r2", &events{}))
			if err == nil || !strings.Contains(err.Error(), "tale-green-rag-1 is unhealthy") {
				t.Errorf("push of an unhealthy release: %v", err)
			}
			serves(t, h, s, stack.Blue)
		})
	}
}
