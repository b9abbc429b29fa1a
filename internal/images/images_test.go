package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// saved writes an archive shaped like docker save's (Engine 20.10): a folder
// per layer, the config, manifest.json; the second image's shared base layer
// is a symlink to the first's.
func saved(t *testing.T) ([]byte, []Image) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name, data string) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	base, app, web := "base-layer-bytes", "app-layer-bytes-changed", "web-layer"
	diff := func(s string) string { return digest.FromString(s).String() }
	cfgApp := `{"architecture":"amd64","rootfs":{"type":"layers","diff_ids":["` + diff(base) + `","` + diff(app) + `"]}}`
	cfgWeb := `{"rootfs":{"type":"layers","diff_ids":["` + diff(base) + `","` + diff(web) + `"]}}`
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "aaa/", Mode: 0o755})
	file("aaa/layer.tar", base)
	file("bbb/layer.tar", app)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "ccc/layer.tar", Linkname: "../aaa/layer.tar"})
	file("ddd/layer.tar", web)
	file("app.json", cfgApp)
	file("web.json", cfgWeb)
	m, _ := json.Marshal([]manifestEntry{{Config: "app.json", RepoTags: []string{"t/app:b"}, Layers: []string{"aaa/layer.tar", "bbb/layer.tar"}},
		{Config: "web.json", RepoTags: []string{"t/web:b"}, Layers: []string{"ccc/layer.tar", "ddd/layer.tar"}}})
	file("manifest.json", string(m))
	tw.Close()
	return buf.Bytes(), []Image{
		{Service: "app", ID: digest.FromString(cfgApp).String(), Layers: []string{diff(base), diff(app)}},
		{Service: "web", ID: digest.FromString(cfgWeb).String(), Layers: []string{diff(base), diff(web)}},
	}
}

