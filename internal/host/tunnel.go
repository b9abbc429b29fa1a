package host

import (
	"context"
	"net"
	"net/http"
	"time"
)

// HTTPClient makes HTTP requests from the host, through the SSH connection:
// to socket when it is set (Docker's API, Caddy's admin API), otherwise to the
// address each request names (a container's health path). A socket that is
// not there yet is asked for again until wait has passed: Caddy makes its
// socket a moment after it starts. Each request has its own connection, so a
// probe never waits behind another.
func HTTPClient(h Conn, timeout time.Duration, socket string, wait time.Duration) *http.Client {
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		if socket == "" {
			return h.Dial(ctx, "tcp", addr)
		}
		deadline := time.Now().Add(wait)
		for {
			conn, err := h.Dial(ctx, "unix", socket)
			if err == nil || !time.Now().Before(deadline) {
				return conn, err
			}
			if err := Sleep(ctx, 100*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}
