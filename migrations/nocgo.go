//go:build !cgo

package migrations

// CheckSQL needs the Postgres parser, which needs cgo.
func CheckSQL(name string, src []byte) ([]Finding, error) {
	return nil, ErrNoParser
}
