package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"taledeploy/internal/stack"
	"taledeploy/remote"

	"github.com/docker/go-units"
	"github.com/moby/moby/client"
)

// ErrPreflight is a host without room for a second color.
var ErrPreflight = errors.New("not enough room for a second color")

// CheckResources refuses to start a second color when the host's free memory or
// disk would not hold it. The live color's current use is the estimate.
func CheckResources(ctx context.Context, h Conn, s *stack.Stack, cs []Container, liveColor string) (string, error) {
	var live []Container
	for _, c := range cs {
		if liveColor != "" && c.Project == s.ColorProject(liveColor) && c.Running() {
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
	run(0, func() (err error) { memAvail, err = hostMemAvailable(ctx, h); return })
	run(1, func() (err error) { diskAvail, err = hostDiskAvailable(ctx, h, s.RemoteDir); return })
	if len(live) > 0 {
		run(2, func() (err error) { memUse, err = containersMemory(ctx, h, IDs(live)); return })
		run(3, func() (err error) { diskUse, err = imagesSize(ctx, h, live); return })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", &ResourceError{Host: h.Name(), Unread: err}
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
		return "", &ResourceError{Host: h.Name(), Short: short}
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
	info, err := Engine(h).Info(ctx, client.InfoOptions{})
	if err != nil {
		return 0, dockerErr(err)
	}
	out, err := h.Run(ctx, remote.Cmd{Argv: []string{"df", "-Pk", "--", dir, info.Info.DockerRootDir}})
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
	// All at once: a round trip per image would add up over a WAN.
	sizes, errs := make([]int64, len(images)), make([]error, len(images))
	var wg sync.WaitGroup
	for i, id := range images {
		wg.Go(func() {
			img, err := Engine(h).ImageInspect(ctx, id)
			sizes[i], errs[i] = img.Size, dockerErr(err)
		})
	}
	wg.Wait()
	var sum int64
	for _, n := range sizes {
		sum += n
	}
	return sum, errors.Join(errs...)
}

// ResourceError is a host without room for a second color, or whose free
// memory and disk could not be read.
type ResourceError struct {
	Host   string
	Short  []string // what is short, with the figures
	Unread error
}

func (e *ResourceError) Error() string {
	if e.Unread != nil {
		return fmt.Sprintf("read the host's free memory and disk: %v", e.Unread)
	}
	return fmt.Sprintf("%v on %s: %s. A push runs both colors at once for a while; free some room or lower the reserve in the inventory", ErrPreflight, e.Host, strings.Join(e.Short, "; "))
}

func (e *ResourceError) Unwrap() error {
	if e.Unread != nil {
		return e.Unread
	}
	return ErrPreflight
}