func release(t *testing.T) *Release {
	t.Helper()
	data, want := saved(t)
	r := &Release{dir: t.TempDir(), layerFile: map[string][]string{}, oci: map[string]*ociImage{}}
	if err := r.unpack(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := r.readManifest(map[string]string{"app": "t/app:b", "web": "t/web:b"}); err != nil {
		t.Fatal(err)
	}
	// Read from the archive: the configs' digests, their diff IDs.
	for i, img := range r.Images {
		if img.ID != want[i].ID || !slices.Equal(img.Layers, want[i].Layers) || img.Ref != "t/"+img.Service+":b" {
			t.Fatalf("image %d read as %+v, want %+v", i, img, want[i])
		}
	}
	if r.Images[0].Arch != "amd64" || r.Images[1].Arch != "" {
		t.Errorf("architectures %q %q", r.Images[0].Arch, r.Images[1].Arch)
	}
	return r
}

// sentArchive writes the plan's archive and reads back its regular files:
// their names in order, and their contents.
func sentArchive(t *testing.T, r *Release, p Plan) ([]string, map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.write(&buf, p, nil); err != nil {
		t.Fatal(err)
	}
	var names []string
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			names = append(names, h.Name)
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
	return names, files
}

// sentFiles writes the plan's archive and lists its regular files.
func sentFiles(t *testing.T, r *Release, p Plan) []string {
	t.Helper()
	names, files := sentArchive(t, r, p)
	if data, ok := files["ccc/layer.tar"]; ok && string(data) != "base-layer-bytes" {
		t.Errorf("the linked layer was sent as %q", data)
	}
	return names
}

func TestPlanSendsOnlyMissingLayers(t *testing.T) {
	r := release(t)
	app, web := r.Images[0], r.Images[1]
	for _, tc := range []struct {
		name string
		have *Have
		want []string // layer files sent
	}{
		{"empty host", &Have{}, []string{"aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar", "ddd/layer.tar"}},
		{"host has the base", &Have{Chains: map[string]bool{app.Layers[0]: true}}, []string{"bbb/layer.tar", "ddd/layer.tar"}},
		{"host has app's old release: base only", &Have{Chains: map[string]bool{chains(app.Layers)[0]: true, digest.FromString("old").String(): true}}, []string{"bbb/layer.tar", "ddd/layer.tar"}},
		{"host has web", &Have{IDs: map[string]bool{web.ID: true}, Chains: map[string]bool{chains(web.Layers)[0]: true, chains(web.Layers)[1]: true}}, []string{"bbb/layer.tar"}},
		// The app layer alone, over another base, is not its chain: it goes.
		{"same layer over another base", &Have{Chains: map[string]bool{app.Layers[1]: true}}, []string{"aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar", "ddd/layer.tar"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := r.PlanFor(tc.have)
			if p.Nothing {
				t.Fatal("plan sends nothing")
			}
			var layers []string
			for _, f := range sentFiles(t, r, p) {
				if strings.HasSuffix(f, "layer.tar") {
					layers = append(layers, f)
				}
			}
			if !slices.Equal(layers, tc.want) || p.Layers != len(tc.want) {
				t.Errorf("sent layers %v (%d), want %v", layers, p.Layers, tc.want)
			}
			for _, f := range []string{"manifest.json", "app.json", "web.json"} {
				if !slices.Contains(p.Files, f) {
					t.Errorf("%s is not sent", f)
				}
			}
		})
	}
	if p := r.PlanFor(&Have{IDs: map[string]bool{app.ID: true, web.ID: true}}); !p.Nothing || len(p.Files) != 0 {
		t.Errorf("a host with both images is sent %v", p.Files)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, h := range []tar.Header{
		{Typeflag: tar.TypeReg, Name: "../outside"},
		{Typeflag: tar.TypeReg, Name: "/etc/passwd-x"},
		{Typeflag: tar.TypeSymlink, Name: "a/layer.tar", Linkname: "../../x"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&h)
		tw.Close()
		dir := t.TempDir()
		r := &Release{dir: dir + "/in"}
		os.Mkdir(r.dir, 0o700)
		err := r.unpack(&buf)
		if err == nil || !strings.Contains(err.Error(), "leaves the archive") {
			t.Errorf("%s -> %s: want refused, got %v", h.Name, h.Linkname, err)
		}
	}
}

// Registry credentials go to the registry TALEDEPLOY_REGISTRY names, and to
// no other.
func TestRegistryAuth(t *testing.T) {
	t.Setenv("TALEDEPLOY_REGISTRY_USER", "u")
	t.Setenv("TALEDEPLOY_REGISTRY_PASSWORD", "p w")
	t.Setenv("TALEDEPLOY_REGISTRY", "")
	if a := RegistryAuth("127.0.0.1:5000/team/web:1"); a != "" {
		t.Errorf("no TALEDEPLOY_REGISTRY: credentials sent: %q", a)
	}
	t.Setenv("TALEDEPLOY_REGISTRY", "127.0.0.1:5000")
	for ref, sent := range map[string]bool{
		"127.0.0.1:5000/team/web:1": true,
		"127.0.0.1:5001/team/web:1": false,
		"team/web:1":                false,
		"nginx:alpine":              false,
		"registry.example/web":      false,
	} {
		a := RegistryAuth(ref)
		if (a != "") != sent {
			t.Errorf("%s: credentials sent %v, want %v", ref, a != "", sent)
		}
	}
	data, err := base64.URLEncoding.DecodeString(RegistryAuth("127.0.0.1:5000/web"))
	var got map[string]string
	if err != nil || json.Unmarshal(data, &got) != nil || got["username"] != "u" || got["password"] != "p w" || got["serveraddress"] != "127.0.0.1:5000" {
		t.Errorf("auth header %s: %v", data, err)
	}
	t.Setenv("TALEDEPLOY_REGISTRY_USER", "")
	t.Setenv("TALEDEPLOY_REGISTRY_PASSWORD", "")
	if a := RegistryAuth("127.0.0.1:5000/web"); a != "" {
		t.Errorf("no credentials: %q", a)
	}
}

// The context sent to a build on the host is what Docker would see here:
// .dockerignore honoured (the Dockerfile and .dockerignore still go), and
// thousands of files are one stream.
func TestContextHonoursDockerignore(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"Dockerfile":      "FROM scratch\n",
		".dockerignore":   ".env\n*.key\nnode_modules\nDockerfile\n",
		".env":            "SECRET=1\n",
		"deploy.key":      "KEY\n",
		"app/main.go":     "package main\n",
		"node_modules/x":  "x\n",
		"app/keep.key.md": "docs\n",
	}
	for i := range 4600 {
		files[fmt.Sprintf("many/%04d.txt", i)] = "x"
	}
	for name, data := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	rc, err := Context(dir, "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			got[h.Name] = true
		}
	}
	for _, name := range []string{"Dockerfile", ".dockerignore", "app/main.go", "app/keep.key.md", "many/4599.txt"} {
		if !got[name] {
			t.Errorf("%s is not in the context", name)
		}
	}
	for _, name := range []string{".env", "deploy.key", "node_modules/x"} {
		if got[name] {
			t.Errorf("%s is in the context though .dockerignore excludes it", name)
		}
	}
	if len(got) != 4600+4 {
		t.Errorf("%d files in the context, want %d", len(got), 4604)
	}
}

func TestCheckArch(t *testing.T) {
	r := release(t)
	for _, tc := range []struct {
		machine string
		ok      bool
	}{{"x86_64", true}, {"aarch64", false}, {"", true}} {
		err := r.CheckArch(&Have{Arch: goArch(tc.machine)})
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "built here are for amd64 and the host runs arm64") {
			t.Errorf("host %q: %v", tc.machine, err)
		}
	}
}

