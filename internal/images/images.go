// Package images builds a release's images with the Docker engine of the
// machine running taledeploy, and sends each host only the layers it lacks,
// through the SSH connection taledeploy already holds: no registry anywhere,
// nothing installed on the host, and no build on the host taking CPU from the
// color that serves.
//
// The archive is what `docker save` writes, with the layer files the host
// already has left out. Docker's classic image store loads such an archive:
// it reads a layer's file only when the layer's chain (the layer and every one
// below it) is missing. The containerd image store reads every layer of the
// archive, so a host on it gets them all.
package images

import (
	"archive/tar"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	digest "github.com/opencontainers/go-digest"
)

// Image is one service's image of a release.
type Image struct {
	Service string   `json:"service"`
	ID      string   `json:"id"`     // sha256 of its config: its ID on the classic image store
	Ref     string   `json:"ref"`    // the tag it was saved by, which it has on a host after a load
	Layers  []string `json:"layers"` // diff IDs, base first
	Size    int64    `json:"size"`   // bytes of all its layers
	Arch    string   `json:"arch"`   // CPU architecture it was built for (amd64, arm64)
	// Manifest is the digest of the OCI manifest made for it: its ID on the
	// containerd image store, where it is sent as an OCI layout.
	Manifest string `json:"manifest"`
}

// HostID is the image's ID on the host: the config's digest on the classic
// image store, the manifest's on the containerd store.
func (h *Have) HostID(img Image) string {
	if h.Containerd {
		return img.Manifest
	}
	return img.ID
}

// Release is a release's images, built here and saved to a folder, ready to be
// sent to any number of hosts.
type Release struct {
	Images []Image
	dir    string
	// files are the archive's files in the order docker save wrote them;
	// layerFile maps an image ID and layer index to its file.
	files     []string
	layerFile map[string][]string
	oci       map[string]*ociImage // by image ID
}

// Local is the Docker engine of the machine running taledeploy (DOCKER_HOST
// and the other DOCKER_* variables, as the docker CLI reads them).
func Local() (*client.Client, error) {
	return client.New(client.FromEnv)
}

// LocalAvailable tells whether this machine's Docker engine answers.
func LocalAvailable(ctx context.Context) bool {
	c, err := Local()
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = c.Ping(ctx, client.PingOptions{})
	return err == nil
}

// Save writes the services' images (by their tags here, refs) to a folder and
// reads what each is made of from the archive itself, so that it works on
// either image store of this machine's engine (their image IDs differ; the
// config's digest is the same). Close removes the folder.
func Save(ctx context.Context, local *client.Client, refs map[string]string) (*Release, error) {
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	r := &Release{dir: dir, layerFile: map[string][]string{}, oci: map[string]*ociImage{}}
	if err := r.save(ctx, local, refs); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Release) save(ctx context.Context, local *client.Client, refs map[string]string) error {
	var want []string
	for _, ref := range refs {
		if !slices.Contains(want, ref) {
			want = append(want, ref)
		}
	}
	slices.Sort(want)
	body, err := local.ImageSave(ctx, want)
	if err != nil {
		return fmt.Errorf("docker save on this machine: %w", err)
	}
	defer body.Close()
	if err := r.unpack(body); err != nil {
		return fmt.Errorf("docker save on this machine: %w", err)
	}
	return r.readManifest(refs)
}

// unpack writes the archive's regular files below r.dir; a symlink (docker
// save links a layer that two images share) is written as the file it names.
func (r *Release) unpack(body io.Reader) error {
	tr := tar.NewReader(body)
	links := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name, err := clean(h.Name)
		if err != nil {
			return err
		}
		p := filepath.Join(r.dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			r.files = append(r.files, name)
		case tar.TypeSymlink:
			target, err := clean(path.Join(path.Dir(name), h.Linkname))
			if err != nil {
				return err
			}
			links[name] = target
			r.files = append(r.files, name)
		}
	}
	for name, target := range links {
		p := filepath.Join(r.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		// A hard link: the layer's bytes once on disk, whatever reads it.
		if err := os.Link(filepath.Join(r.dir, filepath.FromSlash(target)), p); err != nil {
			return fmt.Errorf("%s links to %s: %w", name, target, err)
		}
	}
	return nil
}

