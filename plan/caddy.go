package plan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// admin calls Caddy's admin API on its unix socket, through the SSH connection.
func (d *Deployer) admin(ctx context.Context, method, urlPath, contentType string, body []byte) ([]byte, error) {
	sock := d.Stack.AdminDir() + "/admin.sock"
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var err error
				// The socket appears a moment after Caddy starts.
				for range 50 {
					var c net.Conn
					if c, err = d.Host.Dial(ctx, "unix", sock); err == nil {
						return c, nil
					}
					select {
					case <-ctx.Done():
						return nil, ctx.Err()
					case <-time.After(100 * time.Millisecond):
					}
				}
				return nil, err
			},
			DisableKeepAlives: true,
		},
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://caddy-admin"+urlPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return data, fmt.Errorf("caddy admin %s %s: %s: %s", method, urlPath, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

// drain waits until Caddy has no request in flight to the old color, bounded by
// the drain timeout.
func (d *Deployer) drain(ctx context.Context, old string) (string, error) {
	s := d.Stack
	deadline := time.Now().Add(s.DrainTimeout.Duration)
	// Until Caddy's checks have seen the color retired it may still be chosen.
	if err := sleep(ctx, retireSettle); err != nil {
		return "", err
	}
	var olds []string
	for _, r := range s.Routes {
		olds = append(olds, fmt.Sprintf("%s-%s:%d", r.Service, old, r.Port))
	}
	for {
		data, err := d.admin(ctx, http.MethodGet, "/reverse_proxy/upstreams", "", nil)
		if err != nil {
			return "", err
		}
		var ups []struct {
			Address     string `json:"address"`
			NumRequests int    `json:"num_requests"`
		}
		if err := json.Unmarshal(data, &ups); err != nil {
			return "", fmt.Errorf("caddy upstreams: %w", err)
		}
		inflight := 0
		for _, u := range ups {
			if slices.Contains(olds, u.Address) {
				inflight += u.NumRequests
			}
		}
		if inflight == 0 {
			return "no request in flight on " + old, nil
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("drain timeout %s reached with %d requests in flight on %s; stopping it gracefully anyway", s.DrainTimeout.Duration, inflight, old), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
