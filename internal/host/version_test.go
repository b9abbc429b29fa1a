package host

import "testing"

func TestAtLeast(t *testing.T) {
	for _, tc := range []struct {
		have, want string
		ok         bool
	}{
		{"28.2.2", "20.10", true},
		{"20.10.24+dfsg1", "20.10", true}, // Debian's docker.io
		{"v2.40.3", "2.20", true},         // compose may print a v
		{"2.19.1", "2.20", false},
		{"19.03.15", "20.10", false},
		{"29.0.0-rc.1", "20.10", true},
		{"24.0.7-0ubuntu2~22.04.1", "20.10", true}, // Ubuntu's docker.io
		{"2.24.6+ds1-0ubuntu1~22.04.1", "2.20", true},
		{"", "20.10", false},
		{"unknown", "20.10", false},
	} {
		if got := atLeast(tc.have, tc.want); got != tc.ok {
			t.Errorf("atLeast(%q, %q) = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
}
