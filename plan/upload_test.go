package plan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"taledeploy/internal/host"
	"taledeploy/internal/host/hosttest"
	"taledeploy/internal/stack"
	"taledeploy/internal/stack/stacktest"
	"testing"
)

func TestRemotePathStaysInsideRemoteDir(t *testing.T) {
	for _, tc := range []struct {
		remoteDir, rel, want string // want "" means refused
	}{
		{"/srv/tale", "compose.yml", "/srv/tale/compose.yml"},
		{"/srv/tale", "services/db/Dockerfile", "/srv/tale/services/db/Dockerfile"},
		{"/srv/tale", "a/./b", "/srv/tale/a/b"},
		{"/srv/tale", "a/../b", "/srv/tale/b"},
		{"/srv/tale", "../x", ""},
		{"/srv/tale", "a/../../x", ""},
		{"/srv/tale", "../tale2/x", ""}, // a sibling that shares the prefix
		{"/srv/tale", "..", ""},
		{"/srv/tale", ".", ""},
		{"/srv/tale", "", ""},
		{"/srv/tale", "/etc/passwd", ""},
		{"/", "etc/passwd", ""},
		{"srv/tale", "compose.yml", ""},
		{"/srv/../etc", "passwd", ""},
		{"/srv/tale/", "compose.yml", ""},
		{"", "compose.yml", ""},
	} {
		s := &stack.Stack{RemoteDir: tc.remoteDir}
		got, err := s.RemotePath(tc.rel)
		switch {
		case tc.want == "" && !errors.Is(err, stack.ErrBadInput):
			t.Errorf("remote_dir %q, %q: got %q, %v; want it refused", tc.remoteDir, tc.rel, got, err)
		case tc.want != "" && (got != tc.want || err != nil):
			t.Errorf("remote_dir %q, %q: got %q, %v; want %q", tc.remoteDir, tc.rel, got, err, tc.want)
		}
	}
}

// stackDir makes a stack folder with a compose file and one build context,
// services/app, and returns it with a folder outside it that holds a secret.
func stackDir(t *testing.T) (root, outside string) {
	root, outside = t.TempDir(), t.TempDir()
	write := func(p, data string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "compose.yml"), "services:\n  app:\n    build: services/app\n")
	write(filepath.Join(root, "services/app/Dockerfile"), "FROM scratch\n")
	write(filepath.Join(root, "services/proxy/Caddyfile"), ":80 {\n\treverse_proxy app:8080\n}\n")
	write(filepath.Join(outside, "app/Dockerfile"), "FROM scratch\n")
	write(filepath.Join(outside, "id_ed25519"), "SECRET KEY\n")
	return root, outside
}

// appStack's app is stateful: the build contexts a push uploads are those of
// stateful services (a stateless service's goes as one stream to the build).
func appStack(root, context string) *stack.Stack {
	return &stack.Stack{Project: "tale", RemoteDir: "/srv/tale", ComposeFile: "compose.yml", Caddyfile: "services/proxy/Caddyfile",
		Root: root, Stateful: []string{"app"},
		Compose: &stack.Compose{Services: map[string]*stack.ComposeService{"app": {Name: "app", BuildContext: context}}}}
}

