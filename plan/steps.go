package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/images"
	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// The bodies of the steps in push.go, in the order a push runs them.

func uploadFiles(ctx context.Context, r *run) (string, error) {
	return upload(ctx, r.Host, r.Stack)
}

// build builds the stateless images on the host (build: host), one after
// another so the live color keeps most of the CPU, each from its context sent
// as one stream, exactly what Docker would see here.
func build(ctx context.Context, r *run) (string, error) {
	s := r.Stack
	services := s.HostBuilt()
	configs, err := s.BuildConfigs(services)
	if err != nil {
		return "", err
	}
	for _, svc := range services {
		tags := []string{s.Project + "/" + svc + ":" + r.color, s.Project + "/" + svc + ":" + ReleaseTag(r.release)}
		if err := images.BuildOnHost(ctx, host.Engine(r.Host), configs[svc], tags); err != nil {
			// The build's own lines may print a value of the env.
			return "", fmt.Errorf("%s: %s", svc, stack.MaskValues(err.Error(), s.Env))
		}
	}
	return fmt.Sprintf("%s (%s)", strings.Join(services, ", "), s.ColorProject(r.color)), nil
}

func startNew(ctx context.Context, r *run) (string, error) {
	s := r.Stack
	if r.state != nil && r.state.Previous != nil && r.state.Previous.Color == r.color {
		// The color kept for rollback is about to be replaced: the record must
		// not offer it any more, even if this push never finishes.
		r.state.Previous = nil
		if err := host.WriteState(ctx, r.Host, s, r.state); err != nil {
			return "", err
		}
	}
	_, err := host.RunCompose(ctx, r.Host, s, r.color, host.ComposeEnv(s, r.color, r.release), append([]string{"up", "-d", "--no-deps", "--remove-orphans"}, s.Stateless...)...)
	return s.ColorProject(r.color), err
}

// removeNew undoes start: traffic never moved, so the new color goes and the
// host is as it was.
func removeNew(ctx context.Context, r *run, _ bool) (string, error) {
	s := r.Stack
	_, err := host.RunCompose(ctx, r.Host, s, r.color, host.ComposeEnv(s, r.color, r.release), "down", "--remove-orphans")
	return s.ColorProject(r.color) + " serves nothing and was removed", err
}

func verifyNew(ctx context.Context, r *run) (string, error) {
	return verify(ctx, r.Host, r.Stack, r.color)
}

func switchNew(ctx context.Context, r *run) (string, error) {
	return "traffic to " + r.color, r.switchTo(ctx, r.color, false)
}

// switchBack undoes the switch. A switch that failed part way only retires the
// new color (it may have been admitted); after a switch the old color takes
// the traffic back at once and the new one finishes what it has.
func switchBack(ctx context.Context, r *run, failed bool) (string, error) {
	if failed {
		return "traffic stays on " + r.before, r.proxy().Retire(ctx, r.color)
	}
	if err := r.switchTo(ctx, r.before, true); err != nil {
		return "", err
	}
	msg, err := r.proxy().Drain(ctx, r.color)
	return "traffic back to " + r.before + "; " + msg, err
}

func watchWindow(ctx context.Context, r *run) (string, error) {
	msg, err := r.watch(ctx, r.color)
	if err != nil && !errors.Is(err, remote.ErrDisconnected) {
		// Read while the failing color still runs.
		err = withLogs(context.WithoutCancel(ctx), r.Host, r.Stack, r.color, err)
	}
	return msg, err
}

func drainOld(ctx context.Context, r *run) (string, error) {
	return r.proxy().Drain(ctx, stack.Other(r.color))
}

func stopOld(ctx context.Context, r *run) (string, error) {
	s := r.Stack
	old := stack.Other(r.color)
	// Ask again: this command may have started the old color's containers (a
	// rollback right after a push).
	cs, err := host.Inspect(ctx, r.Host, s.Project, s.ColorProject(old))
	if err != nil {
		return "", err
	}
	var olds []host.Container
	for _, c := range cs {
		if c.Running() {
			olds = append(olds, c)
		}
	}
	if len(olds) == 0 {
		return "nothing running", nil
	}
	// docker stop honours each container's stop_grace_period; they are kept for rollback.
	_, err = r.Host.Run(ctx, remote.Cmd{Argv: append([]string{"docker", "stop"}, host.IDs(olds)...)})
	return fmt.Sprintf("%s stopped and kept for rollback", s.ColorProject(old)), err
}

