package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"taledeploy/remote"
)

// Facts asks a host many small things in one command: read files, list a
// folder, make folders, write or append small files, take or release the
// lock. At a VPS's round trip each remote call costs a tenth of a second or
// more; a Facts costs one command however many things it asks. Each ask
// gets its own answer, in order; a failed ask does not stop the others.
//
// Every path and value reaches the script as an argument, never as script
// text. What is written comes on the command's input, each piece's length an
// argument: a piece cut short (a lost connection) is never renamed into place,
// and once a write fails, every later one fails too: a file never receives
// another's bytes, and what is written after something depends on it.
type Facts struct {
	args  []string
	stdin bytes.Buffer
	n     int
}

// Answer is what one ask of a Facts got: its output, and its exit code (0
// when it succeeded, CodeMissing when the path was not there).
type Answer struct {
	Out    []byte
	Code   int
	Stderr string
}

// Exit codes of an ask.
const (
	CodeMissing = 66 // no such file or folder
	CodeHeld    = 3  // the lock is someone else's
)

// Err is the answer's failure as an error: one matching fs.ErrNotExist when
// the path was missing.
func (a Answer) Err(what string) error {
	switch a.Code {
	case 0:
		return nil
	case CodeMissing:
		return &fs.PathError{Op: "open", Path: what, Err: fs.ErrNotExist}
	}
	if msg := strings.TrimSpace(a.Stderr); msg != "" {
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("%s: %s", what, msg)
	}
	return fmt.Errorf("%s: exit status %d", what, a.Code)
}

// factsScript carries out the asks, given as arguments after the boundary
// $1: an operation and its arguments. After each it prints a newline, the
// boundary, the exit code of the ask and the length of what it printed on
// stderr, then that. umask 077: nothing it makes is
// readable by others before its mode is set.
const factsScript = `# taledeploy facts
b=$1; shift; umask 077; bad=
e=$(mktemp) || exit 1; trap 'rm -f "$e"' EXIT
take() { if [ -z "$bad" ] && head -c "$2" >"$1" && [ "$(wc -c <"$1")" -eq "$2" ]; then :; else bad=1; false; fi; }
skip() { [ -n "$bad" ] || head -c "$1" >/dev/null || bad=1; }
while [ $# -gt 0 ]; do
	op=$1; shift
	case $op in
	cat) p=$1; shift
		if [ -e "$p" ]; then cat -- "$p"; else (exit 66); fi ;;
	ls) p=$1; shift
		if [ -d "$p" ]; then ls -A -- "$p"; else (exit 66); fi ;;
	age) p=$1; shift
		if [ -e "$p" ]; then date +%s && date -r "$p" +%s; else (exit 66); fi ;;
	mkdir) p=$1 m=$2; shift 2
		(umask 022 && mkdir -p -- "$p") && chmod "$m" -- "$p" ;;
	write) p=$1 m=$2 n=$3; shift 3
		d=${p%/*}; t="$d/.${p##*/}.taledeploy-$$"
		if (umask 022 && mkdir -p -- "$d"); then
			if take "$t" "$n" && chmod "$m" -- "$t" && mv -f -- "$t" "$p"; then :; else bad=1; rm -f -- "$t"; false; fi
		else skip "$n"; bad=1; false; fi ;;
	append) p=$1 m=$2 n=$3; shift 3
		t="${p%/*}/.${p##*/}.taledeploy-$$"
		if take "$t" "$n" && cat -- "$t" >>"$p" && chmod "$m" -- "$p"; then rm -f -- "$t"; else bad=1; rm -f -- "$t"; false; fi ;;
	lock) p=$1 tok=$2 n=$3; shift 3
		t="$p.new-$tok"
		if mkdir -- "$t"; then
			if take "$t/owner.json" "$n"; then
				if mv -T -- "$t" "$p" 2>/dev/null; then :
				elif [ -e "$p/owner.json" ]; then rm -rf -- "$t"; (exit 3)
				else rm -rf -- "$t"; false; fi
			else rm -rf -- "$t"; false; fi
		else skip "$n"; false; fi ;;
	unlock) p=$1 mark=$2; shift 2
		if [ ! -e "$p/owner.json" ]; then (exit 66)
		elif grep -qF -- "$mark" "$p/owner.json"; then rm -rf -- "$p"
		else (exit 3); fi ;;
	*) echo "taledeploy facts: unknown ask $op" >&3; exit 2 ;;
	esac 3>&2 2>"$e"
	printf '\n%s %s %s\n' "$b" "$?" "$(wc -c <"$e")"; cat -- "$e"
done`

