package plan

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"taledeploy/internal/stack"
	"taledeploy/remote"

	"github.com/docker/go-units"
)

// preflight checks, before anything is built or started, what would make the
// push fail or hurt later: a changed stateful service, a Caddyfile Caddy
// rejects, and too little memory or disk for a second color.
func (d *Deployer) preflight(ctx context.Context, newColor, release string) (string, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		msgs = make([]string, 4)
	)
	checks := []func() (string, error){
		func() (string, error) { return d.checkPendingMigrations(ctx) },
		func() (string, error) { return d.checkStateful(ctx, release) },
		func() (string, error) { return d.validateCaddyfile(ctx) },
		func() (string, error) {
			if d.Opts.SkipPreflight {
				return "memory and disk not checked (--skip-preflight)", nil
			}
			return d.checkResources(ctx)
		},
	}
	for i, check := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, err := check()
			mu.Lock()
			defer mu.Unlock()
			msgs[i] = msg
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return strings.Join(slices.DeleteFunc(msgs, func(m string) bool { return m == "" }), "; "), nil
}

// checkStateful compares each stateful service's definition with the one its
// container was made from. A changed one is refused unless allowed, since
// recreating it interrupts what depends on it.
func (d *Deployer) checkStateful(ctx context.Context, release string) (string, error) {
	s := d.Stack
	d.composeSum = s.ComposeSum()
	if d.statefulAsRecorded() {
		// Same compose file and env as the last push, same containers: Compose
		// would print the hashes the containers carry.
		d.changed, d.missing = nil, nil
		return "", nil
	}
	out, err := d.compose(ctx, "", d.composeEnv("", release), "config", "--hash", strings.Join(s.Stateful, ","))
	if err != nil {
		return "", fmt.Errorf("compose config: %w", err)
	}
	d.changed, d.missing, err = d.compareStateful(out)
	if err != nil {
		return "", err
	}
	if len(d.changed) > 0 && !d.Opts.RecreateStateful {
		var costs []string
		for _, svc := range d.changed {
			if svc == s.Proxy {
				costs = append(costs, fmt.Sprintf("recreating %s drops every connection and refuses new ones for a second or two", svc))
			} else {
				costs = append(costs, fmt.Sprintf("recreating %s stops it for a few seconds, and requests that need it fail meanwhile", svc))
			}
		}
		return "", fmt.Errorf("%w: %s changed since it was started, and a push never recreates a stateful service on its own. "+
			"Pass --recreate-stateful to allow it: %s. Or undo the change in %s",
			ErrStateful, strings.Join(d.changed, ", "), strings.Join(costs, "; "), s.ComposeFile)
	}
	if len(d.changed) > 0 {
		return "will recreate " + strings.Join(d.changed, ", "), nil
	}
	return "", nil
}

// statefulAsRecorded tells whether the compose file and env are those of the
// last push and every stateful container still carries the hash recorded then.
func (d *Deployer) statefulAsRecorded() bool {
	st, s := d.state, d.Stack
	if st == nil || d.composeSum == "" || st.ComposeSum != d.composeSum {
		return false
	}
	for _, svc := range s.Stateful {
		i := slices.IndexFunc(d.cs, func(c Container) bool { return c.Project == s.Project && c.Service == svc })
		if i < 0 || !d.cs[i].Running() || d.cs[i].ConfigHash == "" || d.cs[i].ConfigHash != st.Stateful[svc] {
			return false
		}
	}
	return true
}

// compareStateful reads `compose config --hash` output and says which stateful
// services changed since their container was made, and which do not run.
func (d *Deployer) compareStateful(out []byte) (changed, missing []string, err error) {
	s := d.Stack
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			want[f[0]] = f[1]
		}
	}
	for _, svc := range s.Stateful {
		if want[svc] == "" {
			return nil, nil, fmt.Errorf("compose config printed no hash for %s", svc)
		}
		i := slices.IndexFunc(d.cs, func(c Container) bool { return c.Project == s.Project && c.Service == svc })
		switch {
		case i < 0:
			missing = append(missing, svc)
		case d.cs[i].ConfigHash != want[svc]:
			changed = append(changed, svc)
		case !d.cs[i].Running():
			missing = append(missing, svc)
		}
	}
	return changed, missing, nil
}

// validateCaddyfile has the running Caddy check the stack's Caddyfile before
// anything is started. On an empty host the proxy does not run yet and validates
// it when it starts.
func (d *Deployer) validateCaddyfile(ctx context.Context) (string, error) {
	s := d.Stack
	i := slices.IndexFunc(d.cs, func(c Container) bool { return c.Project == s.Project && c.Service == s.Proxy && c.Running() })
	if i < 0 {
		return "", nil
	}
	proxy := d.cs[i]
	caddyfile, err := s.RemotePath(s.Caddyfile)
	if err != nil {
		return "", err
	}
	hostDir := path.Dir(caddyfile)
	if !slices.ContainsFunc(proxy.Mounts, func(m Mount) bool { return m.Source == hostDir }) {
		return "", fmt.Errorf("the proxy container does not mount %s; mount the Caddyfile's folder (not the file) into %s", hostDir, s.Proxy)
	}
	// The running Caddy adapts it (POST /adapt) without loading it: the same
	// parser the switch's /load uses. A config that adapts but fails to start is
	// refused by /load itself, which keeps the running config.
	if _, err := d.admin(ctx, http.MethodPost, "/adapt", "text/caddyfile", s.CaddyfileText()); err != nil {
		if errors.Is(err, remote.ErrDisconnected) {
			return "", err
		}
		return "", fmt.Errorf("%w: %v; fix the routes in the inventory. Nothing was started and traffic is untouched", ErrCaddyfile, err)
	}
	d.validated = true
	return "Caddyfile valid", nil
}

