package plan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/client"

	"taledeploy/internal/host"
	"taledeploy/internal/images"
	"taledeploy/internal/stack"
)

// prepareImages gets the images of the push's stateless services onto the host
// when the host does not build them: sent from this machine, or pulled.
//
// shipImages sends the host the layers of the release's images (built once,
// here) that it lacks, and tags them for the new color and the release. It is
// part of preparing a push: a fleet sends every host its images before any
// host switches, and a host that cannot take them stops the push there.
func prepareImages(ctx context.Context, r *run) (string, error) {
	var msgs []string
	if r.Images != nil {
		msg, err := shipImages(ctx, r)
		if err != nil {
			return "", err
		}
		msgs = append(msgs, msg)
	}
	if pulled := r.Stack.Pulled(); len(pulled) > 0 {
		msg, err := pullImages(ctx, r, pulled)
		if err != nil {
			return "", err
		}
		msgs = append(msgs, msg)
	}
	return strings.Join(msgs, "; "), nil
}

// pullImages has the host pull the images of the services that come from a
// registry, all at once, and tags them as shipped ones are.
func pullImages(ctx context.Context, r *run, services []string) (string, error) {
	eng := host.Engine(r.Host)
	imgs := make([]images.Image, len(services))
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, svc := range services {
		wg.Go(func() {
			ref, err := r.Stack.PullRef(svc)
			if err == nil {
				imgs[i].ID, err = images.Pull(ctx, eng, ref)
			}
			imgs[i].Service, errs[i] = svc, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if err := tagImages(ctx, eng, r.Stack, imgs, r.color, r.release); err != nil {
		return "", err
	}
	return "pulled " + strings.Join(services, ", "), nil
}

// tagsImages: the push's images come from this machine or a registry, and
// are tagged per release here (so kept for rollback, and pruned).
func tagsImages(r *run) bool { return r.Images != nil || len(r.Stack.Pulled()) > 0 }

// tagsReleases: the push tags its images per release, wherever they come from.
func tagsReleases(r *run) bool { return tagsImages(r) || len(r.Stack.HostBuilt()) > 0 }

// buildsNothing: the host builds no stateless image itself.
func buildsNothing(r *run) bool { return len(r.Stack.HostBuilt()) == 0 }

func shipImages(ctx context.Context, r *run) (string, error) {
	eng := host.Engine(r.Host)
	have, err := images.HostHas(ctx, eng, r.Stack.Project)
	if err != nil {
		return "", fmt.Errorf("images on the host: %w", err)
	}
	if err := r.Images.CheckArch(have); err != nil {
		return "", err
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
			return "", fmt.Errorf("sending the images: %w (nothing serves them yet; a new push sends what is missing)", err)
		}
		secs := time.Since(start).Seconds()
		msg = fmt.Sprintf("sent %d of %d layers, %s of %s, in %.1fs (%s/s)", p.Layers, p.AllLayers,
			units.BytesSize(float64(p.Bytes)), units.BytesSize(float64(p.AllBytes)), secs, units.BytesSize(float64(p.Bytes)/max(secs, 0.001)))
	}
	// Named by the host's ID (which the record keeps for a failed push).
	imgs := slices.Clone(r.Images.Images)
	r.shipped = map[string]string{}
	for i := range imgs {
		imgs[i].ID, imgs[i].Ref = have.HostID(imgs[i]), ""
		r.shipped[imgs[i].Service] = imgs[i].ID
	}
	if err := tagImages(ctx, eng, r.Stack, imgs, r.color, r.release); err != nil {
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
				_, err := eng.ImageTag(ctx, client.ImageTagOptions{Source: cmp.Or(img.Ref, img.ID), Target: s.Project + "/" + img.Service + ":" + tag})
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
