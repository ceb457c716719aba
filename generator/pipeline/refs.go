package pipeline

import (
	"fmt"
	"path"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/bundle"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// Kinds as resolvers name them.
const (
	KindTask     = "task"
	KindPipeline = "pipeline"
)

// TaskRef is how everything the catalog generates refers to the Task name:
// by name in the run's namespace, or through a resolver (references.mode).
func TaskRef(cfg *config.Config, name string) *v1.TaskRef {
	if cfg.References.Mode == config.RefNamespace {
		return &v1.TaskRef{Name: name}
	}
	return &v1.TaskRef{ResolverRef: resolverRef(cfg, KindTask, name)}
}

// PipelineRef is how the example, the samples, the Triggers template and
// start refer to the Pipeline name.
func PipelineRef(cfg *config.Config, name string) *v1.PipelineRef {
	if cfg.References.Mode == config.RefNamespace {
		return &v1.PipelineRef{Name: name}
	}
	return &v1.PipelineRef{ResolverRef: resolverRef(cfg, KindPipeline, name)}
}

// CatalogPath is where the catalog's YAML for kind name is: tasks/<name>/<version>/<name>.yaml.
func CatalogPath(cfg *config.Config, kind, name string) string {
	return path.Join(kind+"s", name, cfg.Catalog.Version, name+".yaml")
}

func resolverRef(cfg *config.Config, kind, name string) v1.ResolverRef {
	r := cfg.References
	p := func(nv ...string) v1.Params {
		var ps v1.Params
		for i := 0; i+1 < len(nv); i += 2 {
			ps = append(ps, v1.Param{Name: nv[i], Value: str(nv[i+1])})
		}
		return ps
	}
	switch r.Mode {
	case config.RefBundles:
		return v1.ResolverRef{Resolver: "bundles", Params: p("bundle", BundleRef(cfg, kind, name), "name", name, "kind", kind)}
	case config.RefGit:
		return v1.ResolverRef{Resolver: "git", Params: p("url", r.Git.URL, "revision", r.Git.Revision, "pathInRepo", r.Git.PathPrefix+CatalogPath(cfg, kind, name))}
	case config.RefHub:
		catalog := r.Hub.TaskCatalog
		if kind == KindPipeline {
			catalog = r.Hub.PipelineCatalog
		}
		return v1.ResolverRef{Resolver: "hub", Params: p("catalog", catalog, "type", "artifact", "kind", kind, "name", name, "version", cfg.Catalog.Version)}
	case config.RefCluster:
		return v1.ResolverRef{Resolver: "cluster", Params: p("kind", kind, "name", name, "namespace", r.Cluster.Namespace)}
	}
	// config.Validate admits no other mode.
	panic(fmt.Sprintf("references.mode %q", r.Mode))
}

// BundleRef is <references.bundles.repository>/<name>@<digest> of the
// bundle `bundle push` makes of the object: its digest is a function of the
// object's YAML (package bundle), so it is known before the push.
func BundleRef(cfg *config.Config, kind, name string) string {
	var obj any
	objKind := "Task"
	switch {
	case kind == KindTask && name == tasks.GitSyncName:
		obj = tasks.GitSync(cfg)
	case kind == KindTask && name == tasks.BuildName:
		obj = tasks.Build(cfg)
	case kind == KindTask && name == tasks.ManifestName:
		obj = tasks.Manifest(cfg)
	case kind == KindPipeline && name == Name:
		obj, objKind = Pipeline(cfg), "Pipeline"
	case kind == KindPipeline && name == MatrixName:
		obj, objKind = MatrixPipeline(cfg), "Pipeline"
	default:
		panic(fmt.Sprintf("no %s %q in the catalog", kind, name))
	}
	o, err := bundle.FromObject(objKind, name, obj)
	if err == nil {
		d, derr := bundle.Digest(o)
		if derr == nil {
			return bundle.Ref(cfg.References.Bundles.Repository, name, d)
		}
		err = derr
	}
	// Typed objects always render and small images always hash.
	panic(fmt.Sprintf("bundle of %s %s: %v", kind, name, err))
}
