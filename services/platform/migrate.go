package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// migrate applies the named SQL files of dir that the database has not seen, in
// the order given, and records each in schema_migrations, so running it twice
// applies nothing twice. A file runs as one simple-protocol query: its statements
// run in one implicit transaction unless the file says otherwise.
func migrate(ctx context.Context, dir string, names []string) error {
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	for _, name := range names {
		if name != filepath.Base(name) || !strings.HasSuffix(name, ".sql") {
			return fmt.Errorf("%q is not a migration file name (NAME.sql, no folder)", name)
		}
		var done bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)`, name).Scan(&done); err != nil {
			return err
		}
		if done {
			fmt.Printf("%s: already applied\n", name)
			continue
		}
		sql, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (name) VALUES ($1)`, name); err != nil {
			return err
		}
		fmt.Printf("%s: applied in %s\n", name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// connect reaches the database from the PG* environment, waiting up to 30 s for
// it to accept connections.
func connect(ctx context.Context) (*pgx.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, "")
		if err == nil || time.Now().After(deadline) {
			return conn, err
		}
		time.Sleep(time.Second)
	}
}
