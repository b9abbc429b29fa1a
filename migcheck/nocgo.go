//go:build !cgo

package migcheck

// CheckSQL needs the Postgres parser, which needs cgo.
func CheckSQL(name string, src []byte) ([]Finding, error) {
	return nil, ErrNoParser
}
