package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"taledeploy/internal/stack"
)

// InitCmd is `taledeploy init`: a first inventory from the project's own files.
type InitCmd struct {
	Compose   string `help:"The compose file (default: compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml here)."`
	Caddyfile string `help:"The Caddyfile (default: the first file named Caddyfile in this folder or below it)."`
}

func (c *InitCmd) Run(cli *CLI) error {
	out := cli.Inventory
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%w: %s exists; init never overwrites a file. Move it away, or pass --inventory NEW.yaml", stack.ErrBadInput, out)
	}
	dir := filepath.Dir(out)
	compose := c.Compose
	for _, name := range []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"} {
		if compose != "" {
			break
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			compose = name
		}
	}
	if compose == "" {
		return fmt.Errorf("%w: no compose file in %s; run init in your project's folder, or pass --compose FILE", stack.ErrBadInput, dir)
	}
	caddyfile := c.Caddyfile
	if caddyfile == "" {
		caddyfile = findCaddyfile(dir)
	}
	d, err := stack.DraftFrom(dir, compose, caddyfile)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(d.Inventory()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("taledeploy: wrote %s from %s", out, compose)
	if caddyfile != "" {
		fmt.Printf(" and %s", caddyfile)
	}
	fmt.Println(". What it guessed:")
	for _, s := range d.Services {
		kind := "stateless"
		if s.Stateful {
			kind = "stateful "
		}
		fmt.Printf("  %s  %-12s %s\n", kind, s.Name, s.Why)
	}
	for _, r := range d.Routes {
		fmt.Printf("  route      %s%s -> %s:%d (health %s)\n", r.Site, r.Path, r.Service, r.Port, r.HealthPath)
	}
	fmt.Println("Next: put your host's address and user under hosts,")
	var need []string
	for _, v := range d.Env {
		if !slices.Contains(d.Optional, v) {
			need = append(need, v)
		}
	}
	if len(need) > 0 {
		fmt.Printf("export what the compose file needs (%s) in this shell or your CI's secrets,\n", strings.Join(need, ", "))
	}
	fmt.Println("then run `taledeploy plan prod`: it says what is still missing.")
	return nil
}

// findCaddyfile is the first file named Caddyfile in dir or below (hidden
// folders and dependencies skipped), as a path relative to dir.
func findCaddyfile(dir string) string {
	found := ""
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		if e.IsDir() && p != dir && (strings.HasPrefix(e.Name(), ".") || e.Name() == "node_modules" || e.Name() == "vendor" || strings.Count(p[len(dir):], string(filepath.Separator)) > 3) {
			return filepath.SkipDir
		}
		if !e.IsDir() && e.Name() == "Caddyfile" {
			found, _ = filepath.Rel(dir, p)
			return errors.New("found")
		}
		return nil
	})
	return filepath.ToSlash(found)
}
