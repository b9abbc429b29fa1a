package images

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// RegistryAuth is the credentials a pull of ref sends: from the environment of
// the machine running taledeploy (TALEDEPLOY_REGISTRY_USER and
// TALEDEPLOY_REGISTRY_PASSWORD), for the registry TALEDEPLOY_REGISTRY names
// only, so no other registry ever sees them. They go in the request to the
// host's engine, which keeps them for that pull; nothing is written on the
// host. "" pulls anonymously.
func RegistryAuth(ref string) string {
	user, pass := os.Getenv("TALEDEPLOY_REGISTRY_USER"), os.Getenv("TALEDEPLOY_REGISTRY_PASSWORD")
	server := os.Getenv("TALEDEPLOY_REGISTRY")
	if user == "" && pass == "" || server == "" || registryOf(ref) != registryOf(server+"/x") {
		return ""
	}
	data, _ := json.Marshal(registry.AuthConfig{Username: user, Password: pass, ServerAddress: server})
	return base64.URLEncoding.EncodeToString(data)
}

// Pull has the host's engine pull ref and returns the image's ID.
func Pull(ctx context.Context, eng *client.Client, ref string) (string, error) {
	res, err := eng.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: RegistryAuth(ref)})
	if err == nil {
		err = res.Wait(ctx)
	}
	if err != nil {
		return "", fmt.Errorf("pulling %s: %w (for a private registry, set TALEDEPLOY_REGISTRY to its host, and TALEDEPLOY_REGISTRY_USER and TALEDEPLOY_REGISTRY_PASSWORD, on this machine)", ref, err)
	}
	img, err := eng.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("%s after the pull: %w", ref, err)
	}
	return img.ID, nil
}

// registryOf is the registry host of an image reference, as Docker reads it.
func registryOf(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	return reference.Domain(named)
}
