package plan

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// HostStatus is what `taledeploy status` reports for one host.
type HostStatus struct {
	Host        string      `json:"host"`
	Error       string      `json:"error,omitempty"`
	Active      string      `json:"active,omitempty"`
	Release     string      `json:"release,omitempty"`
	DeployedBy  string      `json:"deployed_by,omitempty"`
	DeployedAt  string      `json:"deployed_at,omitempty"`
	GitRevision string      `json:"git_revision,omitempty"`
	Previous    *Slot       `json:"previous,omitempty"`
	Lock        *Lock       `json:"lock,omitempty"`
	Containers  []Container `json:"containers"`
	Problems    []string    `json:"problems,omitempty"`
}

// Status reads the record and what runs on a host, and says where they disagree.
func Status(ctx context.Context, h Conn, s *Stack) HostStatus {
	hs := HostStatus{Host: h.Name(), Containers: []Container{}}
	st, err := ReadState(ctx, h, s)
	if err != nil {
		hs.Problems = append(hs.Problems, err.Error())
	}
	if data, err := h.ReadFile(ctx, s.lockPath()+"/owner.json"); err == nil {
		var l Lock
		if json.Unmarshal(data, &l) == nil {
			hs.Lock = &l
		}
	}
	cs, err := inspectStack(ctx, h, s)
	if err != nil {
		hs.Error = err.Error()
		return hs
	}
	if cs != nil {
		hs.Containers = cs
	}
	if st == nil {
		for _, c := range cs {
			if c.Color != "" && c.Running() {
				hs.Problems = append(hs.Problems, fmt.Sprintf("no record, but %s runs", c.Name))
			}
		}
		return hs
	}
	hs.Active, hs.Release, hs.DeployedBy, hs.GitRevision, hs.Previous = st.Active, st.Release, st.DeployedBy, st.GitRevision, st.Previous
	hs.DeployedAt = st.DeployedAt.Format("2006-01-02 15:04:05 UTC")
	for _, svc := range s.Stateless {
		i := slices.IndexFunc(cs, func(c Container) bool { return c.Project == s.ColorProject(st.Active) && c.Service == svc })
		switch {
		case i < 0:
			hs.Problems = append(hs.Problems, fmt.Sprintf("record says %s is live, but %s has no %s container", st.Active, s.ColorProject(st.Active), svc))
		case !cs[i].Ready():
			hs.Problems = append(hs.Problems, fmt.Sprintf("live container %s is %s %s", cs[i].Name, cs[i].State, cs[i].Health))
		case cs[i].Release != st.Release:
			hs.Problems = append(hs.Problems, fmt.Sprintf("live container %s runs release %s, record says %s", cs[i].Name, cs[i].Release, st.Release))
		}
	}
	for _, svc := range s.Stateful {
		i := slices.IndexFunc(cs, func(c Container) bool { return c.Project == s.Project && c.Service == svc })
		if i < 0 || !cs[i].Running() {
			hs.Problems = append(hs.Problems, fmt.Sprintf("stateful service %s is not running", svc))
		}
	}
	return hs
}
