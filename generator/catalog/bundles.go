package catalog

import (
	"github.com/tekton-multiarch/tekton-multiarch/generator/bundle"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

// BundleObjects are the catalog's Tasks, then its Pipelines, each as its
// bundle holds it: the YAML of the committed file without its comment
// header. They pass the same validation as Generate's.
func BundleObjects(cfg *config.Config) ([]bundle.Object, error) {
	o, err := NewObjects(cfg)
	if err != nil {
		return nil, err
	}
	if err := validate.Check(o.validateObjects()); err != nil {
		return nil, err
	}
	var objs []bundle.Object
	for _, t := range []struct {
		kind, name string
		obj        any
	}{
		{"Task", o.GitSync.Name, o.GitSync},
		{"Task", o.Build.Name, o.Build},
		{"Task", o.Manifest.Name, o.Manifest},
		{"Pipeline", o.Pipeline.Name, o.Pipeline},
		{"Pipeline", o.MatrixPipeline.Name, o.MatrixPipeline},
	} {
		b, err := bundle.FromObject(t.kind, t.name, t.obj)
		if err != nil {
			return nil, err
		}
		objs = append(objs, b)
	}
	return objs, nil
}