// checkResources refuses to start a second color when the host's free memory or
// disk would not hold it. The live color's current use is the estimate.
func (d *Deployer) checkResources(ctx context.Context) (string, error) {
	s := d.Stack
	var live []Container
	for _, c := range d.cs {
		if d.live != "" && c.Project == s.ColorProject(d.live) && c.Running() {
			live = append(live, c)
		}
	}
	var (
		wg                  sync.WaitGroup
		memAvail, diskAvail int64
		memUse, diskUse     int64
		errs                = make([]error, 4)
	)
	run := func(i int, fn func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn() }()
	}
	run(0, func() (err error) { memAvail, err = hostMemAvailable(ctx, d.Host); return })
	run(1, func() (err error) { diskAvail, err = hostDiskAvailable(ctx, d.Host, s.RemoteDir); return })
	if len(live) > 0 {
		run(2, func() (err error) { memUse, err = containersMemory(ctx, d.Host, ids(live)); return })
		run(3, func() (err error) { diskUse, err = imagesSize(ctx, d.Host, live); return })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("read the host's free memory and disk: %w; pass --skip-preflight to push without this check", err)
	}
	var short []string
	if need := memUse + s.ReserveMemory.Bytes; memAvail < need {
		short = append(short, fmt.Sprintf("memory: %s available, but the new color needs about %s (what the live color uses now) and reserve_memory keeps %s free",
			units.BytesSize(float64(memAvail)), units.BytesSize(float64(memUse)), s.ReserveMemory))
	}
	if need := diskUse + s.ReserveDisk.Bytes; diskAvail < need {
		short = append(short, fmt.Sprintf("disk: %s free on %s, but the new images need up to %s (the live color's) and reserve_disk keeps %s free",
			units.BytesSize(float64(diskAvail)), s.RemoteDir, units.BytesSize(float64(diskUse)), s.ReserveDisk))
	}
	if len(short) > 0 {
		return "", fmt.Errorf("%w on %s: %s. A push runs both colors at once for a while; free some room, lower the reserve in the inventory, or pass --skip-preflight",
			ErrPreflight, d.Host.Name(), strings.Join(short, "; "))
	}
	return fmt.Sprintf("memory %s free (live color uses %s), disk %s free", units.BytesSize(float64(memAvail)), units.BytesSize(float64(memUse)), units.BytesSize(float64(diskAvail))), nil
}

func hostMemAvailable(ctx context.Context, h Conn) (int64, error) {
	data, err := h.ReadFile(ctx, "/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo")
}

// hostDiskAvailable is the free space of the file system that holds both dir
// and Docker's data, whichever has less.
func hostDiskAvailable(ctx context.Context, h Conn, dir string) (int64, error) {
	var info struct{ DockerRootDir string }
	if _, err := dockerGet(ctx, h, "/info", &info); err != nil {
		return 0, err
	}
	out, err := h.Run(ctx, remote.Cmd{Argv: []string{"df", "-Pk", "--", dir, info.DockerRootDir}})
	if err != nil {
		return 0, err
	}
	var free int64 = -1
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		kb, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("df: %q", line)
		}
		if free < 0 || kb<<10 < free {
			free = kb << 10
		}
	}
	if free < 0 {
		return 0, fmt.Errorf("df printed nothing for %s", dir)
	}
	return free, nil
}

// containersMemory sums the memory the containers use now. It reads the
// kernel's cgroup counters (instant), and asks docker stats (about two seconds)
// only where they are not where Docker usually puts them.
func containersMemory(ctx context.Context, h Conn, ids []string) (int64, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		sum   int64
		stats []string
	)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range []string{
				"/sys/fs/cgroup/memory/docker/" + id + "/memory.usage_in_bytes", // v1, cgroupfs driver
				"/sys/fs/cgroup/system.slice/docker-" + id + ".scope/memory.current",
				"/sys/fs/cgroup/docker/" + id + "/memory.current",
				"/sys/fs/cgroup/memory/system.slice/docker-" + id + ".scope/memory.usage_in_bytes",
			} {
				data, err := h.ReadFile(ctx, p)
				if n, perr := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil && perr == nil {
					mu.Lock()
					sum += n
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			stats = append(stats, id)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(stats) == 0 {
		return sum, nil
	}
	out, err := h.Run(ctx, remote.Cmd{Argv: append([]string{"docker", "stats", "--no-stream", "--format", "{{.MemUsage}}"}, stats...)})
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		used, _, _ := strings.Cut(line, "/")
		n, err := stack.ParseSize(strings.TrimSpace(used))
		if err != nil {
			return 0, fmt.Errorf("docker stats: %w", err)
		}
		sum += n
	}
	return sum, nil
}

// imagesSize sums the sizes of the containers' images.
func imagesSize(ctx context.Context, h Conn, cs []Container) (int64, error) {
	var images []string
	for _, c := range cs {
		if !slices.Contains(images, c.Image) {
			images = append(images, c.Image)
		}
	}
	var sum int64
	for _, id := range images {
		var img struct{ Size int64 }
		if _, err := dockerGet(ctx, h, "/images/"+url.PathEscape(id)+"/json", &img); err != nil {
			return 0, err
		}
		sum += img.Size
	}
	return sum, nil
}
