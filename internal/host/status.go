package host

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"taledeploy/internal/stack"
	"time"
)

// HostStatus is what `taledeploy status` reports for one host.
type HostStatus struct {
	Host        string `json:"host"`
	Error       string `json:"error,omitempty"`
	Active      string `json:"active,omitempty"`
	Release     string `json:"release,omitempty"`
	DeployedBy  string `json:"deployed_by,omitempty"`
	DeployedAt  string `json:"deployed_at,omitempty"`
	GitRevision string `json:"git_revision,omitempty"`
	Previous    *Slot  `json:"previous,omitempty"`
	// Images are the live release's image per stateless service (IDs).
	Images     map[string]string `json:"images,omitempty"`
	Serving    string            `json:"serving,omitempty"` // the color traffic goes to, as Caddy says
	Lock       *LockStatus       `json:"lock,omitempty"`
	Containers []Container       `json:"containers"`
	Problems   []string          `json:"problems,omitempty"`
	// Migrations lists, per release, the migration files it applied; Contract
	// is the last `migrate contract`.
	Migrations map[string][]string `json:"migrations,omitempty"`
	Contract   *ContractRun        `json:"contract,omitempty"`
}

// LockStatus is a held lock and whether its holder still seems to run.
type LockStatus struct {
	Lock
	// Stale says why the holder is gone; empty while it may still run.
	Stale string `json:"stale,omitempty"`
}

// Status reads the record and what runs on a host, and says where they disagree.
func Status(ctx context.Context, h Conn, s *stack.Stack) HostStatus {
	hs := HostStatus{Host: h.Name(), Containers: []Container{}}
	// The record and the lock in one command, the migration log and what
	// runs beside it.
	var (
		wg     sync.WaitGroup
		o      *Observed
		oErr   error
		log    *MigrationLog
		logErr error
	)
	wg.Go(func() { o, oErr = Observe(ctx, h, s) })
	if len(s.Migrations) > 0 {
		wg.Go(func() { log, logErr = ReadMigrations(ctx, h, s) })
	}
	q := &Facts{}
	state := q.Cat(s.Paths().State())
	owner := q.Cat(s.Paths().Lock() + "/owner.json")
	age := q.Age(s.Paths().Lock() + "/owner.json")
	as, err := q.Run(ctx, h)
	wg.Wait()
	var (
		st    *State
		stErr error
		l     *Lock
	)
	if err == nil {
		switch a := as[state]; a.Code {
		case 0:
			st, stErr = ParseState(s, a.Out)
		case CodeMissing:
		default:
			stErr = fmt.Errorf("read %s: %w", s.Paths().State(), a.Err(s.Paths().State()))
		}
		if l, err = parseLock(s.Paths().Lock(), as[owner]); l != nil {
			l.age, l.ageKnown = parseAge(as[age])
		}
	} else {
		stErr = err
	}
	if err != nil {
		hs.Problems = append(hs.Problems, err.Error())
	}
	if l != nil {
		hs.Lock = &LockStatus{Lock: *l, Stale: l.Stale(time.Now())}
		if hs.Lock.Stale != "" {
			hs.Problems = append(hs.Problems, fmt.Sprintf("a %s was interrupted at step %s (%s); the next push or rollback converges, or `taledeploy lock release ENV` clears the lock",
				l.Command, cmp.Or(l.Step, "unknown"), hs.Lock.Stale))
		}
	}
	if len(s.Migrations) > 0 {
		if logErr != nil {
			hs.Problems = append(hs.Problems, logErr.Error())
		} else if len(log.Applied) > 0 {
			hs.Migrations, hs.Contract = log.ByRelease(), log.Contract
		}
	}
	if err := oErr; err != nil {
		hs.Error = err.Error()
		return hs
	}
	if o.Containers != nil {
		hs.Containers = o.Containers
	}
	hs.Serving = o.Live
	hs.Problems = append(hs.Problems, o.Disagreements(s, st, stErr)...)
	if st != nil {
		hs.Active, hs.Release, hs.DeployedBy, hs.GitRevision, hs.Previous = st.Active, st.Release, st.DeployedBy, st.GitRevision, st.Previous
		hs.Images = st.Images
		hs.DeployedAt = st.DeployedAt.Format("2006-01-02 15:04:05 UTC")
	}
	if o.Live != "" {
		for _, c := range o.Color(s, o.Live) {
			if !c.Ready() {
				hs.Problems = append(hs.Problems, fmt.Sprintf("live container %s is %s %s", c.Name, c.State, c.Health))
			}
		}
		if o.Runs(s, stack.Other(o.Live)) && hs.Lock == nil {
			hs.Problems = append(hs.Problems, fmt.Sprintf("%s runs but serves nothing (left by an interrupted deploy?); the next push replaces it", s.ColorProject(stack.Other(o.Live))))
		}
	}
	for _, svc := range s.Stateful {
		i := slices.IndexFunc(o.Containers, func(c Container) bool { return c.Project == s.Project && c.Service == svc })
		if i < 0 || !o.Containers[i].Running() {
			hs.Problems = append(hs.Problems, fmt.Sprintf("stateful service %s is not running", svc))
		}
	}
	return hs
}
