package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"testing"
)

// BenchmarkPush measures a push of an unchanged tree on the sandbox, split into
// what the tool itself spends and what waits on Docker and the app:
//
//	go test -run '^$' -bench Push -benchtime 5x ./e2e
func BenchmarkPush(b *testing.B) {
	s := newStack(b, "tale-bench", 18089)
	if r := s.taledeploy("push", "e2e"); r.failed() {
		b.Fatalf("first push: %v", r.err)
	}
	waiting := []string{"build", "start", "verify", "window", "drain", "stop"}
	var total, docker float64
	steps := map[string]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := s.taledeploy("push", "e2e", "--release", fmt.Sprintf("bench-%d", i))
		if r.failed() {
			b.Fatalf("push: %v", r.err)
		}
		sec := r.stepSeconds()
		total += r.took.Seconds()
		for _, w := range waiting {
			docker += sec[w]
		}
		for step, d := range sec {
			steps[step] += d
		}
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "push-s/op")
	b.ReportMetric((total-docker)/n, "tool-s/op")
	reportSteps(b, steps)
}

// reportSteps reports each step's mean seconds, so a slow one shows.
func reportSteps(b *testing.B, steps map[string]float64) {
	for step, d := range steps {
		b.ReportMetric(d/float64(b.N), step+"-s/op")
	}
}

// BenchmarkFleetPush pushes an unchanged tree to the three sandbox hosts and
// reports the time before the first host starts deploying (connect, lock,
// check, upload and preflight on every host) and the whole push:
//
//	go test -run '^$' -bench FleetPush -benchtime 3x ./e2e
func BenchmarkFleetPush(b *testing.B) {
	f := newFleet(b, "tale-fbench", 18110)
	if r := f.taledeploy("push", "e2e"); r.failed() {
		b.Fatalf("first push: %v", r.err)
	}
	var total, before, own float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := f.taledeploy("push", "e2e", "--release", fmt.Sprintf("bench-%d", i))
		if r.failed() {
			b.Fatalf("push: %v", r.err)
		}
		m := prepared.FindStringSubmatch(r.out)
		if m == nil {
			b.Fatalf("push does not say when all hosts were prepared:\n%s", r.out)
		}
		var sec float64
		fmt.Sscanf(m[1], "%f", &sec)
		before += sec
		total += r.took.Seconds()
		for _, m := range fleetStep.FindAllStringSubmatch(r.out, -1) {
			if slices.Contains([]string{"build", "start", "verify", "window", "drain", "stop"}, m[2]) {
				fmt.Sscanf(m[4], "%f", &sec)
				own += sec
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "push-s/op")
	b.ReportMetric(before/n, "before-first-host-s/op")
	// What the hosts themselves wait for, one after another: building,
	// starting and verifying the new color, the window, the drain and the stop.
	b.ReportMetric(own/n, "hosts-own-s/op")
	b.ReportMetric(100*(total-own)/own, "overhead-%")
}

// fleetStep is a step line of a fleet's output: host, step, status, seconds.
var fleetStep = regexp.MustCompile(`(?m)^(h\d+|local)\s+(\S+)\s+(ok|failed)\s+([0-9.]+)s`)

// BenchmarkRollback rolls the sandbox stack back and forth between two
// releases, split like BenchmarkPush (a rollback waits on Docker to start the
// kept color and on the drain and stop of the other):
//
//	go test -run '^$' -bench Rollback -benchtime 5x ./e2e
func BenchmarkRollback(b *testing.B) {
	s := newStack(b, "tale-rbench", 18087)
	for _, rel := range []string{"rb-1", "rb-2"} {
		if r := s.taledeploy("push", "e2e", "--release", rel); r.failed() {
			b.Fatalf("push %s: %v", rel, r.err)
		}
	}
	waiting := []string{"start", "verify", "window", "drain", "stop"}
	var total, docker float64
	steps := map[string]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := s.taledeploy("rollback", "e2e")
		if r.failed() {
			b.Fatalf("rollback: %v", r.err)
		}
		sec := r.stepSeconds()
		total += r.took.Seconds()
		for _, w := range waiting {
			docker += sec[w]
		}
		for step, d := range sec {
			steps[step] += d
		}
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "rollback-s/op")
	b.ReportMetric((total-docker)/n, "tool-s/op")
	reportSteps(b, steps)
}

// BenchmarkStatus measures `status` of the sandbox stack: all of it is the
// tool's own (connect, read the record, ask Docker and Caddy).
//
//	go test -run '^$' -bench Status -benchtime 10x ./e2e
func BenchmarkStatus(b *testing.B) {
	s := newStack(b, "tale-sbench", 18086)
	if r := s.taledeploy("push", "e2e"); r.failed() {
		b.Fatalf("push: %v", r.err)
	}
	var total float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := s.taledeploy("status", "e2e")
		if r.failed() {
			b.Fatalf("status: %v", r.err)
		}
		total += r.took.Seconds()
	}
	b.ReportMetric(total/float64(b.N), "status-s/op")
}
