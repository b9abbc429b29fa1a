package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// load sends requests to the stack's proxy at its host until stopped: a keep-alive
// attacker and a fresh-connection one, with one request in 50 taking 2 s.
type load struct {
	attackers []*vegeta.Attacker
	wg        sync.WaitGroup
	stopped   sync.Once

	mu     sync.Mutex
	mark   string // label of the current phase
	sent   map[string]int
	failed map[string]int
	// appFailed counts failed answers that came from the app (they carry
	// X-Build), by build; every other failure happened at the proxy or below.
	appFailed map[string]int
	colors    map[string]map[string]int // phase -> "color/release/build" -> count
	failures  []string
	crossed   []string // platform called rag of the other color
	maxVisit  int
	counted   int // answers that counted a visit (carry X-Visits)
	// latency of the ordinary requests (not the deliberately slow ones), per phase.
	latency map[string]*vegeta.Metrics
}

func startLoad(t *testing.T, port int, keepAliveRate, freshRate int) *load {
	l := &load{sent: map[string]int{}, failed: map[string]int{}, appFailed: map[string]int{}, colors: map[string]map[string]int{},
		latency: map[string]*vegeta.Metrics{}, mark: "start"}
	// HTTPS, as visitors come: the fresh-connection attacker makes a new TLS
	// handshake for every request.
	base := siteURL(port)
	tlsConfig := siteTLS(t, port)
	var n atomic.Uint64
	targeter := func(tg *vegeta.Target) error {
		tg.Method = http.MethodGet
		tg.Header = http.Header{"Host": {"localhost"}} // the site's name; vegeta sends it as the request's host
		tg.URL = base + "/"
		if n.Add(1)%50 == 0 {
			tg.URL = base + "/slow?ms=2000"
		}
		return nil
	}
	for i, rate := range []int{keepAliveRate, freshRate} {
		a := vegeta.NewAttacker(vegeta.KeepAlive(i == 0), vegeta.Timeout(30*time.Second), vegeta.Workers(16), vegeta.MaxWorkers(400), vegeta.TLSConfig(tlsConfig))
		l.attackers = append(l.attackers, a)
		// Bounded: no attack runs longer than 20 minutes even if Stop is never called.
		res := a.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, 20*time.Minute, fmt.Sprintf("load-%d", i))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for r := range res {
				l.record(r)
			}
		}()
	}
	return l
}

func (l *load) record(r *vegeta.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[l.mark]++
	if !strings.Contains(r.URL, "/slow") {
		if l.latency[l.mark] == nil {
			l.latency[l.mark] = &vegeta.Metrics{}
		}
		l.latency[l.mark].Add(r)
	}
	if r.Code != http.StatusOK || r.Error != "" {
		l.failed[l.mark]++
		if b := r.Headers.Get("X-Build"); b != "" {
			l.appFailed[b]++
		}
		if len(l.failures) < 20 {
			l.failures = append(l.failures, fmt.Sprintf("%s %s %d %s %q", r.Timestamp.Format("15:04:05.000"), r.URL, r.Code, r.Error, strings.TrimSpace(string(r.Body))))
		}
		return
	}
	color := r.Headers.Get("X-Color")
	key := color + "/" + r.Headers.Get("X-Release") + "/build " + r.Headers.Get("X-Build")
	if l.colors[l.mark] == nil {
		l.colors[l.mark] = map[string]int{}
	}
	l.colors[l.mark][key]++
	if rag := r.Headers.Get("X-Rag-Color"); rag != "" && rag != color {
		l.crossed = append(l.crossed, fmt.Sprintf("platform %s called rag %s", color, rag))
	}
	if crawler := r.Headers.Get("X-Crawler-Color"); crawler != "" && crawler != color {
		l.crossed = append(l.crossed, fmt.Sprintf("platform %s called crawler %s", color, crawler))
	}
	var v int
	if _, err := fmt.Sscanf(r.Headers.Get("X-Visits"), "%d", &v); err == nil {
		l.counted++
	}
	l.maxVisit = max(l.maxVisit, v)
}

// phase labels the requests that follow, so a report can say when each was sent.
func (l *load) phase(name string) {
	l.mu.Lock()
	l.mark = name
	l.mu.Unlock()
}

// stopOnce stops the load the first time it is called.
func (l *load) stopOnce() { l.stopped.Do(l.stop) }

func (l *load) stop() {
	for _, a := range l.attackers {
		a.Stop()
	}
	l.wg.Wait()
}

// served returns what answered in a phase, "color/release/build" -> requests.
func (l *load) served(phase string) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.colors[phase] {
		out[k] = v
	}
	return out
}

func (l *load) totals() (sent, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.sent {
		sent += v
	}
	for _, v := range l.failed {
		failed += v
	}
	return sent, failed
}

// proxyFailures counts failures that no app answered.
func (l *load) proxyFailures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.failed {
		n += v
	}
	for _, v := range l.appFailed {
		n -= v
	}
	return n
}

func (l *load) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var phases []string
	for p := range l.sent {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	var b strings.Builder
	for _, p := range phases {
		fmt.Fprintf(&b, "  %-28s sent %5d failed %d served %v", p, l.sent[p], l.failed[p], l.colors[p])
		if m := l.latency[p]; m != nil {
			m.Close()
			fmt.Fprintf(&b, " latency p50 %s p99 %s max %s", m.Latencies.P50.Round(time.Millisecond), m.Latencies.P99.Round(time.Millisecond), m.Latencies.Max.Round(time.Millisecond))
		}
		b.WriteString("\n")
	}
	if len(l.appFailed) > 0 {
		fmt.Fprintf(&b, "  failed answers from the app, by build: %v\n", l.appFailed)
	}
	for _, f := range l.failures {
		fmt.Fprintf(&b, "  failure: %s\n", f)
	}
	return b.String()
}
