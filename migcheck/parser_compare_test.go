//go:build cgo

package migcheck

import (
	"errors"
	"fmt"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	cparser "github.com/pganalyze/pg_query_go/v6/parser"
	pgquery "github.com/wasilibs/go-pgquery"
	wparser "github.com/wasilibs/go-pgquery/parser"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The WebAssembly parser (go-pgquery, used without cgo) gives the same scan,
// the same errors and the same parse tree as the cgo one (pg_query_go), but
// for the location fields that libpg_query 17-6.2.5 added: go-pgquery embeds
// libpg_query 17-6.2.2. migcheck reads none of them.
func TestParsersAgree(t *testing.T) {
	var srcs []string
	for i, tpl := range benchTemplates {
		srcs = append(srcs, fmt.Sprintf(tpl, i))
	}
	srcs = append(srcs,
		"CREATE INDEX i ON t (a) WITH (fillfactor = 70);",
		"NOTIFY ch, 'payload';",
		"SELECT 1;\nALTER TABLE users\n  DROP COLUMNN email;",
		"--日本語のコメント、ünïcödé\nSELECT 'ÄÖÜ';\n\nSELEC 2;",
		"SELECT 'unterminated",
	)
	for _, src := range srcs {
		ct, cerr := pg.Parse(src)
		wt, werr := pgquery.Parse(src)
		if ce, we := pos(cerr), pos(werr); (cerr == nil) != (werr == nil) || ce != we {
			t.Errorf("%q: errors %q and %q", src, ce, we)
			continue
		}
		if cerr != nil {
			continue
		}
		if clearNewLocations(ct.ProtoReflect()); !proto.Equal(ct, wt) {
			t.Errorf("%q: parse trees differ:\ncgo:  %v\nwasm: %v", src, ct, wt)
		}
		cs, _ := pg.Scan(src)
		ws, _ := pgquery.Scan(src)
		if !proto.Equal(cs, ws) {
			t.Errorf("%q: scans differ", src)
		}
	}
}

// pos is the message and cursor position of either parser's error.
func pos(err error) string {
	var ce *cparser.Error
	var we *wparser.Error
	switch {
	case errors.As(err, &ce):
		return fmt.Sprintf("%s at %d", ce.Message, ce.Cursorpos)
	case errors.As(err, &we):
		return fmt.Sprintf("%s at %d", we.Message, we.Cursorpos)
	case err != nil:
		return "other: " + err.Error()
	}
	return ""
}

// clearNewLocations zeroes DefElem.arg_location, NotifyStmt.payload_location
// and the subscription statements' conninfo_location.
func clearNewLocations(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "arg_location" || fd.Name() == "payload_location" || fd.Name() == "conninfo_location":
			m.Clear(fd)
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				clearNewLocations(v.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			clearNewLocations(v.Message())
		}
		return true
	})
}