// A host on the containerd image store is sent an OCI image layout: an
// index naming each image it lacks, their manifests and configs, and the
// layer blobs whose chain it lacks, each named by its content's digest.
func TestPlanOCILayout(t *testing.T) {
	r := release(t)
	app, web := r.Images[0], r.Images[1]
	blob := func(s string) string {
		return "blobs/sha256/" + strings.TrimPrefix(digest.FromString(s).String(), "sha256:")
	}
	for _, tc := range []struct {
		name   string
		have   *Have
		images []string // names in the index
		layers []string // layer blobs sent
	}{
		{"empty host", &Have{Containerd: true, API: "1.56"}, []string{"docker.io/t/app:b", "docker.io/t/web:b"},
			[]string{blob("base-layer-bytes"), blob("app-layer-bytes-changed"), blob("web-layer")}},
		{"host has the base", &Have{Containerd: true, API: "1.56", Chains: map[string]bool{app.Layers[0]: true}}, []string{"docker.io/t/app:b", "docker.io/t/web:b"},
			[]string{blob("app-layer-bytes-changed"), blob("web-layer")}},
		{"host has app", &Have{Containerd: true, API: "1.52", IDs: map[string]bool{app.Manifest: true}, Chains: map[string]bool{chains(app.Layers)[0]: true, chains(app.Layers)[1]: true}},
			[]string{"docker.io/t/web:b"}, []string{blob("web-layer")}},
		// Older engines on that store hide an image with missing content.
		{"engine 28 has the base", &Have{Containerd: true, API: "1.51", Chains: map[string]bool{app.Layers[0]: true}}, []string{"docker.io/t/app:b", "docker.io/t/web:b"},
			[]string{blob("base-layer-bytes"), blob("app-layer-bytes-changed"), blob("web-layer")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := r.PlanFor(tc.have)
			_, files := sentArchive(t, r, p)
			if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
				t.Errorf("oci-layout %q", files["oci-layout"])
			}
			var idx ocispec.Index
			if err := json.Unmarshal(files["index.json"], &idx); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range idx.Manifests {
				names = append(names, m.Annotations["io.containerd.image.name"])
				var man ocispec.Manifest
				if err := json.Unmarshal(files["blobs/sha256/"+m.Digest.Encoded()], &man); err != nil {
					t.Fatalf("manifest %s: %v", m.Digest, err)
				}
				if files["blobs/sha256/"+man.Config.Digest.Encoded()] == nil || len(man.Layers) != 2 || man.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
					t.Errorf("manifest %s: %+v", m.Digest, man)
				}
			}
			if !slices.Equal(names, tc.images) {
				t.Errorf("index names %v, want %v", names, tc.images)
			}
			var layers []string
			for name, data := range files {
				if !strings.HasPrefix(name, "blobs/") {
					continue
				}
				if name != "blobs/sha256/"+digest.FromBytes(data).Encoded() {
					t.Errorf("%s holds content of digest %s", name, digest.FromBytes(data))
				}
				if !strings.HasPrefix(string(data), "{") {
					layers = append(layers, name)
				}
			}
			slices.Sort(layers)
			want := slices.Sorted(slices.Values(tc.layers))
			if !slices.Equal(layers, want) || p.Layers != len(want) {
				t.Errorf("sent layers %v (%d), want %v", layers, p.Layers, want)
			}
		})
	}
	have := &Have{Containerd: true, IDs: map[string]bool{app.Manifest: true, web.Manifest: true}}
	if p := r.PlanFor(have); !p.Nothing {
		t.Errorf("a host with both images is sent %v", p.Files)
	}
	if have.HostID(app) != app.Manifest || (&Have{}).HostID(app) != app.ID {
		t.Errorf("host IDs %s %s", have.HostID(app), (&Have{}).HostID(app))
	}
}

// The containerd image store answers a load whose image it imported but
// could not unpack with a line of output and a success: the send fails, and
// the image is removed, so the next push does not take it as there.
func TestSendFailsOnUnpackError(t *testing.T) {
	r := release(t)
	var removed []string
	version := regexp.MustCompile(`^/v[0-9.]+`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Api-Version", "1.56")
		p := version.ReplaceAllString(req.URL.Path, "")
		switch {
		case p == "/_ping":
			io.WriteString(w, "OK")
		case p == "/images/load":
			io.Copy(io.Discard, req.Body)
			io.WriteString(w, `{"stream":"Loaded image: t/app:b\n"}`+"\n"+`{"stream":"Error unpacking image t/app:b: content digest sha256:aa: not found\n"}`+"\n")
		case req.Method == http.MethodDelete && strings.HasPrefix(p, "/images/"):
			removed = append(removed, strings.TrimPrefix(p, "/images/"))
			io.WriteString(w, "[]")
		default:
			http.NotFound(w, req)
		}
	}))
	defer srv.Close()
	eng, err := client.New(client.WithHost("tcp://" + strings.TrimPrefix(srv.URL, "http://")))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	p := r.PlanFor(&Have{Containerd: true, API: "1.56"})
	err = r.Send(context.Background(), eng, p, nil)
	if err == nil || !strings.Contains(err.Error(), "Error unpacking image t/app:b") {
		t.Fatalf("send: %v", err)
	}
	if !slices.Equal(removed, []string{r.Images[0].Manifest, r.Images[1].Manifest}) {
		t.Errorf("removed %v, want both images sent", removed)
	}
}
