package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"taledeploy/internal/host"
)

// BenchmarkPush measures a push of an unchanged tree on the sandbox, split into
// what the tool itself spends and what waits on Docker and the app, or by
// design (the switch's settle, the window, the drain):
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
		docker += designedSwitchWait(sec)
		for step, d := range sec {
			steps[step] += d
		}
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "push-s/op")
	b.ReportMetric((total-docker)/n, "tool-s/op")
	reportSteps(b, steps)
}

// designedSwitchWait is the part of a switch that waits by design: after
// the gate admits the new color, Caddy's health checks are given
// host.AdmitSettle to see it before the old one is retired.
func designedSwitchWait(sec map[string]float64) float64 {
	if _, ok := sec["switch"]; !ok {
		return 0
	}
	return host.AdmitSettle.Seconds()
}

// reportSteps reports each step's mean seconds, so a slow one shows.
func reportSteps(b *testing.B, steps map[string]float64) {
	for step, d := range steps {
		b.ReportMetric(d/float64(b.N), step+"-s/op")
	}
}

// BenchmarkFleetPush pushes a one-line change (the platform's build) to the
// three sandbox hosts and reports the time before the first host starts
// deploying (build here, connect, lock, check, upload, preflight and images on
// every host) and the whole push:
//
//	go test -run '^$' -bench FleetPush -benchtime 3x ./e2e
//	BENCH_BUILD=host go test -run '^$' -bench FleetPush -benchtime 3x ./e2e
func BenchmarkFleetPush(b *testing.B) {
	f := newFleet(b, "tale-fbench", 18110)
	// BENCH_BUILD=host builds on every host instead of once here.
	build := []string{"--build", cmp.Or(os.Getenv("BENCH_BUILD"), "local")}
	if r := f.taledeploy(append([]string{"push", "e2e"}, build...)...); r.failed() {
		b.Fatalf("first push: %v", r.err)
	}
	var total, before, own float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A one-line change each time: the platform's build.
		b.StopTimer()
		f.buildServices(fmt.Sprintf("-X main.build=bench-%d", i))
		b.StartTimer()
		r := f.taledeploy(append([]string{"push", "e2e", "--release", fmt.Sprintf("bench-%d", i)}, build...)...)
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
			if m[2] == "switch" {
				own += host.AdmitSettle.Seconds()
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "push-s/op")
	b.ReportMetric(before/n, "before-first-host-s/op")
	// What the hosts themselves wait for, one after another: building,
	// starting and verifying the new color, the switch's settle, the window,
	// the drain and the stop.
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
		docker += designedSwitchWait(sec)
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

// BenchmarkShipImages pushes a platform image of about 135 MB in 10 layers
// (three of random data, which no compression shrinks) to a host that has
// none of it, then after a one-line code change (the platform's build), and
// reports the bytes sent and the images step's seconds of each, with the size
// of the layers the change made:
//
//	go test -run '^$' -bench ShipImages -benchtime 3x ./e2e
func BenchmarkShipImages(b *testing.B) {
	s := newStack(b, "tale-ibench", 18098)
	s.editFile("services/platform/Dockerfile", "COPY bin/platform", `RUN head -c 40000000 /dev/urandom > /blob1
RUN head -c 35000000 /dev/urandom > /blob2
RUN head -c 35000000 /dev/urandom > /blob3
COPY bin/platform`)
	ref := s.project + "/platform:taledeploy-build"
	r := s.taledeploy("push", "e2e", "--json", "--release", "first")
	if r.failed() {
		b.Fatalf("first push: %v", r.err)
	}
	first, firstLayers := sentBytes(b, r.out)
	firstSec := imagesSeconds(r.out)
	var sent, changed, secs float64
	var layers int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		before := localChains(b, ref)
		s.buildServices(fmt.Sprintf("-X main.build=ib-%d", i))
		b.StartTimer()
		r := s.taledeploy("push", "e2e", "--json", "--release", fmt.Sprintf("ib-%d", i))
		if r.failed() {
			b.Fatalf("push: %v", r.err)
		}
		n, l := sentBytes(b, r.out)
		sent += float64(n)
		layers = l
		secs += imagesSeconds(r.out)
		b.StopTimer()
		changed += float64(changedLayerBytes(b, ref, before))
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(first)/1e6, "first-MB")
	b.ReportMetric(float64(firstLayers), "first-layers")
	b.ReportMetric(firstSec, "first-images-s")
	b.ReportMetric(sent/n/1e6, "change-sent-MB/op")
	b.ReportMetric(changed/n/1e6, "changed-layers-MB/op")
	b.ReportMetric(float64(layers), "change-layers")
	b.ReportMetric(secs/n, "change-images-s/op")
}

// imagesSeconds is the images step's duration in a push's --json output.
func imagesSeconds(out string) float64 {
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			Type, Host, Step, Status string
			Duration                 float64 `json:"duration_s"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Type == "step" && e.Step == "images" && e.Status == "ok" {
			return e.Duration
		}
	}
	return 0
}