func writeRecord(ctx context.Context, r *run) (string, error) {
	s := r.Stack
	if tagsReleases(r) {
		// Prune, next, needs the host's images: asked meanwhile.
		r.imageList = startImageList(ctx, r.Host)
	}
	cs, err := host.InspectStack(ctx, r.Host, s)
	if err != nil {
		return "", err
	}
	r.cs = cs
	st := &host.State{Project: s.Project, Active: r.color, Release: r.release, Images: map[string]string{},
		DeployedBy: r.Opts.Who, DeployedAt: time.Now().UTC(), GitRevision: r.Opts.GitRevision}
	if r.action == "rollback" {
		st.GitRevision = ""
	}
	for _, c := range cs {
		if c.Project == s.ColorProject(r.color) {
			st.Images[c.Service] = c.Image
		}
	}
	switch {
	case r.composeSum != "":
		st.ComposeSum, st.Stateful = r.composeSum, map[string]string{}
		for _, c := range cs {
			if c.Project == s.Project && slices.Contains(s.Stateful, c.Service) {
				st.Stateful[c.Service] = c.ConfigHash
			}
		}
	case r.state != nil:
		st.ComposeSum, st.Stateful = r.state.ComposeSum, r.state.Stateful
	}
	if r.before != "" && r.state != nil {
		st.Previous = &host.Slot{Color: r.before, Release: r.state.Release}
	}
	// The record and, as this is the command's last step, its line in the
	// history: one command, the line only once the record is written.
	data, _ := json.MarshalIndent(st, "", "  ")
	entry := r.historyEntry(nil)
	entry.Images = st.Images // what runs now, wherever its images came from
	line, _ := json.Marshal(entry)
	q := &host.Facts{}
	write := q.Write(s.Paths().State(), append(data, '\n'), 0o600)
	hist := q.Append(s.Paths().History(), append(line, '\n'), 0o600)
	read := q.Cat(s.Paths().History()) // for prune, next
	as, err := q.Run(ctx, r.Host)
	if err != nil {
		return "", err
	}
	if err := as[write].Err("write " + s.Paths().State()); err != nil {
		return "", err
	}
	r.historyDone = as[hist].Code == 0
	if as[read].Code == 0 {
		r.hist = host.ParseHistory(as[read].Out)
	}
	r.state, r.live = st, r.color
	return fmt.Sprintf("%s live with release %s in %.1fs", r.color, r.release, time.Since(r.began).Seconds()), nil
}

// canRollBack finds the previous color and its stopped containers.
func (r *run) canRollBack(ctx context.Context) error {
	s := r.Stack
	want := r.Opts.RollbackTo // a release named by the user; "" for the previous one
	why := "no previous color is recorded (the first push, or a failed push replaced it)"
	if r.state != nil && r.state.Previous != nil && (want == "" || want == r.state.Previous.Release) {
		prev := *r.state.Previous
		var kept []host.Container
		for _, c := range r.cs {
			if c.Project == s.ColorProject(prev.Color) {
				kept = append(kept, c)
			}
		}
		if slices.Equal(host.Services(kept), slices.Sorted(slices.Values(s.Stateless))) {
			// The fast way: its containers were kept stopped.
			r.color, r.release, r.previous = prev.Color, prev.Release, kept
			return nil
		}
		why = fmt.Sprintf("the containers of %s are gone (have %v)", s.ColorProject(prev.Color), host.Services(kept))
	} else if want != "" {
		why = "release " + want + " is not the kept color"
	}
	if r.state != nil && want == "" {
		if log, err := host.ReadMigrations(ctx, r.Host, s); err == nil && log.Contract != nil && log.Contract.Release == r.state.Release {
			return &ContractedError{Host: r.Host.Name(), Contract: *log.Contract}
		}
	}
	// Else from the release's images, recorded in the history and kept on the
	// host (keep_releases), on the idle color.
	rel, imgs, err := r.recordedRelease(ctx, want)
	if err != nil {
		return fmt.Errorf("%w on %s: %s, and %v; push instead", ErrNoRollback, r.Host.Name(), why, err)
	}
	r.color, r.release, r.fromImages = stack.Blue, rel, imgs
	if r.live != "" {
		r.color = stack.Other(r.live)
	}
	return nil
}

