package plan

import (
	"maps"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// The env file reaches containers byte for byte: Compose's own parser reads
// back exactly the inventory's values, whatever they hold.
func TestEnvFileRoundTrip(t *testing.T) {
	values := map[string]string{
		"DOLLAR":      "pa$word123",
		"BRACES":      "${HOME} and $HOME and $$",
		"HASH":        "abc #def",
		"HASH_TIGHT":  "abc#def",
		"DOUBLE":      `"wrapped"`,
		"SINGLE":      "'abc123",
		"BOTH":        `it's "quoted"`,
		"BACKSLASH":   `C:\new\table\`,
		"ESCAPES":     `\n \t \$ \" \\ \0123`,
		"SPACES":      "  padded  ",
		"EMPTY":       "",
		"UNICODE":     "pässwörd ✓ 秘密",
		"EQUALS":      "a=b==c",
		"TRAILING_BS": `ends with \`,
	}
	s := &Stack{Env: values}
	got, err := dotenv.UnmarshalBytesWithLookup(s.envFile(), func(string) (string, bool) { return "LOOKED-UP", true })
	if err != nil {
		t.Fatalf("compose-go cannot read the env file (its message is not shown: it may quote a value)")
	}
	if !maps.Equal(got, values) {
		for k, want := range values {
			if got[k] != want {
				t.Errorf("%s: compose reads %q, want %q", k, got[k], want)
			}
		}
	}
}

// FuzzEnvFile: any value the inventory accepts (one line, no NUL) reads back
// exactly.
func FuzzEnvFile(f *testing.F) {
	f.Add("pa$word123")
	f.Add(`\"'${X}#`)
	f.Fuzz(func(t *testing.T, v string) {
		if hasControl(v) {
			t.Skip()
		}
		s := &Stack{Env: map[string]string{"V": v}}
		got, err := dotenv.UnmarshalBytesWithLookup(s.envFile(), func(string) (string, bool) { return "", false })
		if err != nil || got["V"] != v {
			t.Fatalf("%q reads back as %q (%v)", v, got["V"], err)
		}
	})
}
