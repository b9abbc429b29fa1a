package plan

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/client"

	"taledeploy/internal/host"
	"taledeploy/internal/images"
	"taledeploy/internal/stack"
)

// shipImages sends the host the layers of the release's images (built once,
// here) that it lacks, and tags them for the new color and the release. It is
// part of preparing a push: a fleet sends every host its images before any
// host switches, and a host that cannot take them stops the push there.
func shipImages(ctx context.Context, r *run) (string, error) {
	eng := host.Engine(r.Host)
	have, err := images.HostHas(ctx, eng)
	if err != nil {
		return "", fmt.Errorf("images on the host: %w", err)
	}
	p := r.Images.PlanFor(have)
	start := time.Now()
	var msg string
	if p.Nothing {
		msg = "the host has every image"
	} else {
		report := func(sent int64) {
			if r.Report == nil {
				return
			}
			s := time.Since(start).Seconds()
			r.Report(Event{Host: r.Host.Name(), Step: "images", Status: "progress", Sent: sent, Total: p.Bytes,
				Message: fmt.Sprintf("%s of %s, %s/s", units.BytesSize(float64(sent)), units.BytesSize(float64(p.Bytes)), units.BytesSize(float64(sent)/max(s, 0.001)))})
		}
		if err := r.Images.Send(ctx, eng, p, report); err != nil {
			return "", fmt.Errorf("sending the images: %w (nothing changed on the host; a new push sends them again)", err)
		}
		secs := time.Since(start).Seconds()
		msg = fmt.Sprintf("sent %d of %d layers, %s of %s, in %.1fs (%s/s)", p.Layers, p.AllLayers,
			units.BytesSize(float64(p.Bytes)), units.BytesSize(float64(p.AllBytes)), secs, units.BytesSize(float64(p.Bytes)/max(secs, 0.001)))
	}
	if err := tagImages(ctx, eng, r.Stack, r.Images.Images, r.color, r.release); err != nil {
		return "", err
	}
	return msg, nil
}

// tagImages names each image for the color the overlay starts and for the
// release, which keeps it on the host until pruned.
func tagImages(ctx context.Context, eng *client.Client, s *stack.Stack, imgs []images.Image, color, release string) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, img := range imgs {
		for _, tag := range []string{color, ReleaseTag(release)} {
			wg.Go(func() {
				_, err := eng.ImageTag(ctx, client.ImageTagOptions{Source: img.ID, Target: s.Project + "/" + img.Service + ":" + tag})
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("tagging %s's image: %w", img.Service, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

var badTagChar = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// ReleaseTag is the image tag of a release: Docker's tag alphabet, at most
// 128 characters, not starting with . or -.
func ReleaseTag(release string) string {
	t := "r-" + badTagChar.ReplaceAllString(release, "_")
	return t[:min(len(t), 128)]
}
