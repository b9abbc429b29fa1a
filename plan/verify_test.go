package plan

import (
	"context"
	"errors"
	"slices"
	"strings"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"testing"
	"time"
)

// A color that never gets healthy fails verify with its containers' last log
// lines in the step's event, not on any writer of its own.
func TestVerifyFailureCarriesLogs(t *testing.T) {
	s := hosttest.RawStack(t.TempDir(), "tale", "/srv/tale", "compose.yml", "platform", "db", "x")
	fc := &hosttest.Fake{Reply: func(argv []string) ([]byte, error) {
		if slices.Contains(argv, "logs") {
			return []byte("platform-1  | panic: no database\n"), nil
		}
		return nil, nil
	}}
	var events []Event
	d := &Deployer{Host: fc, Stack: s, Report: func(e Event) { events = append(events, e) }}
	err := d.step("verify", false, func() (string, error) { return verify(context.Background(), d.Host, d.Stack, stack.Green) })
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("verify: %v, want ErrUnhealthy", err)
	}
	last := events[len(events)-1]
	if last.Status != "failed" || !strings.Contains(last.Log, "last log lines of tale-green") || !strings.Contains(last.Log, "panic: no database") {
		t.Errorf("failed verify event: %+v", last)
	}
	if strings.Contains(last.Message, "panic") {
		t.Errorf("the log lines are in the message too: %q", last.Message)
	}
}

// A release whose container crashes at start and sits in Docker's restart loop
// fails verify within seconds, not after the whole health timeout.
func TestVerifyRestartLoopFailsFast(t *testing.T) {
	s := hosttest.RawStack(t.TempDir(), "tale", "/srv/tale", "compose.yml", "platform", "db", "x")
	s.HealthTimeout = stack.Duration{Duration: time.Minute}
	fc := &hosttest.Fake{}
	fc.Containers = func() string {
		return `[{"Id":"c1","Names":["/tale-green-platform-1"],"State":"restarting","Status":"Restarting (1) 1 second ago",
			"Labels":{"com.docker.compose.project":"tale-green","com.docker.compose.service":"platform"}}]`
	}
	d := &Deployer{Host: fc, Stack: s}
	start := time.Now()
	_, err := verify(context.Background(), d.Host, d.Stack, stack.Green)
	if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "keeps restarting (Restarting (1)") {
		t.Fatalf("verify: %v, want a release that keeps restarting", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("verify took %s to give up on a restart loop", took)
	}
}
