// Package bundle builds and pushes Tekton bundles: OCI images that Tekton's
// bundles resolver reads (github.com/tektoncd/pipeline
// pkg/resolution/resolver/bundle), one layer per object, each layer a tar of
// one file annotated with the object's kind, name and API version.
//
// The images are reproducible: uncompressed layers (so no compressor's output
// can change between Go releases), one tar entry with a fixed header, the
// creation time at the Unix epoch and an empty config. The digest of an
// object's bundle is therefore a function of the object's YAML alone, and the
// generator can write a Pipeline that refers to its Tasks' bundles by digest
// before anything is pushed: Push checks that the registry got that digest.
package bundle

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
)

// The layer annotations Tekton's bundles resolver requires (its
// annotations.go; `tkn bundle push` writes the same).
const (
	AnnotationKind       = "dev.tekton.image.kind"
	AnnotationName       = "dev.tekton.image.name"
	AnnotationAPIVersion = "dev.tekton.image.apiVersion"
)

// MaxObjects is the resolver's limit of objects (layers) in one bundle.
const MaxObjects = 20

// Object is one Tekton object as it goes into a bundle.
type Object struct {
	// Kind as the object's YAML has it: Task, Pipeline.
	Kind string
	Name string
	// APIVersion is the version alone ("v1"), as `tkn bundle push` writes it.
	APIVersion string
	YAML       []byte
}

// Image builds the bundle holding objs, in the order given.
func Image(objs ...Object) (v1.Image, error) {
	if len(objs) == 0 {
		return nil, fmt.Errorf("bundle: no objects")
	}
	if len(objs) > MaxObjects {
		return nil, fmt.Errorf("bundle: %d objects, Tekton's bundles resolver reads at most %d", len(objs), MaxObjects)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, o := range objs {
		if o.Kind == "" || o.Name == "" || o.APIVersion == "" || len(o.YAML) == 0 {
			return nil, fmt.Errorf("bundle: object %q (kind %q) lacks a kind, name, API version or content", o.Name, o.Kind)
		}
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		// The resolver reads the first entry whatever its name; tkn names it after the object.
		if err := tw.WriteHeader(&tar.Header{Name: o.Name, Mode: 0o600, Size: int64(len(o.YAML)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(o.YAML); err != nil {
			return nil, err
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer: static.NewLayer(tb.Bytes(), types.OCIUncompressedLayer),
			// The resolver wants the kind lowercased and singular.
			Annotations: map[string]string{
				AnnotationKind:       strings.ToLower(o.Kind),
				AnnotationName:       o.Name,
				AnnotationAPIVersion: o.APIVersion,
			},
			History: v1.History{Created: v1.Time{Time: time.Unix(0, 0).UTC()}, CreatedBy: "tekton-multiarch bundle"},
		})
		if err != nil {
			return nil, fmt.Errorf("bundle: adding %s %s: %w", o.Kind, o.Name, err)
		}
	}
	return mutate.CreatedAt(img, v1.Time{Time: time.Unix(0, 0).UTC()})
}

// Digest is the digest the bundle of objs has, wherever it is pushed.
func Digest(objs ...Object) (v1.Hash, error) {
	img, err := Image(objs...)
	if err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// Ref is the reference by digest a Pipeline or PipelineRun gives the bundles
// resolver: <repository>/<name>@<digest>. repository is validated by config.
func Ref(repository, objName string, digest v1.Hash) string {
	return strings.TrimSuffix(repository, "/") + "/" + objName + "@" + digest.String()
}

// Tag is where Push puts an object's bundle: <repository>/<name>:<version>.
func Tag(repository, objName, version string) (name.Tag, error) {
	s := strings.TrimSuffix(repository, "/") + "/" + objName + ":" + version
	t, err := name.NewTag(s)
	if err != nil {
		return name.Tag{}, fmt.Errorf("%q is not a valid image reference (--repository %q, object %q, version %q): %w", s, repository, objName, version, err)
	}
	return t, nil
}

// FromObject renders a typed Tekton object (a *v1.Task or *v1.Pipeline) as
// the catalog's YAML files hold it, without their comment header.
func FromObject(kind, objName string, obj any) (Object, error) {
	y, err := render.YAML(obj)
	if err != nil {
		return Object{}, fmt.Errorf("bundle: rendering %s %s: %w", kind, objName, err)
	}
	return Object{Kind: kind, Name: objName, APIVersion: "v1", YAML: y}, nil
}