// recordedRelease finds in the host's history the release to roll back to
// (the one named, or the last that served before the live one) with an image
// for every stateless service, and checks the host still has them.
func (r *run) recordedRelease(ctx context.Context, want string) (string, map[string]string, error) {
	s := r.Stack
	hist, err := host.ReadHistory(ctx, r.Host, s)
	if err != nil {
		return "", nil, err
	}
	live := ""
	if r.state != nil {
		live = r.state.Release
	}
	// Contract migrations removed what releases before them used.
	var contract *host.ContractRun
	if log, err := host.ReadMigrations(ctx, r.Host, s); err == nil {
		contract = log.Contract
	}
	for i := len(hist) - 1; i >= 0; i-- {
		e := hist[i]
		if e.Result != "ok" || e.Release == live || want != "" && e.Release != want || len(e.Images) == 0 {
			continue
		}
		if contract != nil && e.Release != contract.Release && e.Time.Before(contract.At) {
			return "", nil, &ContractedError{Host: r.Host.Name(), Contract: *contract}
		}
		for _, svc := range s.Stateless {
			if e.Images[svc] == "" {
				return "", nil, fmt.Errorf("release %s has no recorded image for %s", e.Release, svc)
			}
		}
		if missing := missingImages(ctx, r.Host, e.Images); len(missing) > 0 {
			return "", nil, fmt.Errorf("the images of release %s are no longer on the host (%s; keep_releases prunes older ones)", e.Release, strings.Join(missing, ", "))
		}
		return e.Release, e.Images, nil
	}
	if want != "" {
		return "", nil, fmt.Errorf("no release %s that served is in the host's history with its images (`taledeploy history` lists them)", want)
	}
	return "", nil, errors.New("no earlier release is recorded in the history with its images")
}

// missingImages lists the services whose image the host lacks, asking for all
// at once.
func missingImages(ctx context.Context, h host.Conn, imgs map[string]string) []string {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		missing []string
	)
	for svc, id := range imgs {
		wg.Go(func() {
			if _, err := host.Engine(h).ImageInspect(ctx, id); err != nil {
				mu.Lock()
				missing = append(missing, svc)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(missing)
	return missing
}

// ContractedError is a rollback refused because contract migrations ran with
// the live release: the older release's code would not work with the database.
type ContractedError struct {
	Host     string
	Contract host.ContractRun
}

func (e *ContractedError) Error() string {
	c := e.Contract
	return fmt.Sprintf("%v on %s: contract migrations (%s) ran with release %s at %s and the older release was removed: its code would not work with the database any more. Push a fix forward instead",
		ErrNoRollback, e.Host, strings.Join(c.Files, ", "), c.Release, c.At.Format(time.RFC3339))
}

func (e *ContractedError) Unwrap() error { return ErrNoRollback }

func startPrevious(ctx context.Context, r *run) (string, error) {
	if r.fromImages != nil {
		return startFromImages(ctx, r)
	}
	_, err := r.Host.Run(ctx, remote.Cmd{Argv: append([]string{"docker", "start"}, host.IDs(r.previous)...)})
	return fmt.Sprintf("%s (release %s)", r.Stack.ColorProject(r.color), r.release), err
}

// startFromImages starts a recorded release on the idle color from its
// images, with the compose file and env the host has now.
func startFromImages(ctx context.Context, r *run) (string, error) {
	s := r.Stack
	if r.state != nil && r.state.Previous != nil && r.state.Previous.Color == r.color {
		// The kept color is about to be replaced (a rollback to another
		// release): the record must not offer it any more, whatever happens.
		r.state.Previous = nil
		if err := host.WriteState(ctx, r.Host, s, r.state); err != nil {
			return "", err
		}
	}
	var imgs []images.Image
	for svc, id := range r.fromImages {
		if slices.Contains(s.Stateless, svc) {
			imgs = append(imgs, images.Image{Service: svc, ID: id})
		}
	}
	if err := tagImages(ctx, host.Engine(r.Host), s, imgs, r.color, r.release); err != nil {
		return "", err
	}
	_, err := host.RunCompose(ctx, r.Host, s, r.color, host.ComposeEnv(s, r.color, r.release), append([]string{"up", "-d", "--no-deps", "--remove-orphans"}, s.Stateless...)...)
	return fmt.Sprintf("%s (release %s) from its recorded images", s.ColorProject(r.color), r.release), err
}

// stopPrevious undoes startPrevious: the previous color was stopped before the
// rollback began; one started from images goes.
func stopPrevious(ctx context.Context, r *run, failed bool) (string, error) {
	if r.fromImages != nil {
		return removeNew(ctx, r, failed)
	}
	_, err := r.Host.Run(ctx, remote.Cmd{Argv: append([]string{"docker", "stop"}, host.IDs(r.previous)...)})
	return r.Stack.ColorProject(r.color) + " stopped again", err
}
