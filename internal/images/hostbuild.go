package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/go-archive"
	"github.com/moby/moby/client"
	"github.com/moby/patternmatcher/ignorefile"
)

// Context is a build context as Docker would see it: the folder's files less
// those .dockerignore excludes, as one tar stream. Nothing outside the folder
// is in it, and a file deleted here is not.
func Context(dir, dockerfile string) (io.ReadCloser, error) {
	var excludes []string
	// As BuildKit does: an ignore file beside the Dockerfile, named after it,
	// wins over the context's.
	ignore := filepath.Join(dir, dockerfile+".dockerignore")
	if _, err := os.Stat(ignore); err != nil {
		ignore = filepath.Join(dir, ".dockerignore")
	}
	f, err := os.Open(ignore)
	switch {
	case err == nil:
		excludes, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ignore, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	// As the docker CLI does: the Dockerfile and .dockerignore always go, the
	// builder needs them.
	if len(excludes) > 0 {
		excludes = append(excludes, "!"+filepath.ToSlash(dockerfile), "!.dockerignore")
	}
	return archive.TarWithOptions(dir, &archive.TarOptions{ExcludePatterns: excludes})
}

// BuildOnHost builds one image with the host's engine from a context sent as
// one stream, tagged with tags.
func BuildOnHost(ctx context.Context, eng *client.Client, b *types.BuildConfig, tags []string) error {
	dockerfile := b.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if filepath.IsAbs(dockerfile) {
		rel, err := filepath.Rel(b.Context, dockerfile)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("dockerfile %s is outside the build context %s; use build: local", dockerfile, b.Context)
		}
		dockerfile = rel
	}
	if b.DockerfileInline != "" || len(b.AdditionalContexts) > 0 || len(b.Secrets) > 0 || len(b.SSH) > 0 {
		return errors.New("dockerfile_inline, additional_contexts, secrets and ssh need BuildKit on this machine; use build: local")
	}
	tar, err := Context(b.Context, dockerfile)
	if err != nil {
		return err
	}
	defer tar.Close()
	args := map[string]*string{}
	for k, v := range b.Args {
		args[k] = v
	}
	res, err := eng.ImageBuild(ctx, tar, client.ImageBuildOptions{
		Tags: tags, Dockerfile: filepath.ToSlash(dockerfile), BuildArgs: args, Target: b.Target,
		Labels: b.Labels, Remove: true, ForceRemove: true, NetworkMode: b.Network, ExtraHosts: b.ExtraHosts.AsList(":"),
	})
	if err != nil {
		return fmt.Errorf("docker build on the host: %w", err)
	}
	defer res.Body.Close()
	var last []string
	err = engineMessages(res.Body, func(s string) { last = append(last[max(0, len(last)-9):], s) })
	if err != nil {
		return fmt.Errorf("docker build on the host: %w: %s", err, strings.Join(last, "\n"))
	}
	return nil
}
