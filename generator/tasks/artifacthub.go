package tasks

import (
	"maps"

	"sigs.k8s.io/yaml"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// ArtifactHubAnnotations are the artifacthub.io/* annotations Artifact Hub's
// Tekton tracker reads (github.com/artifacthub/hub,
// internal/tracker/source/tekton; docs: topics/annotations/tekton). The
// tekton.dev/* ones it reads too (displayName, tags, platforms,
// pipelines.minVersion) every object has already. Empty settings add none.
func ArtifactHubAnnotations(cfg *config.Config) map[string]string {
	a := cfg.ArtifactHub
	out := map[string]string{"artifacthub.io/category": a.Category}
	if a.License != "" {
		out["artifacthub.io/license"] = a.License
	}
	if a.Provider != "" {
		out["artifacthub.io/provider"] = a.Provider
	}
	if a.SourceURL != "" {
		// A YAML list of name/url, as the tracker unmarshals it.
		out["artifacthub.io/links"] = mustYAML([]map[string]string{{"name": "catalog", "url": a.SourceURL}})
	}
	if len(a.Owners) > 0 {
		out["artifacthub.io/maintainers"] = mustYAML(a.Owners)
	}
	return out
}

// WithArtifactHub adds cfg's Artifact Hub annotations to annotations.
func WithArtifactHub(cfg *config.Config, annotations map[string]string) map[string]string {
	maps.Copy(annotations, ArtifactHubAnnotations(cfg))
	return annotations
}

func mustYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		// Lists of strings and of Owner always marshal.
		panic(err)
	}
	return string(b)
}
