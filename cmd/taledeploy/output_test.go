package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"taledeploy/internal/stack"
	"taledeploy/plan"
)

// A failed step's container logs stay inside its event: with --json every line
// on stdout is one JSON object, and without it the log lines follow the failed
// step's line, prefixed by the host.
func TestFailedStepLogs(t *testing.T) {
	logs := "last log lines of tale-green:\nplatform-1  | panic: no database\nplatform-1  | exit 1\n"
	ev := plan.Event{Host: "h1", Step: "verify", Status: "failed", Duration: 2 * time.Second, Message: "new color failed its health checks", Log: logs}
	hosts := []*stack.Host{{Name: "h1"}}

	var out bytes.Buffer
	p := newPrinter(&out, hosts, true)
	p.event(plan.Event{Host: "h1", Step: "verify", Status: "running"})
	p.event(ev)
	p.summary(t.Context(), nil, nil, time.Now(), errors.New("failed"))
	var got []map[string]any
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("--json printed a line that is not JSON: %q", sc.Text())
		}
		got = append(got, m)
	}
	if len(got) != 3 || got[1]["log"] != logs || got[2]["type"] != "summary" || got[2]["hosts"] == nil {
		t.Errorf("--json lines: %v", got)
	}

	out.Reset()
	p = newPrinter(&out, hosts, false)
	p.event(ev)
	want := "h1  verify     failed   2.00s  new color failed its health checks\n" +
		"h1  | last log lines of tale-green:\nh1  | platform-1  | panic: no database\nh1  | platform-1  | exit 1\n"
	if out.String() != want {
		t.Errorf("text output:\n%s\nwant:\n%s", out.String(), want)
	}
	if strings.Count(out.String(), "panic") != 1 {
		t.Errorf("log lines printed more than once")
	}
}
