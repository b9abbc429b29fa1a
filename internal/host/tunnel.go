package host

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPClient makes HTTP requests from the host, through the SSH connection,
// to the address each request names (a container's health path). Each
// request has its own connection, so a probe never waits behind another.
func HTTPClient(h Conn, timeout time.Duration) *http.Client {
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		return h.Dial(ctx, "tcp", addr)
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

// socketClient makes one HTTP request to the unix socket on the host (Caddy's
// admin API), asking for the socket again until wait has passed: Caddy makes
// it a moment after it starts. The socket is dialled here, in the caller's
// goroutine and under its context: an HTTP transport would go on dialling
// after the request was given up.
//
// done closes the connection if the request never took it.
func socketClient(ctx context.Context, h Conn, socket string, timeout, wait time.Duration) (client *http.Client, done func(), err error) {
	deadline := time.Now().Add(wait)
	var conn net.Conn
	for {
		if conn, err = h.Dial(ctx, "unix", socket); err == nil || !time.Now().Before(deadline) {
			break
		}
		if err := Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, nil, err
		}
	}
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	dial := func(context.Context, string, string) (net.Conn, error) {
		c := net.Conn(nil)
		once.Do(func() { c, conn = conn, nil })
		if c == nil {
			return nil, errors.New("one request per connection")
		}
		return c, nil
	}
	done = func() {
		once.Do(func() { conn.Close() })
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}, done, nil
}
