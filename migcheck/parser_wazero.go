//go:build !cgo || migcheck_wasm

package migcheck

import (
	"errors"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgquery "github.com/wasilibs/go-pgquery"
	"github.com/wasilibs/go-pgquery/parser"
)

// Without cgo (or with -tags migcheck_wasm), libpg_query runs as WebAssembly
// in wazero (go-pgquery): pure Go, same parse tree types, slower, and its
// first call in a process compiles the module.

func parseSQL(text string) (*pg.ParseResult, error) { return pgquery.Parse(text) }

func scanSQL(text string) (*pg.ScanResult, error) { return pgquery.Scan(text) }

// cursorpos is the 1-based character position of a syntax error, or 0.
// go-pgquery has its own error type, with the same fields as pg_query_go's.
func cursorpos(err error) int {
	var pe *parser.Error
	if errors.As(err, &pe) {
		return pe.Cursorpos
	}
	return 0
}
