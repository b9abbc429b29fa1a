package host

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"taledeploy/internal/stack"
	"time"
)

// MigrationLog is what a host records of the migrations applied to its database.
type MigrationLog struct {
	Applied []AppliedMigration `json:"applied"`
	// Contract is the last `migrate contract`: rolling back to a release older
	// than Contract.Release is not safe.
	Contract *ContractRun `json:"contract,omitempty"`
}

// AppliedMigration is one migration file applied to the host's database.
type AppliedMigration struct {
	Service string    `json:"service"`
	File    string    `json:"file"`
	Kind    string    `json:"kind"` // expand, contract
	Release string    `json:"release"`
	At      time.Time `json:"at"`
}

// ContractRun records a `migrate contract`.
type ContractRun struct {
	Release string    `json:"release"` // live when it ran
	Files   []string  `json:"files"`
	At      time.Time `json:"at"`
}

// ReadMigrations returns the host's migration log (empty when it has none).
func ReadMigrations(ctx context.Context, h Conn, s *stack.Stack) (*MigrationLog, error) {
	data, err := h.ReadFile(ctx, s.Paths().Migrations())
	if IsNotExist(err) {
		return &MigrationLog{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Paths().Migrations(), err)
	}
	var l MigrationLog
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v); it lists the migrations applied on this host, fix or restore it", s.Paths().Migrations(), err)
	}
	return &l, nil
}

func WriteMigrations(ctx context.Context, h Conn, s *stack.Stack, l *MigrationLog) error {
	data, _ := json.MarshalIndent(l, "", "  ")
	return h.WriteFile(ctx, s.Paths().Migrations(), append(data, '\n'), 0o600)
}

func (l *MigrationLog) Has(service, file string) bool {
	return slices.ContainsFunc(l.Applied, func(a AppliedMigration) bool { return a.Service == service && a.File == file })
}

// ByRelease lists the files each release applied, in order.
func (l *MigrationLog) ByRelease() map[string][]string {
	out := map[string][]string{}
	for _, a := range l.Applied {
		out[a.Release] = append(out[a.Release], a.File)
	}
	return out
}
