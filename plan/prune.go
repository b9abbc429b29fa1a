package plan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
)

// keptReleases is what pruning keeps: the live release, the one kept for
// rollback and the last keep_releases releases that served, newest first.
func keptReleases(s *stack.Stack, hist []host.HistoryEntry, live, previous string) []string {
	keep := []string{}
	for _, r := range []string{live, previous} {
		if r != "" && !slices.Contains(keep, r) {
			keep = append(keep, r)
		}
	}
	// The last keep_releases distinct releases pushed: rollbacks and
	// contracts start no release of their own.
	var pushed []string
	for i := len(hist) - 1; i >= 0 && len(pushed) < s.KeepReleases; i-- {
		e := hist[i]
		if e.Result == "ok" && e.Action == "push" && !slices.Contains(pushed, e.Release) {
			pushed = append(pushed, e.Release)
		}
	}
	for _, r := range pushed {
		if !slices.Contains(keep, r) {
			keep = append(keep, r)
		}
	}
	return keep
}

// prunable lists the release tags of the stack's stateless images on the host
// (project/service:r-RELEASE) whose release is not kept and whose image no
// container uses, running or stopped.
func prunable(ctx context.Context, h host.Conn, s *stack.Stack, keep []string, cs []host.Container) ([]string, error) {
	list, err := host.Engine(h).ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, err
	}
	return prunableOf(list, s, keep, cs), nil
}

// prunableOf is prunable on the host's image list.
func prunableOf(list client.ImageListResult, s *stack.Stack, keep []string, cs []host.Container) []string {
	keepTags := map[string]bool{}
	for _, r := range keep {
		keepTags[ReleaseTag(r)] = true
	}
	used := map[string]bool{}
	for _, c := range cs {
		used[c.Image] = true
	}
	var out []string
	for _, img := range list.Items {
		if used[img.ID] {
			continue
		}
		for _, ref := range img.RepoTags {
			name, tag, ok := strings.Cut(ref, ":")
			svc, found := strings.CutPrefix(name, s.Project+"/")
			if ok && found && slices.Contains(s.Stateless, svc) && strings.HasPrefix(tag, "r-") && !keepTags[tag] {
				out = append(out, ref)
			}
		}
	}
	slices.Sort(out)
	return out
}

// startImageList asks the host's image list and returns what waits for the
// answer.
func startImageList(ctx context.Context, h host.Conn) func() (client.ImageListResult, error) {
	var (
		list client.ImageListResult
		err  error
		wg   sync.WaitGroup
	)
	wg.Go(func() { list, err = host.Engine(h).ImageList(ctx, client.ImageListOptions{}) })
	return func() (client.ImageListResult, error) {
		wg.Wait()
		return list, err
	}
}

// pruneImages removes the images of releases older than keep_releases after a
// push: their tags go, and Docker deletes an image (and the layers only it
// has) with its last tag, never one a container uses.
func pruneImages(ctx context.Context, r *run) (string, error) {
	s := r.Stack
	list := r.imageList
	if list == nil {
		list = startImageList(ctx, r.Host)
	}
	hist, err := r.hist, error(nil)
	if hist == nil {
		hist, err = host.ReadHistory(ctx, r.Host, s)
	}
	images, listErr := list()
	if err = cmp.Or(err, listErr); err != nil {
		return "", err
	}
	prev := ""
	if r.state != nil && r.state.Previous != nil {
		prev = r.state.Previous.Release
	}
	refs := prunableOf(images, s, keptReleases(s, hist, r.release, prev), r.cs)
	if len(refs) == 0 {
		return "nothing older than the last " + fmt.Sprint(s.KeepReleases) + " releases", nil
	}
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Go(func() {
			_, errs[i] = host.Engine(r.Host).ImageRemove(ctx, ref, client.ImageRemoveOptions{})
			if cerrdefs.IsConflict(errs[i]) || cerrdefs.IsNotFound(errs[i]) {
				errs[i] = nil // a container still uses it, or it went already
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("removed %d image tag(s) of releases before the last %d: %s", len(refs), s.KeepReleases, strings.Join(refs, ", ")), errors.Join(errs...)
}

func describePrune(v *view) string {
	if len(v.prune) == 0 {
		return fmt.Sprintf("nothing: the host holds no images of releases before the last %d", v.s.KeepReleases)
	}
	return fmt.Sprintf("keep the last %d releases' images; remove %s", v.s.KeepReleases, strings.Join(v.prune, ", "))
}
