package stack

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// BuildConfigs reads the build: of the services as Compose would on the host:
// ${...} replaced from the stack's env, the context an absolute local folder.
func (s *Stack) BuildConfigs(services []string) (map[string]*types.BuildConfig, error) {
	file := filepath.Join(s.Root, s.ComposeFile)
	env := types.Mapping{"TALEDEPLOY_PROJECT": s.Project}
	maps.Copy(env, s.Env)
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(file),
		ConfigFiles: []types.ConfigFile{{Filename: file}},
		Environment: env,
	}, func(o *loader.Options) {
		o.SetProjectName(s.Project, true)
		o.SkipConsistencyCheck, o.SkipResolveEnvironment = true, true
		o.Profiles = []string{"*"}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %v", s.ComposeFile, err)
	}
	root, err := realPath(s.Root)
	if err != nil {
		return nil, fmt.Errorf("stack folder: %w", err)
	}
	out := map[string]*types.BuildConfig{}
	for _, name := range services {
		svc, ok := p.Services[name]
		if !ok || svc.Build == nil {
			return nil, fmt.Errorf("%s: service %q has no build section", s.ComposeFile, name)
		}
		// Nothing outside the stack folder goes to a host.
		if svc.Build.Context, err = inside(root, svc.Build.Context); err != nil {
			return nil, fmt.Errorf("build context of %s: %w", name, err)
		}
		out[name] = svc.Build
	}
	return out, nil
}
