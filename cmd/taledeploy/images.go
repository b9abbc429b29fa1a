package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/docker/go-units"

	"taledeploy/internal/images"
	"taledeploy/internal/stack"
	"taledeploy/plan"
)

// resolveBuild sets each host's build mode: the flag, else the host's or the
// stack's build:, else local when this machine's Docker answers and host when
// it does not.
func resolveBuild(ctx context.Context, env *stack.Environment, flag string) error {
	if flag != "" && !stack.ValidBuild(flag) {
		return fmt.Errorf("--build %q: use local (build here, send the layers each host lacks), host (build on each host) or none (pull every image)", flag)
	}
	auto := ""
	for _, h := range env.Hosts {
		s := env.StackFor(h.Name)
		switch {
		case flag != "":
			s.Build = flag
		case s.Build != "":
		default:
			if auto == "" {
				auto = stack.BuildHost
				if images.LocalAvailable(ctx) {
					auto = stack.BuildLocal
				}
			}
			s.Build = auto
		}
		// A pulled image must be named: refused before any host is reached.
		for _, svc := range s.Pulled() {
			if _, err := s.PullRef(svc); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildImages builds the images of the hosts whose build is local, once for
// all of them, and saves them for sending: before any host is touched, so a
// failed build changes nothing anywhere.
func buildImages(ctx context.Context, env *stack.Environment, release string, report func(plan.Event)) (*images.Release, error) {
	var local bool
	for _, h := range env.Hosts {
		local = local || env.StackFor(h.Name).Build == stack.BuildLocal
	}
	services := images.Built(&env.Stack)
	if !local || len(services) == 0 {
		return nil, nil
	}
	eng, err := images.Local()
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	start := time.Now()
	report(plan.Event{Host: localName, Step: "build", Status: "running"})
	fail := func(err error) (*images.Release, error) {
		report(plan.Event{Host: localName, Step: "build", Status: "failed", Duration: time.Since(start), Message: err.Error()})
		return nil, fmt.Errorf("build: local needs Docker with Compose on this machine (or set build: host in the inventory, or push --build host): %w", err)
	}
	if !images.LocalAvailable(ctx) {
		return fail(fmt.Errorf("this machine's Docker engine does not answer (DOCKER_HOST=%q)", os.Getenv("DOCKER_HOST")))
	}
	refs, err := images.Build(ctx, &env.Stack, release, services)
	if err != nil {
		return fail(err)
	}
	rel, err := images.Save(ctx, eng, refs)
	if err != nil {
		return fail(err)
	}
	var size int64
	for _, img := range rel.Images {
		size += img.Size
	}
	report(plan.Event{Host: localName, Step: "build", Status: "ok", Duration: time.Since(start),
		Message: fmt.Sprintf("%d image(s) built on this machine, %s in layers", len(rel.Images), units.BytesSize(float64(size)))})
	return rel, nil
}

// localName stands for this machine in the output.
const localName = "local"
