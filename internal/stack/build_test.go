package stack

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"taledeploy/internal/stack/stacktest"
)

// Where each stateless service's image comes from, by build mode: built here,
// built on the host, or pulled (a service with only image:, or every one with
// build: none), and which build contexts go to the host.
func TestBuildModes(t *testing.T) {
	compose := strings.Replace(stacktest.Compose, "  rag:\n    build: services/rag\n", "  rag:\n    image: registry.example:5000/team/rag:${RAG_TAG:-1}\n", 1)
	inv := strings.Replace(stacktest.Inventory, "      project: tale", "      project: tale\n      build: local", 1)
	file := stacktest.Write(t, inv, compose)
	for _, svc := range []string{"db", "platform"} {
		dir := filepath.Join(filepath.Dir(file), "services", svc)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	}
	loaded, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	env, err := loaded.Env("demo")
	if err != nil {
		t.Fatal(err)
	}
	s := env.StackFor("one")
	if s.Build != BuildLocal || s.KeepReleases != 3 {
		t.Fatalf("build %q, keep_releases %d", s.Build, s.KeepReleases)
	}
	for _, tc := range []struct {
		build         string
		hostBuilt     []string
		pulled        []string
		uploadsPlatfm bool // never now: a stateless context goes to the build as a stream
	}{
		{BuildLocal, nil, []string{"rag"}, false},
		{BuildHost, []string{"platform"}, []string{"rag"}, false},
		{BuildNone, nil, []string{"platform", "rag"}, false},
	} {
		c := *s
		c.Build = tc.build
		if got := c.HostBuilt(); !slices.Equal(got, tc.hostBuilt) {
			t.Errorf("%s: host builds %v, want %v", tc.build, got, tc.hostBuilt)
		}
		if got := c.Pulled(); !slices.Equal(got, tc.pulled) {
			t.Errorf("%s: pulls %v, want %v", tc.build, got, tc.pulled)
		}
		files, err := c.ReleaseFiles()
		if err != nil {
			t.Fatal(err)
		}
		var platform, db bool
		for _, f := range files {
			platform = platform || strings.HasPrefix(f.Rel, "services/platform/")
			db = db || strings.HasPrefix(f.Rel, "services/db/")
		}
		if platform != tc.uploadsPlatfm || !db {
			t.Errorf("%s: uploads platform's context %v (want %v), db's %v (want true: stateful ones build on the host)", tc.build, platform, tc.uploadsPlatfm, db)
		}
	}
	if ref, err := s.PullRef("rag"); err != nil || ref != "registry.example:5000/team/rag:1" {
		t.Errorf("rag pulls %q, %v", ref, err)
	}
	s.Env = map[string]string{"RAG_TAG": "7"}
	if ref, _ := s.PullRef("rag"); ref != "registry.example:5000/team/rag:7" {
		t.Errorf("with RAG_TAG=7 rag pulls %q", ref)
	}
	if _, err := s.PullRef("platform"); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), `service "platform" has no image: to pull`) {
		t.Errorf("platform with build: none: %v", err)
	}
}

func TestBuildRejected(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{"      project: tale", "      project: tale\n      build: laptop", `stack.build "laptop": use local`},
		{"      project: tale", "      project: tale\n      keep_releases: -1", "stack.keep_releases -1"},
		{"        port: 2222", "        port: 2222\n        build: remote", `host one: build "remote"`},
	} {
		_, err := Load(stacktest.Write(t, strings.Replace(stacktest.Inventory, tc.old, tc.new, 1), stacktest.Compose))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.new, err, tc.want)
		}
	}
}
