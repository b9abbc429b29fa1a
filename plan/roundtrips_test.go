package plan

import (
	"context"
	"errors"
	"testing"
	"time"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
)

// The remote calls a push, a rollback and status wait out one after another
// (a call made while another is on its way costs nothing more): at a VPS's
// 100 ms round trip each is a tenth of a second of the user's time. The
// budgets are today's counts with room for scheduling noise (about 30, 24
// and 2), so a change that adds calls in sequence, such as one per file or
// per upstream, shows.
func TestRoundTrips(t *testing.T) {
	s := deployStack(t)
	s.VerifyWindow = stack.Duration{}
	h := liveHost(t, "one", s, "r1")
	// Long enough that a busy machine's scheduling (the race detector, other
	// packages' tests) does not make calls made together look sequential.
	h.Latency = 60 * time.Millisecond
	for _, tc := range []struct {
		name   string
		budget int
		run    func() error
	}{
		{"push", 36, func() error { return push(t, deployer(h, s, "r2", &events{})) }},
		{"rollback", 29, func() error { return rollback(t, deployer(h, s, "", &events{})) }},
		{"status", 3, func() error {
			if st := host.Status(context.Background(), h, s); st.Error != "" {
				return errors.New(st.Error)
			}
			return nil
		}},
	} {
		h.ResetTrips()
		if err := tc.run(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		all, serial := h.Trips()
		t.Logf("%s: %d remote calls, %d of them one after another", tc.name, all, serial)
		if serial > tc.budget {
			t.Errorf("%s waits out %d round trips one after another, over its budget of %d", tc.name, serial, tc.budget)
		}
	}
}
