package catalog

import (
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
)

// BenchmarkGenerate is `generate` of the default catalog, in memory: build
// every object, Tekton and Triggers validation, lint, render, decode back.
func BenchmarkGenerate(b *testing.B) {
	cfg := config.Default()
	for b.Loop() {
		if _, err := Generate(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func renderables(b *testing.B) []any {
	o, err := NewObjects(config.Default())
	if err != nil {
		b.Fatal(err)
	}
	return []any{o.GitSync, o.Build, o.Manifest, o.Pipeline, o.Example,
		o.Cluster.Loader, o.Cluster.LoaderConfig,
		o.Triggers.EventListener, o.Triggers.Binding, o.Triggers.Template}
}

// BenchmarkRenderOrdered renders the catalog's objects with this project's
// renderer (field order kept, noise pruned, scripts as blocks)...
func BenchmarkRenderOrdered(b *testing.B) {
	objs := renderables(b)
	for b.Loop() {
		for _, o := range objs {
			if _, err := render.YAML(o); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// ...and BenchmarkRenderSigsYAML with the obvious alternative,
// sigs.k8s.io/yaml.Marshal (keys sorted, noise kept), for the ratio.
func BenchmarkRenderSigsYAML(b *testing.B) {
	objs := renderables(b)
	for b.Loop() {
		for _, o := range objs {
			if _, err := yaml.Marshal(o); err != nil {
				b.Fatal(err)
			}
		}
	}
}