func (q *Facts) ask(args ...string) int {
	q.args = append(q.args, args...)
	q.n++
	return q.n - 1
}

// Cat reads a file.
func (q *Facts) Cat(path string) int { return q.ask("cat", path) }

// List lists a folder's entries, one a line.
func (q *Facts) List(dir string) int { return q.ask("ls", dir) }

// Age asks the host's time and the file's modification time, in seconds:
// "NOW\nMTIME\n".
func (q *Facts) Age(path string) int { return q.ask("age", path) }

// Mkdir makes a folder and its parents and gives it mode.
func (q *Facts) Mkdir(dir string, mode os.FileMode) int {
	return q.ask("mkdir", dir, fmt.Sprintf("%o", mode.Perm()))
}

// Write replaces a file atomically (a temp file beside it, renamed over it)
// with data and mode; missing folders are made (mode 0755).
func (q *Facts) Write(path string, data []byte, mode os.FileMode) int {
	q.stdin.Write(data)
	return q.ask("write", path, fmt.Sprintf("%o", mode.Perm()), strconv.Itoa(len(data)))
}

// Append adds data to a file, made with mode when missing.
func (q *Facts) Append(path string, data []byte, mode os.FileMode) int {
	q.stdin.Write(data)
	return q.ask("append", path, fmt.Sprintf("%o", mode.Perm()), strconv.Itoa(len(data)))
}

// Lock takes the lock folder dir with owner as its owner.json, in one
// rename, so no one ever sees a lock without an owner: CodeHeld when another
// holds it.
func (q *Facts) Lock(dir, token string, owner []byte) int {
	q.stdin.Write(owner)
	return q.ask("lock", dir, token, strconv.Itoa(len(owner)))
}

// Unlock removes the lock folder dir if its owner.json holds mark: CodeHeld
// when it does not, CodeMissing when there is no lock.
func (q *Facts) Unlock(dir, mark string) int { return q.ask("unlock", dir, mark) }

// Cmd is the command that asks everything, and the boundary its answers are
// separated by.
func (q *Facts) Cmd() (remote.Cmd, string) {
	b := make([]byte, 12)
	rand.Read(b)
	boundary := "--taledeploy-" + hex.EncodeToString(b)
	cmd := remote.Cmd{Argv: append([]string{"sh", "-c", factsScript, "sh", boundary}, q.args...)}
	if q.stdin.Len() > 0 {
		cmd.Stdin = bytes.NewReader(q.stdin.Bytes())
	}
	return cmd, boundary
}

// Run asks everything in one command and returns one answer per ask.
func (q *Facts) Run(ctx context.Context, h Conn) ([]Answer, error) {
	cmd, boundary := q.Cmd()
	out, err := h.Run(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return ParseFacts(out, boundary, q.n)
}

// ParseFacts splits the script's output into n answers.
func ParseFacts(out []byte, boundary string, n int) ([]Answer, error) {
	answers := make([]Answer, 0, n)
	sep := []byte("\n" + boundary + " ")
	for len(answers) < n {
		i := bytes.Index(out, sep)
		if i < 0 {
			return nil, errors.New("the host's answer was cut short")
		}
		a := Answer{Out: out[:i]}
		rest := out[i+len(sep):]
		line, next, ok := bytes.Cut(rest, []byte("\n"))
		f := strings.Fields(string(line))
		if !ok || len(f) != 2 {
			return nil, errors.New("the host's answer was cut short")
		}
		code, err1 := strconv.Atoi(f[0])
		n, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil || n < 0 || n > len(next) {
			return nil, fmt.Errorf("the host's answer is garbled: %q", line)
		}
		a.Code, a.Stderr = code, string(next[:n])
		next = next[n:]
		answers = append(answers, a)
		out = next
	}
	return answers, nil
}

// IsFacts tells whether argv is a Facts command, and gives its boundary and
// asks: for fakes that answer it.
func IsFacts(argv []string) (boundary string, asks []string, ok bool) {
	if len(argv) < 5 || argv[0] != "sh" || argv[2] != factsScript {
		return "", nil, false
	}
	return argv[4], argv[5:], true
}
