//go:build cgo && !migcheck_wasm

package migcheck

import (
	"errors"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
)

// With cgo, libpg_query is linked in as C (pg_query_go).

func parseSQL(text string) (*pg.ParseResult, error) { return pg.Parse(text) }

func scanSQL(text string) (*pg.ScanResult, error) { return pg.Scan(text) }

// cursorpos is the 1-based character position of a syntax error, or 0.
func cursorpos(err error) int {
	var pe *parser.Error
	if errors.As(err, &pe) {
		return pe.Cursorpos
	}
	return 0
}
