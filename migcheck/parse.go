package migcheck

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agnivade/levenshtein"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// CheckSQL checks one migration; name is used in findings and to tell a
// contract migration.
func CheckSQL(name string, src []byte) ([]Finding, error) {
	text := string(src)
	tree, err := parseSQL(text)
	if err != nil {
		ie := &InputError{File: name, Line: 1, Msg: err.Error()}
		if pos := cursorpos(err); pos > 0 {
			ie.Line = newLines(text).line(byteOffset(text, pos-1))
		}
		return nil, ie
	}
	scan, err := scanSQL(text)
	if err != nil {
		return nil, &InputError{File: name, Line: 1, Msg: err.Error()}
	}
	c := &checker{
		file:     name,
		src:      text,
		lines:    newLines(text),
		contract: IsContract(name, src),
		created:  map[string]bool{},
	}
	c.locate(tree, scan)
	c.directives(scan)
	for _, s := range c.stmts {
		c.statement(s)
	}
	sort.SliceStable(c.findings, func(i, j int) bool { return c.findings[i].Line < c.findings[j].Line })
	return c.findings, nil
}

// byteOffset converts the parser's error position, counted in characters,
// to a byte offset (the parse tree's locations are in bytes).
func byteOffset(s string, chars int) int {
	n := 0
	for i := range s {
		if n == chars {
			return i
		}
		n++
	}
	return len(s)
}

// lines maps byte offsets to 1-based line numbers.
type lines []int // offsets of '\n'

func newLines(s string) lines {
	var l lines
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			l = append(l, i)
		}
	}
	return l
}

func (l lines) line(off int) int { return sort.SearchInts(l, off) + 1 }

// stmt is one statement with where it is: the line of its first token, the
// line of its last token (its semicolon), and the rules its allow comments name.
type stmt struct {
	node        *pg.Node
	start       int
	first, last int
	allow       map[string]bool
}

type checker struct {
	file     string
	src      string
	lines    lines
	contract bool
	stmts    []*stmt
	findings []Finding

	inTx         bool            // inside BEGIN ... COMMIT
	timeout      bool            // SET lock_timeout in force
	localTimeout bool            // SET LOCAL lock_timeout in force (until COMMIT)
	lockReported bool            // lock-timeout is reported once per file
	created      map[string]bool // tables created in this file: no old code uses them
}

func isComment(t pg.Token) bool { return t == pg.Token_SQL_COMMENT || t == pg.Token_C_COMMENT }

// locate finds each statement's first and last line from the parser's byte
// offsets. A statement's offset starts after the previous semicolon, so the
// comments and blank lines before it are skipped with the scanner's tokens.
func (c *checker) locate(tree *pg.ParseResult, scan *pg.ScanResult) {
	toks := scan.Tokens
	for _, raw := range tree.Stmts {
		loc := int(raw.StmtLocation)
		end := len(c.src)
		if raw.StmtLen > 0 {
			end = loc + int(raw.StmtLen)
		}
		i := sort.Search(len(toks), func(i int) bool { return int(toks[i].Start) >= loc })
		for i < len(toks) && isComment(toks[i].Token) {
			i++
		}
		s := &stmt{node: raw.Stmt, start: loc, allow: map[string]bool{}}
		if i < len(toks) {
			s.start = int(toks[i].Start)
		}
		s.first = c.lines.line(s.start)
		s.last = s.first
		// The last token: the semicolon at end, or the last one before it.
		j := sort.Search(len(toks), func(j int) bool { return int(toks[j].Start) > end }) - 1
		for j >= 0 && isComment(toks[j].Token) {
			j--
		}
		if j >= 0 && int(toks[j].Start) >= s.start {
			s.last = c.lines.line(int(toks[j].Start))
		}
		c.stmts = append(c.stmts, s)
	}
}

// directives reads the taledeploy: comments. An allow comment applies to the
// statements whose lines it is on, or else to the next statement.
func (c *checker) directives(scan *pg.ScanResult) {
	for _, t := range scan.Tokens {
		if !isComment(t.Token) {
			continue
		}
		body := c.src[t.Start:t.End]
		if t.Token == pg.Token_SQL_COMMENT {
			body = strings.TrimPrefix(body, "--")
		} else {
			body = strings.TrimSuffix(strings.TrimPrefix(body, "/*"), "*/")
		}
		body = strings.TrimSpace(body)
		verb, rest, ok := strings.Cut(body, ":")
		if !ok || verb != "taledeploy" {
			continue
		}
		line := c.lines.line(int(t.Start))
		word, args, _ := strings.Cut(rest, " ")
		switch word {
		case "contract":
			if line != 1 || t.Token != pg.Token_SQL_COMMENT {
				c.unknown(line, "taledeploy:contract counts only as the file's first line, as "+ContractMarker, "move it to the first line, or name the file NAME.contract.sql")
			}
			continue
		case "allow":
		default:
			c.unknown(line, fmt.Sprintf("unknown directive taledeploy:%s", word), "write taledeploy:allow RULE or taledeploy:contract")
			continue
		}
		args, _, _ = strings.Cut(args, "--") // a reason may follow: allow drop-column -- unused since 2024
		names := strings.FieldsFunc(args, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		if len(names) == 0 {
			c.unknown(line, "taledeploy:allow names no rule", "write taledeploy:allow RULE, e.g. taledeploy:allow drop-column")
			continue
		}
		targets := c.allowTargets(line, int(t.Start))
		for _, n := range names {
			if _, ok := LookupRule(n); !ok || n == RuleUnknownRule {
				fix := "name a rule of the README's Migration safety check table"
				if near := nearest(n); near != "" {
					fix = "did you mean " + near + "?"
				}
				c.unknown(line, fmt.Sprintf("taledeploy:allow names unknown rule %q, so it allows nothing", n), fix)
				continue
			}
			for _, s := range targets {
				s.allow[n] = true
			}
		}
	}
}

// allowTargets: the statements on line, or else the first one after off.
func (c *checker) allowTargets(line, off int) []*stmt {
	var on []*stmt
	for _, s := range c.stmts {
		if s.first <= line && line <= s.last {
			on = append(on, s)
		}
	}
	if len(on) > 0 {
		return on
	}
	for _, s := range c.stmts {
		if s.start > off {
			return []*stmt{s}
		}
	}
	return nil
}

func (c *checker) unknown(line int, msg, fix string) {
	c.findings = append(c.findings, Finding{File: c.file, Line: line, Rule: RuleUnknownRule, Message: msg, Fix: fix})
}

// flag reports rule on s unless an allow comment or a contract migration
// allows it. what says what the statement does.
func (c *checker) flag(s *stmt, rule, what string) {
	r, _ := LookupRule(rule)
	if s.allow[rule] || (c.contract && r.Contract) {
		return
	}
	c.findings = append(c.findings, Finding{
		File: c.file, Line: s.first, Rule: rule, Contract: r.Contract,
		Message: what + ": " + r.Why, Fix: r.Fix,
	})
}

// nearest is the rule name within two edits of n, if any.
func nearest(n string) string {
	best, bestD := "", 3
	for _, r := range Rules {
		if d := levenshtein.ComputeDistance(n, r.Name); d < bestD {
			best, bestD = r.Name, d
		}
	}
	return best
}
