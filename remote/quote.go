package remote

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrBadCommand is a command that cannot reach the host intact; see CommandLine.
var ErrBadCommand = errors.New("command cannot be passed to the host's shell intact")

var envEntryRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// CommandLine is the exact text Run sends for cmd: the SSH protocol carries a
// command as one string that the host's login shell parses, so this is the one
// place where untrusted strings become shell text. cmd.Env goes in front through
// env(1), since sshd rarely accepts SetEnv.
//
// It refuses, with ErrBadCommand, what no quoting can carry: a NUL byte (a
// process argument ends at the first one, so the command would get a shorter
// string than intended), an env entry that is not NAME=VALUE (env(1) would take
// it for an option or for the command), a command name holding "=" behind env(1)
// (taken for one more assignment), and an empty argv. Error messages name the
// argument's position or the variable, never a value: it may be a secret.
func CommandLine(cmd Cmd) (string, error) {
	if len(cmd.Argv) == 0 {
		return "", fmt.Errorf("%w: no command", ErrBadCommand)
	}
	for i, a := range cmd.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return "", fmt.Errorf("%w: argument %d of %.40q holds a NUL byte", ErrBadCommand, i, cmd.Argv[0])
		}
	}
	if len(cmd.Env) == 0 {
		return Quote(cmd.Argv), nil
	}
	for _, e := range cmd.Env {
		name, _, _ := strings.Cut(e, "=")
		switch {
		case !envEntryRE.MatchString(e):
			return "", fmt.Errorf("%w: env entry %.40q is not NAME=VALUE with a NAME of letters, digits and _", ErrBadCommand, name)
		case strings.IndexByte(e, 0) >= 0:
			return "", fmt.Errorf("%w: the value of %s holds a NUL byte", ErrBadCommand, name)
		}
	}
	if strings.Contains(cmd.Argv[0], "=") {
		return "", fmt.Errorf("%w: command name %.40q holds \"=\", which env(1) takes for a variable", ErrBadCommand, cmd.Argv[0])
	}
	return Quote(append(append([]string{"env"}, cmd.Env...), cmd.Argv...)), nil
}

// Quote turns argv into one POSIX shell word list (sh, dash, bash, zsh): every
// word is single-quoted unless it consists only of characters no shell treats
// specially. It does not check for NUL bytes; CommandLine does.
func Quote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteWord(a, i == 0))
	}
	return b.String()
}

func quoteWord(s string, command bool) string {
	if isSafe(s) && !(command && specialCommand(s)) {
		return s
	}
	// Inside single quotes nothing is special except the quote itself, which is
	// closed, escaped and reopened: ' -> '\''
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func isSafe(s string) bool {
	// zsh expands a word that starts with = to a command's path.
	if s == "" || s[0] == '=' {
		return false
	}
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

// specialCommand tells whether a safe word means something else as the first
// word: an assignment (A=b), a job (%1), a reserved word (if, time), or an option
// of the shell itself (sshd runs `sh -c LINE`, and sh reads a LINE that starts
// with - or + as options). Quoted, it is a command name like any other.
func specialCommand(s string) bool {
	if strings.ContainsAny(s, "=%") || s[0] == '-' || s[0] == '+' {
		return true
	}
	switch s {
	case "case", "coproc", "do", "done", "elif", "else", "end", "esac", "fi", "for", "foreach", "function",
		"if", "in", "nocorrect", "noglob", "repeat", "select", "then", "time", "until", "while":
		return true
	}
	return false
}