// clean refuses a name that leaves the archive's folder.
func clean(name string) (string, error) {
	c := path.Clean(strings.TrimSuffix(name, "/"))
	if c == "." || c == ".." || path.IsAbs(c) || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("archive entry %q leaves the archive", name)
	}
	return c, nil
}

// manifestEntry is one image of docker save's manifest.json.
type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// imageConfig is what taledeploy reads of an image's config.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	RootFS       struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// readManifest finds each service's image in the archive by its tag.
func (r *Release) readManifest(refs map[string]string) error {
	data, err := os.ReadFile(filepath.Join(r.dir, "manifest.json"))
	if err != nil {
		return err
	}
	var m []manifestEntry
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	var services []string
	for svc := range refs {
		services = append(services, svc)
	}
	slices.Sort(services)
	for _, svc := range services {
		i := slices.IndexFunc(m, func(e manifestEntry) bool { return slices.Contains(e.RepoTags, refs[svc]) })
		if i < 0 {
			return fmt.Errorf("the saved archive has no image tagged %s (%s's)", refs[svc], svc)
		}
		e := m[i]
		cfgPath, err := clean(e.Config)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(cfgPath)))
		if err != nil {
			return err
		}
		var cfg imageConfig
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("%s's image config: %w", svc, err)
		}
		if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
			return fmt.Errorf("%s's image: %d layers in its config, %d in the archive", svc, len(cfg.RootFS.DiffIDs), len(e.Layers))
		}
		// The config's digest is the image ID on the classic store.
		img := Image{Service: svc, ID: digest.FromBytes(raw).String(), Ref: refs[svc], Layers: cfg.RootFS.DiffIDs, Arch: cfg.Architecture}
		var files []string
		for _, l := range e.Layers {
			c, err := clean(l)
			if err != nil {
				return err
			}
			st, err := os.Stat(filepath.Join(r.dir, filepath.FromSlash(c)))
			if err != nil {
				return err
			}
			img.Size += st.Size()
			files = append(files, c)
		}
		r.layerFile[img.ID] = files
		o, err := r.ociManifest(img, cfgPath, raw, files)
		if err != nil {
			return err
		}
		r.oci[img.ID], img.Manifest = o, o.digest
		r.Images = append(r.Images, img)
	}
	return nil
}

// Close removes the saved archive.
func (r *Release) Close() error {
	if r == nil || r.dir == "" {
		return nil
	}
	return removeTemp(r.dir)
}

// Have is what a host's engine holds already.
type Have struct {
	// Chains holds the chain ID of every layer stack the host's images are
	// made of: a layer can be left out when its chain is there.
	Chains map[string]bool
	IDs    map[string]bool // image IDs
	// Containerd: the engine uses the containerd image store, which loads
	// every layer of a docker save archive, so it is sent an OCI layout.
	Containerd bool
	// API is the engine's API version, as negotiated.
	API  string
	Arch string // its CPU architecture, as images name it (amd64, arm64)
}

// goArch names a kernel's machine as image configs do.
func goArch(machine string) string {
	switch machine {
	case "x86_64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "armv7l", "armv6l":
		return "arm"
	}
	return machine
}

// CheckArch refuses images built for another CPU than the host's: they would
// load, then fail to start with "exec format error" after the transfer.
func (r *Release) CheckArch(have *Have) error {
	for _, img := range r.Images {
		if img.Arch != "" && have.Arch != "" && img.Arch != have.Arch {
			return fmt.Errorf("the images built here are for %s and the host runs %s: build for it (DOCKER_DEFAULT_PLATFORM=linux/%s on this machine; a cross build needs QEMU), or set build: host", img.Arch, have.Arch, have.Arch)
		}
	}
	return nil
}

