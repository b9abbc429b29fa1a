package stack

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// refRE finds ${NAME} in an env value (a value taken from the environment of
// the machine running taledeploy) and $${, a literal ${.
var refRE = regexp.MustCompile(`\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ResolveEnv fills the env values that come from outside the inventory, so
// that no secret has to be committed: the stack's env_files (local dotenv
// files, read as Compose reads them) and env_commands (a command's output,
// each run once), under the inventory's own env; and
// every ${NAME} in a value, from lookup (the environment of the machine that
// runs taledeploy: a shell, a CI runner's secrets). A NAME that is not set is
// an error that names it and the variable that uses it, never a value.
func (e *Environment) ResolveEnv(lookup func(string) (string, bool)) error {
	return e.ResolveEnvWith(lookup, runLocal)
}

// runLocal runs argv on this machine, without a shell, and returns its output.
func runLocal(argv []string) ([]byte, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// Its own last line of stderr says why (a password manager's message
		// names the item, not its value); the output itself is never shown.
		last := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if last != "" {
			return nil, fmt.Errorf("%v: %.200s", err, last)
		}
		return nil, err
	}
	return out, nil
}

// ResolveEnvWith is ResolveEnv with the way env_commands are run.
func (e *Environment) ResolveEnvWith(lookup func(string) (string, bool), run func(argv []string) ([]byte, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resolved {
		return nil
	}
	s := &e.Stack
	fromFiles := EnvMap{}
	for _, f := range s.EnvFiles {
		p := f
		if !filepath.IsAbs(p) {
			p = filepath.Join(s.Root, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("%w: environment %s: env_files: %v; create it (and keep it out of git), or remove it from env_files", ErrBadInput, e.Name, err)
		}
		vals, err := dotenv.UnmarshalBytesWithLookup(data, lookup)
		if err != nil {
			// The parser's message may quote a value: only its line is told.
			line := regexp.MustCompile(`line \d+`).FindString(err.Error())
			return fmt.Errorf("%w: environment %s: env file %s cannot be read as KEY=value lines (%s); quote values that hold spaces, # or quotes", ErrBadInput, e.Name, p, cmp.Or(line, "unknown"))
		}
		maps.Copy(fromFiles, vals)
	}
	for _, k := range slices.Sorted(maps.Keys(s.EnvCommands)) {
		argv := s.EnvCommands[k]
		if !envKeyRE.MatchString(k) {
			return fmt.Errorf("%w: environment %s: env_commands key %q is not a valid variable name", ErrBadInput, e.Name, k)
		}
		if len(argv) == 0 || argv[0] == "" {
			return fmt.Errorf("%w: environment %s: env_commands %s has no command; give it as a list, e.g. [op, read, \"op://vault/item/field\"]", ErrBadInput, e.Name, k)
		}
		out, err := run(argv)
		if err != nil {
			return fmt.Errorf("%w: environment %s: env_commands %s: %s failed: %v", ErrBadInput, e.Name, k, argv[0], err)
		}
		// One trailing line break is the command's, not the value's.
		v := strings.TrimSuffix(strings.TrimSuffix(string(out), "\n"), "\r")
		fromFiles[k] = v
	}
	var missing []string
	resolve := func(where string, env EnvMap) EnvMap {
		if len(env) == 0 {
			return env
		}
		out := make(EnvMap, len(env))
		for k, v := range env {
			out[k] = refRE.ReplaceAllStringFunc(v, func(m string) string {
				if m == "$${" {
					return "${"
				}
				name := refRE.FindStringSubmatch(m)[1]
				val, ok := lookup(name)
				if !ok {
					// Not exported here: an env_files or env_commands value of
					// that name stands in (init writes NAME: ${NAME} for all).
					val, ok = fromFiles[name]
				}
				if !ok {
					missing = append(missing, fmt.Sprintf("%s (used by env %s%s)", name, k, where))
				}
				return val
			})
		}
		return out
	}
	env := maps.Clone(fromFiles)
	if env == nil {
		env = EnvMap{}
	}
	maps.Copy(env, resolve("", s.Env))
	hostEnvs := make([]EnvMap, len(e.Hosts))
	for i, h := range e.Hosts {
		hostEnvs[i] = resolve(" of host "+h.Name, h.Env)
	}
	for k, v := range env {
		if strings.ContainsAny(v, "\x00") {
			return fmt.Errorf("%w: environment %s: env %s holds a NUL byte, which no env file can carry", ErrBadInput, e.Name, k)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%w: environment %s takes these from the environment, but they are not set here: %s. Export them in this shell (in CI: from the job's secrets), or give them in an env_files file or env_commands",
			ErrBadInput, e.Name, strings.Join(slices.Compact(missing), ", "))
	}
	// Only a complete resolution changes the environment.
	s.Env = env
	for i, h := range e.Hosts {
		h.Env = hostEnvs[i]
	}
	e.resolved, e.stacks = true, nil
	return nil
}