func TestReleaseFilesSymlinks(t *testing.T) {
	link := func(t *testing.T, target, name string) {
		os.MkdirAll(filepath.Dir(name), 0o755)
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, root, outside string) // may change the stack folder
		context string
		want    []string // files uploaded below the contexts; nil when refused
		errWant string   // in the error when refused
	}{
		{"plain", func(*testing.T, string, string) {}, "services/app",
			[]string{"services/app/Dockerfile"}, ""},
		{"link to a file in the stack is not uploaded", func(t *testing.T, root, _ string) {
			link(t, "Dockerfile", filepath.Join(root, "services/app/Dockerfile.link"))
		}, "services/app", []string{"services/app/Dockerfile"}, ""},
		{"dangling link is not uploaded", func(t *testing.T, root, _ string) {
			link(t, "gone", filepath.Join(root, "services/app/.#lock"))
		}, "services/app", []string{"services/app/Dockerfile"}, ""},
		{"link to a file outside", func(t *testing.T, root, outside string) {
			link(t, filepath.Join(outside, "id_ed25519"), filepath.Join(root, "services/app/key"))
		}, "services/app", nil, "services/app/key: "},
		{"relative link to a file outside", func(t *testing.T, root, outside string) {
			rel, _ := filepath.Rel(filepath.Join(root, "services/app"), filepath.Join(outside, "id_ed25519"))
			link(t, rel, filepath.Join(root, "services/app/key"))
		}, "services/app", nil, "services/app/key: "},
		{"link to a folder outside", func(t *testing.T, root, outside string) {
			link(t, outside, filepath.Join(root, "services/app/vendor"))
		}, "services/app", nil, "services/app/vendor: "},
		{"context is a link to a folder in the stack", func(t *testing.T, root, _ string) {
			link(t, "app", filepath.Join(root, "services/app2"))
		}, "services/app2", []string{"services/app2/Dockerfile"}, ""},
		{"context is a link to a folder outside", func(t *testing.T, root, outside string) {
			link(t, filepath.Join(outside, "app"), filepath.Join(root, "services/app2"))
		}, "services/app2", nil, "outside the stack folder"},
		{"a folder on the way is a link outside", func(t *testing.T, root, outside string) {
			link(t, outside, filepath.Join(root, "ext"))
		}, "ext/app", nil, "outside the stack folder"},
		{"compose file is a link outside", func(t *testing.T, root, outside string) {
			os.Remove(filepath.Join(root, "compose.yml"))
			link(t, filepath.Join(outside, "id_ed25519"), filepath.Join(root, "compose.yml"))
		}, "services/app", nil, "compose file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := stackDir(t)
			tc.prepare(t, root, outside)
			files, err := appStack(root, tc.context).ReleaseFiles()
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.errWant) || !strings.Contains(err.Error(), "outside the stack folder") {
					t.Fatalf("releaseFiles = %d files, %v; want a refusal with %q", len(files), err, tc.errWant)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range files {
				if (strings.HasPrefix(f.Rel, "services/") || strings.HasPrefix(f.Rel, "ext/")) && f.Rel != "services/proxy/Caddyfile" {
					got = append(got, f.Rel)
				}
				if strings.Contains(string(f.Data), "SECRET") {
					t.Errorf("uploads %s with the secret from outside", f.Rel)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("uploads %q, want %q", got, tc.want)
			}
		})
	}
}

// The last guard: whatever reaches the upload, nothing is written outside
// remote_dir, and nothing at all when one path would be.
func TestUploadWritesNothingOutsideRemoteDir(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(s *stack.Stack, base string)
	}{
		{"remote_dir is the root", func(s *stack.Stack, _ string) { s.RemoteDir = "/" }},
		{"remote_dir is relative", func(s *stack.Stack, _ string) { s.RemoteDir = "srv/tale" }},
		{"remote_dir climbs", func(s *stack.Stack, _ string) { s.RemoteDir = "/srv/tale/../../etc" }},
		// Inside the stack folder here, but above remote_dir on the host.
		{"compose file climbs back in", func(s *stack.Stack, base string) { s.ComposeFile = "../" + base + "/compose.yml" }},
		{"build context climbs back in", func(s *stack.Stack, base string) {
			s.Compose.Services["app"].BuildContext = "../" + base + "/services/app"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := stackDir(t)
			s := appStack(root, "services/app")
			tc.change(s, filepath.Base(root))
			fc := &hosttest.Fake{}
			d := &Deployer{Host: fc, Stack: s}
			if _, err := upload(context.Background(), d.Host, d.Stack); !errors.Is(err, stack.ErrBadInput) {
				t.Fatalf("upload: %v, want a refusal", err)
			}
			if got := fc.Touched(); len(got) > 0 || len(fc.Cmds) > 0 {
				t.Errorf("the host was changed: %q, commands %d", got, len(fc.Cmds))
			}
		})
	}
}

