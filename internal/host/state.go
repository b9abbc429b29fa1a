package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"taledeploy/internal/stack"
	"time"
)

// State is what a host records of its stack after each push or rollback.
type State struct {
	Project     string            `json:"project"`
	Active      string            `json:"active"`  // live color
	Release     string            `json:"release"` // live release
	Images      map[string]string `json:"images,omitempty"`
	Previous    *Slot             `json:"previous,omitempty"` // stopped color kept for rollback
	DeployedBy  string            `json:"deployed_by"`
	DeployedAt  time.Time         `json:"deployed_at"`
	GitRevision string            `json:"git_revision,omitempty"`
	// ComposeSum and Stateful record the stateful services' definitions at the
	// last push (compose config hash per service), so a push whose compose file
	// and env did not change needs no `docker compose config` call.
	ComposeSum string            `json:"compose_sum,omitempty"`
	Stateful   map[string]string `json:"stateful,omitempty"`
}

// Slot is a color and the release it holds.
type Slot struct {
	Color   string `json:"color"`
	Release string `json:"release"`
}

// HistoryEntry is one line of the host's deploy history.
type HistoryEntry struct {
	Time        time.Time `json:"time"`
	Action      string    `json:"action"` // push, rollback
	Release     string    `json:"release"`
	Color       string    `json:"color"`
	From        string    `json:"from,omitempty"` // color that was live before
	By          string    `json:"by"`
	GitRevision string    `json:"git_revision,omitempty"`
	Result      string    `json:"result"` // ok, failed
	Error       string    `json:"error,omitempty"`
	Seconds     float64   `json:"seconds"`
	Migrations  []string  `json:"migrations,omitempty"` // applied by this command
	// Images are the release's image per stateless service (IDs), from which
	// `rollback ENV RELEASE` starts it again while the host keeps them.
	Images map[string]string `json:"images,omitempty"`
}

func IsNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist)
}

// ReadState returns the recorded state, or nil when the host has none.
func ReadState(ctx context.Context, h Conn, s *stack.Stack) (*State, error) {
	data, err := h.ReadFile(ctx, s.Paths().State())
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Paths().State(), err)
	}
	return ParseState(s, data)
}

// ParseState reads a record as ReadState found it.
func ParseState(s *stack.Stack, data []byte) (*State, error) {
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v)", s.Paths().State(), err)
	}
	return &st, nil
}

func WriteState(ctx context.Context, h Conn, s *stack.Stack, st *State) error {
	data, _ := json.MarshalIndent(st, "", "  ")
	return h.WriteFile(ctx, s.Paths().State(), append(data, '\n'), 0o600)
}

func AppendHistory(ctx context.Context, h Conn, s *stack.Stack, e HistoryEntry) error {
	data, _ := json.Marshal(e)
	return h.AppendFile(ctx, s.Paths().History(), append(data, '\n'), 0o600)
}

// ReadHistory returns the host's deploy history, oldest first.
func ReadHistory(ctx context.Context, h Conn, s *stack.Stack) ([]HistoryEntry, error) {
	data, err := h.ReadFile(ctx, s.Paths().History())
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseHistory(data), nil
}

// ParseHistory reads the history file's lines; a line it cannot read is
// left out.
func ParseHistory(data []byte) []HistoryEntry {
	var out []HistoryEntry
	for _, line := range splitLines(data) {
		var e HistoryEntry
		if json.Unmarshal(line, &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}
