package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// 50 WebSockets stay open through a push, each sending a message every 250 ms
// and checking its echo: none is cut before the old color is stopped, each then
// gets a clean close (1001, the server going away), and a client that
// reconnects lands on the new color. The drain waits for them up to
// drain_timeout; ordinary HTTPS load runs beside them with 0 failed requests.
// The inventory has no routes: they come from the Caddyfile.
func TestWebSocketsThroughPush(t *testing.T) {
	s := newStack(t, "tale-ws", 18093)
	// As the example's inventory has it: no routes, read from the Caddyfile.
	s.editInventory(`      routes:
        - {site: localhost, path: /*, service: platform, port: 8080, health_path: /api/health}
        - {site: rag.localhost, path: /*, service: rag, port: 8000, health_path: /health}
`, "")
	if r := s.taledeploy("push", "e2e", "--release", "w1"); r.failed() {
		t.Fatalf("first push: %v", r.err)
	}
	l := startLoad(t, s.port, 40, 10)
	defer l.stopOnce()
	ctx := context.Background()
	dial := func() (*websocket.Conn, string, error) {
		// wss://localhost/ws as a browser opens it, dialled at the host.
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig: siteTLS(t, s.port),
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("%s:%d", s.host.addr, s.port+httpsOffset))
			},
		}}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(dctx, fmt.Sprintf("wss://localhost:%d/ws", s.port+httpsOffset), &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			return nil, "", err
		}
		_, hello, err := c.Read(dctx)
		return c, string(hello), err
	}

	const n = 50
	type sock struct {
		opened, closed time.Time
		code           websocket.StatusCode
		err            error
		echoed         int
	}
	socks := make([]*sock, n)
	var wg sync.WaitGroup
	for i := range n {
		c, hello, err := dial()
		if err != nil || !strings.HasPrefix(hello, "hello blue w1") {
			t.Fatalf("WebSocket %d: %q, %v; want a hello from blue w1", i, hello, err)
		}
		sk := &sock{opened: time.Now()}
		socks[i] = sk
		wg.Go(func() {
			defer c.CloseNow()
			for {
				msg := fmt.Sprintf("socket %d message %d", i, sk.echoed)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := c.Write(wctx, websocket.MessageText, []byte(msg))
				var got []byte
				if err == nil {
					_, got, err = c.Read(wctx)
				}
				cancel()
				if err == nil && string(got) != "blue: "+msg {
					err = fmt.Errorf("echo %q, want blue's echo of %q", got, msg)
				}
				if err != nil {
					sk.closed, sk.code, sk.err = time.Now(), websocket.CloseStatus(err), err
					return
				}
				sk.echoed++
				time.Sleep(250 * time.Millisecond)
			}
		})
	}

	// The push, noting when its stop step (the old color's) begins.
	l.phase("push")
	var stopAt atomic.Int64
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if line := sc.Text(); strings.Contains(line, `"step":"stop"`) && strings.Contains(line, `"status":"running"`) {
				stopAt.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
	}()
	s.watch = pw
	s.buildServices("-X main.build=2")
	r := s.taledeploy("--json", "push", "e2e", "--release", "w2")
	s.watch = nil
	pw.Close()
	if r.failed() {
		t.Fatalf("push with WebSockets open: %v", r.err)
	}
	for _, ev := range jsonLines(t, r.stdout) {
		if ev["step"] == "drain" && ev["status"] == "ok" {
			t.Logf("drain: %v", ev["message"])
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("WebSockets still open 30 s after the old color stopped")
	}
	if stopAt.Load() == 0 {
		t.Fatalf("the push printed no stop step:\n%s", r.out)
	}
	stop := time.Unix(0, stopAt.Load())
	clean, echoed := 0, 0
	var kept []time.Duration
	for i, sk := range socks {
		echoed += sk.echoed
		kept = append(kept, sk.closed.Sub(sk.opened))
		if sk.closed.Before(stop) {
			t.Errorf("WebSocket %d was cut %s before the old color stopped: %v", i, stop.Sub(sk.closed).Round(time.Millisecond), sk.err)
		}
		if sk.code == websocket.StatusGoingAway || sk.code == websocket.StatusServiceRestart {
			clean++
		} else {
			t.Errorf("WebSocket %d ended without a clean close: %v", i, sk.err)
		}
	}
	slices.Sort(kept)
	t.Logf("%d WebSockets kept open %s to %s (median %s) through the push, %d messages echoed; %d of %d closed cleanly (1001/1012) after the stop began",
		n, kept[0].Round(time.Millisecond), kept[n-1].Round(time.Millisecond), kept[n/2].Round(time.Millisecond), echoed, clean, n)

	// Reconnecting lands on the new color.
	for i := range n {
		c, hello, err := dial()
		if err != nil || !strings.HasPrefix(hello, "hello green w2") {
			t.Errorf("reconnect %d: %q, %v; want green w2", i, hello, err)
			continue
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
	l.phase("after")
	time.Sleep(2 * time.Second)
	l.stopOnce()
	sent, failed := l.totals()
	t.Logf("load beside the WebSockets: %d requests sent, %d failed\n%s", sent, failed, l.report())
	if failed > 0 || sent < 200 {
		t.Errorf("%d of %d requests failed", failed, sent)
	}
}
