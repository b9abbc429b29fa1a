package host

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// LogOptions choose what `taledeploy logs` shows.
type LogOptions struct {
	Service string
	Follow  bool
	Since   string // as docker compose logs --since takes it: 10m, 2h, a timestamp
	Tail    string // lines per container, or "all"
}

// Logs streams a service's logs to w: a stateless service's from the live color,
// a stateful one's from the stack's project.
func Logs(ctx context.Context, h Conn, s *stack.Stack, o LogOptions, w io.Writer) error {
	color := ""
	switch {
	case slices.Contains(s.Stateless, o.Service):
		st, err := ReadState(ctx, h, s)
		if err != nil {
			return err
		}
		if st == nil {
			return fmt.Errorf("nothing is deployed on %s yet, so %s has no live color", h.Name(), o.Service)
		}
		color = st.Active
	case slices.Contains(s.Stateful, o.Service):
	default:
		return fmt.Errorf("%w: no service %q; the stack has %s", stack.ErrBadInput, o.Service, strings.Join(append(slices.Clone(s.Stateless), s.Stateful...), ", "))
	}
	args := []string{"logs", "--no-color", "--timestamps", "--tail", o.Tail}
	if o.Since != "" {
		args = append(args, "--since", o.Since)
	}
	if o.Follow {
		args = append(args, "--follow")
	}
	argv := append(ComposeArgv(s, color), append(args, o.Service)...)
	_, err := h.Run(ctx, remote.Cmd{Argv: argv, Env: ComposeEnv(s, color, ""), Stdout: w, Stderr: w})
	return err
}
