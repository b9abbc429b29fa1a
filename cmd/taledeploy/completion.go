package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"

	"taledeploy/internal/stack"
	"taledeploy/remote"
)

// CompletionCmd is `taledeploy completion bash|zsh`.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh" help:"bash or zsh."`
}

// The shell asks taledeploy itself what completes a line (bash's complete -C,
// which zsh runs through bashcompinit): kongplete answers from the command
// model, the inventory supplies environments, hosts and services.
var completionScripts = map[string]string{
	"bash": `# taledeploy completion for bash. Load it from ~/.bashrc:
#   source <(taledeploy completion bash)
# It completes commands, flags, and the environments, hosts and services of
# the inventory (--inventory, or inventory.yaml in the current folder).
complete -o default -C %[1]s taledeploy
`,
	"zsh": `# taledeploy completion for zsh. Load it from ~/.zshrc, after compinit:
#   source <(taledeploy completion zsh)
# It completes commands, flags, and the environments, hosts and services of
# the inventory (--inventory, or inventory.yaml in the current folder).
autoload -U +X bashcompinit && bashcompinit
complete -o default -C %[1]s taledeploy
`,
}

func (c *CompletionCmd) Run(k *kong.Context) error {
	return writeCompletion(k.Stdout, c.Shell, completionBinary())
}

// writeCompletion writes the script for shell that completes by running bin.
func writeCompletion(w io.Writer, shell, bin string) error {
	script, ok := completionScripts[shell]
	if !ok {
		return fmt.Errorf("%w: no completion for shell %q; taledeploy has it for bash and zsh", stack.ErrBadInput, shell)
	}
	_, err := fmt.Fprintf(w, script, remote.Quote([]string{bin}))
	return err
}

// completionBinary is the program the shell runs to complete a line: this
// one, unless it is a throwaway build (go run), then whatever is on PATH.
func completionBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return "taledeploy"
	}
	if exe, err = filepath.Abs(exe); err != nil || strings.HasPrefix(exe, os.TempDir()+string(filepath.Separator)) {
		return "taledeploy"
	}
	return exe
}

// completeLine answers a shell's completion request (COMP_LINE is set) and
// exits; otherwise it returns at once.
func completeLine(parser *kong.Kong, opts ...kongplete.Option) {
	kongplete.Complete(parser, append(completionPredictors(), opts...)...)
}

// completionPredictors complete what the inventory names.
func completionPredictors() []kongplete.Option {
	return []kongplete.Option{
		kongplete.WithPredictor("env", complete.PredictFunc(func(a complete.Args) []string {
			return inventoryNames(a).Envs
		})),
		kongplete.WithPredictor("hosts", complete.PredictFunc(func(a complete.Args) []string {
			n := inventoryNames(a)
			return n.Hosts[lineEnv(a, n)]
		})),
		kongplete.WithPredictor("service", complete.PredictFunc(func(a complete.Args) []string {
			n := inventoryNames(a)
			return n.Services[lineEnv(a, n)]
		})),
	}
}

// inventoryNames reads the names in the inventory the line names (--inventory
// FILE, -i FILE) or inventory.yaml; an unreadable one offers nothing.
func inventoryNames(complete.Args) stack.Names {
	// The global flag may come before the command, and the Args a predictor
	// gets start after the command: read the whole line.
	line := os.Getenv("COMP_LINE")
	if p, err := strconv.Atoi(os.Getenv("COMP_POINT")); err == nil && p >= 0 && p < len(line) {
		line = line[:p]
	}
	words := strings.Fields(line)
	file := "inventory.yaml"
	for i, w := range words {
		switch {
		case (w == "--inventory" || w == "-i") && i+1 < len(words):
			file = words[i+1]
		case strings.HasPrefix(w, "--inventory="):
			file = strings.TrimPrefix(w, "--inventory=")
		case strings.HasPrefix(w, "-i") && len(w) > 2 && !strings.HasPrefix(w, "--"):
			file = w[2:]
		}
	}
	n, _ := stack.ReadNames(file)
	return n
}

// lineEnv is the environment already typed on the line, or "".
func lineEnv(a complete.Args, n stack.Names) string {
	for _, w := range a.Completed {
		if slices.Contains(n.Envs, w) {
			return w
		}
	}
	return ""
}
