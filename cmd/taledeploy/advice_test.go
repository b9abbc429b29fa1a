package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"taledeploy/internal/host"
	"taledeploy/internal/stack"
	"taledeploy/plan"
)

// The deploy packages say what happened; the CLI adds the command that helps,
// once per host, and never splits one host's error apart.
func TestAdvice(t *testing.T) {
	env := &stack.Environment{Name: "prod"}
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"traffic moved, then the connection dropped",
			&plan.FleetError{Action: "push", Failed: "h2", Done: []string{"h1"}, Err: fmt.Errorf("%w: %w", plan.ErrAfterSwitch, errors.New("connection lost"))},
			[]string{"push failed on h2: traffic had already moved to the new color: connection lost", "`taledeploy rollback prod --hosts h1`"}},
		{"two hosts refused before any changed",
			plan.HostErrors{
				&plan.InconsistentError{Host: "h1", Problems: []string{"state.json is missing"}},
				&host.LockedError{Host: "h2", Holder: &host.Lock{Command: "taledeploy push prod"}},
			},
			[]string{"`taledeploy push prod --repair` rebuilds the record", "`taledeploy lock release prod` clears it"}},
		{"the record was not written",
			&plan.RecordError{Color: "green", Release: "r2", Err: errors.New("disk full")},
			[]string{"green serves release r2, but the record was not written", "`taledeploy push prod --repair` rebuilds the record"}},
		{"rollback after a failure failed too",
			&plan.FleetError{Action: "push", Failed: "h2", Done: []string{"h1"}, RolledBack: true, Err: errors.New("verify failed"),
				RollbackErr: plan.HostErrors{&plan.HostError{Host: "h1", Action: "rollback", Err: &host.LockLostError{Host: "h1", Why: "taken over"}}}},
			[]string{"rolling back the hosts before it failed too: rollback of h1:", "`taledeploy status prod` shows where the host stands"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fleetMessage(env, tc.err).Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("message %q\nlacks %q", got, w)
				}
			}
			if strings.Count(got, "taledeploy status prod") > 1 || strings.Count(got, "--repair") > 2 {
				t.Errorf("advice given twice: %q", got)
			}
		})
	}
}
