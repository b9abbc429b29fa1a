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
		errs                = make([]error, 2)
	)
	wg.Go(func() { memAvail, diskAvail, memUse, errs[0] = readResources(ctx, h, s.RemoteDir, IDs(live)) })
	if len(live) > 0 {
		wg.Go(func() { diskUse, errs[1] = imagesSize(ctx, h, live) })
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

// resourcesScript prints, in one command, what CheckResources weighs: a
// round trip per fact (and on cgroup v2 hosts up to four per container)
// adds up at a VPS's distance. $1 is the stack's folder, then container IDs.
// It prints "mem KB" (MemAvailable), "df KB" for the folder and for Docker's
// data root, and "cg ID BYTES" per container, BYTES "-" when its memory
// counter is not where Docker usually puts it.
const resourcesScript = `# taledeploy resources
dir=$1; shift
# Before the first push the folder is not there: measure where it will be.
while [ ! -e "$dir" ] && [ "$dir" != / ]; do dir=$(dirname -- "$dir"); done
awk '/^MemAvailable:/ {print "mem", $2}' /proc/meminfo
root=$(docker info --format '{{.DockerRootDir}}') || exit 1
free=$(df -Pk -- "$dir" "$root") || exit 1
printf '%s\n' "$free" | awk 'NR > 1 {print "df", $4}'
for id in "$@"; do
	v=-
	for p in "/sys/fs/cgroup/memory/docker/$id/memory.usage_in_bytes" \
		"/sys/fs/cgroup/system.slice/docker-$id.scope/memory.current" \
		"/sys/fs/cgroup/docker/$id/memory.current" \
		"/sys/fs/cgroup/memory/system.slice/docker-$id.scope/memory.usage_in_bytes"; do
		if [ -r "$p" ] && v=$(cat -- "$p"); then break; fi
		v=-
	done
	echo "cg $id $v"
done`

// ResourcesCmd is the command readResources runs.
func ResourcesCmd(dir string, ids []string) remote.Cmd {
	return remote.Cmd{Argv: append([]string{"sh", "-c", resourcesScript, "sh", dir}, ids...)}
}

// readResources reads the host's available memory, the free space of the file
// system that holds both dir and Docker's data (whichever has less), and the
// memory the containers use now: the kernel's cgroup counters (instant), and
// docker stats (about two seconds) only where they are not where Docker
// usually puts them.
func readResources(ctx context.Context, h Conn, dir string, ids []string) (memAvail, diskAvail, memUse int64, err error) {
	out, err := h.Run(ctx, ResourcesCmd(dir, ids))
	if err != nil {
		return 0, 0, 0, err
	}
	memAvail, diskAvail = -1, -1
	var stats []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch {
		case f[0] == "mem":
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("/proc/meminfo: MemAvailable %q", f[1])
			}
			memAvail = kb << 10
		case f[0] == "df":
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("df: %q", line)
			}
			if diskAvail < 0 || kb<<10 < diskAvail {
				diskAvail = kb << 10
			}
		case f[0] == "cg" && len(f) == 3:
			n, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				stats = append(stats, f[1])
				continue
			}
			memUse += n
		}
	}
	if memAvail < 0 {
		return 0, 0, 0, errors.New("no MemAvailable in /proc/meminfo")
	}
	if diskAvail < 0 {
		return 0, 0, 0, fmt.Errorf("df printed nothing for %s", dir)
	}
	if len(stats) == 0 {
		return memAvail, diskAvail, memUse, nil
	}
	out, err = h.Run(ctx, remote.Cmd{Argv: append([]string{"docker", "stats", "--no-stream", "--format", "{{.MemUsage}}"}, stats...)})
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		used, _, _ := strings.Cut(line, "/")
		n, err := stack.ParseSize(strings.TrimSpace(used))
		if err != nil {
			return 0, 0, 0, fmt.Errorf("docker stats: %w", err)
		}
		memUse += n
	}
	return memAvail, diskAvail, memUse, nil
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
