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
	waiting := []string{"build", "start", "verify", "drain", "stop"}
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
