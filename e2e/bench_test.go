package e2e

import (
	"fmt"
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
	var total, docker, stop float64
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
		stop += sec["stop"]
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "push-s/op")
	b.ReportMetric((total-docker)/n, "tool-s/op")
	b.ReportMetric(stop/n, "stop-s/op")
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
	var total, before float64
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
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "push-s/op")
	b.ReportMetric(before/n, "before-first-host-s/op")
}
