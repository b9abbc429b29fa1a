package hosttest

import (
	"net/http"
	"regexp"

	"golang.org/x/mod/semver"
)

// versionPrefix is how an Engine API client names the API version in a path.
var versionPrefix = regexp.MustCompile(`^/v1\.[0-9]+/`)

// engineAPI serves h as Docker Engine API version: /_ping answers with the
// version (clients negotiate with it) and a versioned path reaches h without
// its version.
func engineAPI(version string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := versionPrefix.FindString(r.URL.Path); p != "" {
			r.URL.Path = r.URL.Path[len(p)-1:]
		}
		if r.URL.Path == "/_ping" {
			w.Header().Set("Api-Version", version)
			w.Header().Set("Ostype", "linux")
			w.Write([]byte("OK"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// atLeast tells whether API version have is version want or later.
func atLeast(have, want string) bool { return semver.Compare("v"+have, "v"+want) >= 0 }