func TestUploadWritesBelowRemoteDir(t *testing.T) {
	root, _ := stackDir(t)
	fc := &hosttest.Fake{}
	d := &Deployer{Host: fc, Stack: appStack(root, "services/app")}
	if _, err := upload(context.Background(), d.Host, d.Stack); err != nil {
		t.Fatal(err)
	}
	for _, p := range fc.Touched() {
		if !strings.HasPrefix(p, "/srv/tale/") {
			t.Errorf("wrote %s, outside /srv/tale", p)
		}
	}
	if fc.Files["/srv/tale/services/app/Dockerfile"] == nil || fc.Files["/srv/tale/.taledeploy/env/stack.env"] == nil {
		t.Errorf("missing uploads: %q", fc.Touched())
	}
}

// A push uploads only what changed, judged without hashing on the host: one
// find listing against the last upload's manifest. A file changed on the host
// after that upload, or missing there, is sent again.
func TestUploadSendsOnlyChanges(t *testing.T) {
	root, _ := stackDir(t)
	fc := &hosttest.Fake{}
	fc.Reply = func(argv []string) ([]byte, error) {
		if argv[0] == "find" {
			return fc.Find(argv)
		}
		return nil, fmt.Errorf("unexpected command %q", argv)
	}
	upload := func() (sent []string, msg string) {
		t.Helper()
		fc.Ops, fc.Cmds = nil, nil
		d := &Deployer{Host: fc, Stack: appStack(root, "services/app")}
		msg, err := upload(context.Background(), d.Host, d.Stack)
		if err != nil {
			t.Fatal(err)
		}
		// One listing, and one command that makes the stack's folders and
		// reads the manifest: nothing is hashed or read whole on the host.
		for _, c := range fc.Cmds {
			if _, asks, ok := host.IsFacts(c.Argv); ok {
				for i := 0; i < len(asks); i++ {
					switch asks[i] {
					case "mkdir":
						i += 2
					case "cat":
						if i++; asks[i] != "/srv/tale/.taledeploy/uploads.json" {
							t.Errorf("upload read %s on the host", asks[i])
						}
					default:
						t.Errorf("upload asked %q of the host", asks[i:])
					}
				}
			} else if c.Argv[0] != "find" {
				t.Errorf("upload ran %q on the host", c.Argv)
			}
		}
		if len(fc.Cmds) > 2 {
			t.Errorf("upload ran %d commands, want a listing and one more", len(fc.Cmds))
		}
		for _, op := range fc.Ops {
			if p, ok := strings.CutPrefix(op, "write "); ok && p != "/srv/tale/.taledeploy/uploads.json" {
				sent = append(sent, strings.TrimPrefix(p, "/srv/tale/"))
			}
		}
		slices.Sort(sent)
		return sent, msg
	}
	all := []string{".taledeploy/env/stack.env", "compose.blue.yml", "compose.green.yml", "compose.stateful.yml", "compose.yml", "services/app/Dockerfile", "services/proxy/Caddyfile"}
	if got, _ := upload(); !slices.Equal(got, all) {
		t.Fatalf("first upload sent %q, want %q", got, all)
	}
	if got, msg := upload(); len(got) > 0 || msg != "0 of 7 files changed (0B)" {
		t.Errorf("second upload sent %q (%s), want nothing", got, msg)
	}
	if slices.Contains(fc.Ops, "write /srv/tale/.taledeploy/uploads.json") {
		t.Errorf("an upload of nothing rewrote the manifest")
	}

	// Changed here: only that file goes.
	os.WriteFile(filepath.Join(root, "services/app/Dockerfile"), []byte("FROM scratch\nCOPY x /\n"), 0o644)
	if got, _ := upload(); !slices.Equal(got, []string{"services/app/Dockerfile"}) {
		t.Errorf("after a local change sent %q", got)
	}
	// Changed on the host after the upload (same size, later time): sent again.
	fc.Touch("/srv/tale/compose.yml")
	if got, _ := upload(); !slices.Equal(got, []string{"compose.yml"}) {
		t.Errorf("after a change on the host sent %q", got)
	}
	// Deleted on the host: sent again.
	fc.Remove(context.Background(), "/srv/tale/services/app")
	if got, _ := upload(); !slices.Equal(got, []string{"services/app/Dockerfile"}) {
		t.Errorf("after a deletion on the host sent %q", got)
	}
	// No manifest (a host set up by an older version): everything is sent.
	fc.Remove(context.Background(), "/srv/tale/.taledeploy/uploads.json")
	if got, _ := upload(); !slices.Equal(got, all) {
		t.Errorf("without a manifest sent %q, want %q", got, all)
	}
}