// HostHas asks the host's engine which images and layers it has: the list of
// its images, then the inspect of the project's own (earlier releases, where
// a new release's layers mostly are), a few at a time. A layer another
// project's image holds is sent again: cheaper than asking about every image
// of a crowded host.
func HostHas(ctx context.Context, eng *client.Client, project string) (*Have, error) {
	have := &Have{Chains: map[string]bool{}, IDs: map[string]bool{}}
	var (
		wg      sync.WaitGroup
		infoErr error
	)
	wg.Go(func() {
		info, err := eng.Info(ctx, client.InfoOptions{})
		if err != nil {
			infoErr = err
			return
		}
		have.Containerd = Containerd(info.Info.DriverStatus)
		have.Arch = goArch(info.Info.Architecture)
		have.API = eng.ClientVersion()
	})
	list, err := eng.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		wg.Wait()
		return nil, err
	}
	var (
		mu   sync.Mutex
		errs []error
		slot = make(chan struct{}, 8)
	)
	for _, s := range list.Items {
		have.IDs[s.ID] = true
		if !slices.ContainsFunc(s.RepoTags, func(t string) bool { return strings.HasPrefix(t, project+"/") }) {
			continue
		}
		wg.Go(func() {
			slot <- struct{}{}
			defer func() { <-slot }()
			res, err := eng.ImageInspect(ctx, s.ID)
			mu.Lock()
			defer mu.Unlock()
			if cerrdefs.IsNotFound(err) {
				return // removed since the list
			}
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, c := range chains(res.RootFS.Layers) {
				have.Chains[c] = true
			}
		})
	}
	wg.Wait()
	if infoErr != nil {
		return nil, infoErr
	}
	return have, errors.Join(errs...)
}

// Containerd tells from an engine's driver status whether it stores images in
// containerd.
func Containerd(status [][2]string) bool {
	for _, kv := range status {
		if kv[0] == "driver-type" && strings.Contains(kv[1], "io.containerd.snapshotter") {
			return true
		}
	}
	return false
}

// chains lists the chain ID of each layer: the digest of the one below's
// chain ID and its diff ID, as the image spec defines it.
func chains(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1] + " " + d).String()
	}
	return out
}

// Plan is what a host is sent.
type Plan struct {
	Files     []string // the archive's files to send, in order
	Bytes     int64    // their size
	Layers    int      // layers sent
	AllLayers int      // layers of the release's images
	AllBytes  int64    // the size of the whole archive
	Nothing   bool     // the host has every image
	entries   []entry
	manifests []string // on the containerd store: the IDs of the images sent
}

// entry is one file of the archive sent: a file of the saved one, or data.
type entry struct {
	name string
	file string // below the release's folder
	data []byte
}

func (r *Release) size(e entry) int64 {
	if e.file == "" {
		return int64(len(e.data))
	}
	st, err := os.Stat(filepath.Join(r.dir, filepath.FromSlash(e.file)))
	if err != nil {
		return 0
	}
	return st.Size()
}

// PlanFor works out which of the archive's files the host lacks.
func (r *Release) PlanFor(have *Have) Plan {
	if have.Containerd {
		return r.planOCI(have)
	}
	var p Plan
	need := map[string]bool{}
	layerFiles := map[string]bool{}
	p.Nothing = true
	for _, img := range r.Images {
		p.AllLayers += len(img.Layers)
		if !have.IDs[img.ID] {
			p.Nothing = false
		}
		cs := chains(img.Layers)
		for i, f := range r.layerFile[img.ID] {
			layerFiles[f] = true
			if !have.IDs[img.ID] && !have.Chains[cs[i]] {
				need[f] = true
			}
		}
	}
	if p.Nothing {
		return p
	}
	for _, f := range r.files {
		st, err := os.Stat(filepath.Join(r.dir, filepath.FromSlash(f)))
		if err != nil {
			continue
		}
		p.AllBytes += st.Size()
		if layerFiles[f] && !need[f] {
			continue
		}
		p.Files = append(p.Files, f)
		p.entries = append(p.entries, entry{name: f, file: f})
		p.Bytes += st.Size()
		if layerFiles[f] {
			p.Layers++
		}
	}
	return p
}

