package images

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// RegistryAuth is the credentials a pull sends, from the environment of the
// machine running taledeploy (TALEDEPLOY_REGISTRY_USER and
// TALEDEPLOY_REGISTRY_PASSWORD): they go in the request to the host's engine,
// which keeps them for that pull only; nothing is written on the host. ""
// pulls anonymously.
func RegistryAuth(server string) string {
	user, pass := os.Getenv("TALEDEPLOY_REGISTRY_USER"), os.Getenv("TALEDEPLOY_REGISTRY_PASSWORD")
	if user == "" && pass == "" {
		return ""
	}
	data, _ := json.Marshal(registry.AuthConfig{Username: user, Password: pass, ServerAddress: server})
	return base64.URLEncoding.EncodeToString(data)
}

// Pull has the host's engine pull ref and returns the image's ID.
func Pull(ctx context.Context, eng *client.Client, ref string) (string, error) {
	res, err := eng.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: RegistryAuth(registryOf(ref))})
	if err == nil {
		err = res.Wait(ctx)
	}
	if err != nil {
		return "", fmt.Errorf("pulling %s: %w (TALEDEPLOY_REGISTRY_USER and TALEDEPLOY_REGISTRY_PASSWORD on this machine log in)", ref, err)
	}
	img, err := eng.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("%s after the pull: %w", ref, err)
	}
	return img.ID, nil
}

// registryOf is the registry host of an image reference: its first path
// element when that looks like a host (a dot, a colon or localhost); "" for
// the engine's default registry.
func registryOf(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (first == "localhost" || strings.ContainsAny(first, ".:")) {
		return first
	}
	return "" // the default registry: the engine knows it
}
