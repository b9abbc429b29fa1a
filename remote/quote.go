package remote

import "strings"

// Quote turns argv into one POSIX shell word list. The SSH protocol carries a
// command as a single string that the host's login shell parses, so this is the
// one place where untrusted strings become shell text: every word is single-quoted
// unless it consists only of characters no shell treats specially.
func Quote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteWord(a))
	}
	return b.String()
}

func quoteWord(s string) string {
	if s == "" {
		return "''"
	}
	if isSafe(s) {
		return s
	}
	// Inside single quotes nothing is special except the quote itself, which is
	// closed, escaped and reopened: ' -> '\''
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func isSafe(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_./:=,+@%", r):
		default:
			return false
		}
	}
	return true
}