func TestStampAfter(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"10.5", "10.4", true}, {"10.4", "10.5", false}, {"10.5", "10.5", false},
		{"10.50", "10.5", false}, {"10.51", "10.5", true}, {"9.9", "10.0", false},
		{"100.0", "99.9", true}, {"10", "10.0", false},
	} {
		a, b := parseFind([]byte(tc.a + " 1 644 /a\n"))["/a"].mtime, parseFind([]byte(tc.b + " 1 644 /a\n"))["/a"].mtime
		if got := a.after(b); got != tc.want {
			t.Errorf("%s after %s = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// Context files reach the host as 0644 or 0755, whatever their mode here: a
// world-writable file must not become one on the server.
func TestUploadModes(t *testing.T) {
	root, _ := stackDir(t)
	for name, mode := range map[string]os.FileMode{"open": 0o777, "private": 0o600, "script": 0o700, "plain": 0o664} {
		p := filepath.Join(root, "services/app", name)
		os.WriteFile(p, []byte(name), 0o600)
		os.Chmod(p, mode)
	}
	files, err := appStack(root, "services/app").ReleaseFiles()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{"open": 0o755, "private": 0o644, "script": 0o755, "plain": 0o644, "Dockerfile": 0o644}
	for _, f := range files {
		if m, ok := want[filepath.Base(f.Rel)]; ok && f.Mode != m {
			t.Errorf("%s is uploaded with mode %o, want %o", f.Rel, f.Mode, m)
		}
	}
}

// With `build: .`, the inventory and the env files beside the compose file are
// in the build context: a stateless service's context is never uploaded (it
// goes to the build as one stream), so neither are they (nor shown by plan).
func TestUploadLeavesSecretsBehind(t *testing.T) {
	inv := strings.Replace(stacktest.Inventory, "      env:\n", "      env_files: [.env.prod]\n      env:\n", 1)
	compose := strings.NewReplacer("build: services/platform", "build: .", "build: services/rag", "image: rag", "build: services/db", "image: postgres").Replace(stacktest.Compose)
	p := stacktest.Write(t, inv, compose)
	dir := filepath.Dir(p)
	os.WriteFile(filepath.Join(dir, ".env.prod"), []byte("DB_PASSWORD=planted-file-secret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	i, err := stack.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := i.Env("demo")
	files, err := e.StackFor("one").ReleaseFiles()
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, f := range files {
		rels = append(rels, f.Rel)
		if strings.Contains(string(f.Data), "planted-file-secret") || strings.Contains(string(f.Data), "s3cret") && f.Rel != ".taledeploy/env/stack.env" {
			t.Errorf("%s carries a secret", f.Rel)
		}
	}
	if slices.Contains(rels, "Dockerfile") || slices.Contains(rels, "inventory.yaml") || slices.Contains(rels, ".env.prod") {
		t.Errorf("uploads %q", rels)
	}
}
