package images

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"taledeploy/internal/stack"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The containerd image store (the default of Engine 29) reads every layer
// file of a docker save archive, so it is sent an OCI image layout instead:
// an index, each image's manifest and config, and only the layer blobs whose
// chain the host lacks. Its import takes a manifest whose layer blobs are
// absent (the engine allows missing content), and its unpack does not read a
// layer whose snapshot (by chain ID) exists. The image's ID there is the
// manifest's digest, made here, so a host that has it is known by its ID.

// ociImage is an image as the OCI layout names it.
type ociImage struct {
	manifest []byte
	digest   string   // the manifest's: the image's ID on the containerd store
	config   string   // the config's file in the saved archive
	layers   []string // each layer's blob digest, base first
}

var blobPath = regexp.MustCompile(`^blobs/sha256/([0-9a-f]{64})$`)

// ociManifest makes an image's OCI manifest from what docker save wrote: its
// config (raw, at cfgFile) and its layer files.
func (r *Release) ociManifest(img Image, cfgFile string, raw []byte, files []string) (*ociImage, error) {
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.Digest(img.ID), Size: int64(len(raw))},
	}
	o := &ociImage{config: cfgFile}
	for i, f := range files {
		p := filepath.Join(r.dir, filepath.FromSlash(f))
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		mediaType, err := layerMediaType(p)
		if err != nil {
			return nil, err
		}
		// A layer.tar of the classic store's archive is the layer itself,
		// uncompressed: its digest is the diff ID. An OCI-shaped archive
		// names each blob by its digest.
		d := img.Layers[i]
		if sm := blobPath.FindStringSubmatch(f); sm != nil {
			d = "sha256:" + sm[1]
		} else if mediaType != ocispec.MediaTypeImageLayer {
			return nil, fmt.Errorf("%s's layer %s is compressed but not named by its digest", img.Service, f)
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest(d), Size: st.Size()})
		o.layers = append(o.layers, d)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	o.manifest, o.digest = data, digest.FromBytes(data).String()
	return o, nil
}

// layerMediaType tells a layer file's compression from its first bytes.
func layerMediaType(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", err
	}
	switch {
	case bytes.HasPrefix(head[:n], []byte{0x1f, 0x8b}):
		return ocispec.MediaTypeImageLayerGzip, nil
	case bytes.HasPrefix(head[:n], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return ocispec.MediaTypeImageLayerZstd, nil
	}
	return ocispec.MediaTypeImageLayer, nil
}

// deltaAPI is the oldest engine API whose containerd image store is known
// here to list and run an image whose skipped layers it has only as
// snapshots: Engine 29's, where that store became the default (tested on API
// 1.56). Older engines on that store (opted in) hide an image with missing
// content, so they are sent every layer.
const deltaAPI = "1.52"

// planOCI is PlanFor for a host on the containerd image store.
func (r *Release) planOCI(have *Have) Plan {
	var p Plan
	delta := stack.APIAtLeast(have.API, deltaAPI)
	p.Nothing = true
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	var blobs []entry
	seen := map[string]bool{}
	add := func(d string, e entry) bool {
		if seen[d] {
			return false
		}
		seen[d] = true
		e.name = "blobs/sha256/" + strings.TrimPrefix(d, "sha256:")
		blobs = append(blobs, e)
		return true
	}
	counted := map[string]bool{}
	for _, img := range r.Images {
		o := r.oci[img.ID]
		p.AllLayers += len(img.Layers)
		for _, f := range append([]string{o.config}, r.layerFile[img.ID]...) {
			if !counted[f] {
				counted[f] = true
				p.AllBytes += r.size(entry{file: f})
			}
		}
		if have.IDs[o.digest] {
			continue
		}
		p.Nothing = false
		p.manifests = append(p.manifests, o.digest)
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(o.digest), Size: int64(len(o.manifest))}
		if named, err := reference.ParseNormalizedNamed(img.Ref); err == nil {
			desc.Annotations = map[string]string{"io.containerd.image.name": named.String()}
			if tagged, ok := named.(reference.Tagged); ok {
				desc.Annotations[ocispec.AnnotationRefName] = tagged.Tag()
			}
		}
		idx.Manifests = append(idx.Manifests, desc)
		add(o.digest, entry{data: o.manifest})
		add(img.ID, entry{file: o.config})
		cs := chains(img.Layers)
		for i, d := range o.layers {
			if delta && have.Chains[cs[i]] {
				continue
			}
			if add(d, entry{file: r.layerFile[img.ID][i]}) {
				p.Layers++
			}
		}
	}
	if p.Nothing {
		return p
	}
	index, _ := json.Marshal(idx)
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	p.entries = append([]entry{{name: ocispec.ImageLayoutFile, data: layout}, {name: ocispec.ImageIndexFile, data: index}}, blobs...)
	for _, e := range p.entries {
		p.Files = append(p.Files, e.name)
		p.Bytes += r.size(e)
	}
	return p
}