// Send streams the planned archive into the host engine's image load,
// reporting the bytes sent as they go.
func (r *Release) Send(ctx context.Context, eng *client.Client, p Plan, progress func(sent int64)) error {
	if p.Nothing {
		return nil
	}
	pr, pw := io.Pipe()
	wrote := make(chan error, 1)
	go func() {
		err := r.write(pw, p, progress)
		pw.CloseWithError(err)
		wrote <- err
	}()
	err := load(ctx, eng, pr)
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops if the engine stopped reading
	if werr := <-wrote; werr != nil && !errors.Is(werr, io.ErrClosedPipe) {
		return fmt.Errorf("reading the saved images: %w", werr)
	}
	if err != nil && p.manifests != nil {
		// The containerd store keeps an image it could not unpack: the
		// next push would take it as there, with layers it never got.
		for _, id := range p.manifests {
			eng.ImageRemove(context.WithoutCancel(ctx), id, client.ImageRemoveOptions{Force: true})
		}
	}
	return err
}

// load runs the engine's image load on the archive and reads its answer, a
// stream of JSON messages, one of which may be an error.
func load(ctx context.Context, eng *client.Client, archive io.Reader) error {
	res, err := eng.ImageLoad(ctx, archive, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	defer res.Close()
	// The containerd image store reports an image it imported but could
	// not unpack as a line of output, and the load as a success.
	var unpack error
	err = engineMessages(res, func(line string) {
		if strings.HasPrefix(line, "Error unpacking image") && unpack == nil {
			unpack = errors.New(line)
		}
	})
	if err = cmp.Or(err, unpack); err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	return nil
}

// engineMessages reads the stream of JSON messages the engine answers a load
// or a build with, handing each output line to line (if set), and returns the
// error one of them carries.
func engineMessages(r io.Reader, line func(string)) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if s := strings.TrimSpace(msg.Stream); s != "" && line != nil {
			line(s)
		}
		if m := cmp.Or(msg.ErrorDetail.Message, msg.Error); m != "" {
			return errors.New(m)
		}
	}
}

// write writes the plan's archive.
func (r *Release) write(w io.Writer, p Plan, progress func(int64)) error {
	cw := &countingWriter{w: w, report: progress}
	tw := tar.NewWriter(cw)
	dirs := map[string]bool{}
	for _, e := range p.entries {
		f := e.name
		if d := filepath.ToSlash(filepath.Dir(f)); d != "." && !dirs[d] {
			for _, part := range parents(d) {
				if dirs[part] {
					continue
				}
				dirs[part] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: part + "/", Mode: 0o755}); err != nil {
					return err
				}
			}
		}
		if e.file == "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f, Mode: 0o644, Size: int64(len(e.data))}); err != nil {
				return err
			}
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
			continue
		}
		fh, err := os.Open(filepath.Join(r.dir, filepath.FromSlash(e.file)))
		if err != nil {
			return err
		}
		st, err := fh.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f, Mode: 0o644, Size: st.Size()})
		}
		if err == nil {
			_, err = io.Copy(tw, fh)
		}
		fh.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	cw.flush()
	return nil
}

// parents lists d and the folders above it, outermost first.
func parents(d string) []string {
	var out []string
	parts := strings.Split(d, "/")
	for i := range parts {
		out = append(out, strings.Join(parts[:i+1], "/"))
	}
	return out
}

// countingWriter reports the bytes written, at most every 200 ms.
type countingWriter struct {
	w      io.Writer
	n      int64
	last   time.Time
	report func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.report != nil && time.Since(c.last) >= 200*time.Millisecond {
		c.last = time.Now()
		c.report(c.n)
	}
	return n, err
}

func (c *countingWriter) flush() {
	if c.report != nil {
		c.report(c.n)
	}
}
