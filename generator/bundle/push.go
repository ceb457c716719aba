package bundle

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Pushed is one bundle in the registry.
type Pushed struct {
	Object Object
	// Ref is the bundle by digest, as a bundles-resolver reference takes it.
	Ref name.Digest
}

// Push pushes each object as a bundle of its own, tagged
// <repository>/<name>:<version>, with the registry credentials docker and
// kubectl users have (authn.DefaultKeychain: $DOCKER_CONFIG/config.json or
// ~/.docker/config.json, with its credential helpers). It stops at the first
// failure, naming the object and the registry's answer; bundles pushed before
// it stay (a registry has no transactions), and are reported in the result.
func Push(ctx context.Context, repository, version string, objs []Object, opts ...remote.Option) ([]Pushed, error) {
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	// Every reference is checked before anything is pushed.
	tags := make([]name.Tag, len(objs))
	for i, o := range objs {
		t, err := Tag(repository, o.Name, version)
		if err != nil {
			return nil, err
		}
		tags[i] = t
	}
	var done []Pushed
	for i, o := range objs {
		img, err := Image(o)
		if err != nil {
			return done, err
		}
		want, err := img.Digest()
		if err != nil {
			return done, err
		}
		if err := remote.Write(tags[i], img, opts...); err != nil {
			return done, fmt.Errorf("pushing the %s %s bundle to %s: %w", o.Kind, o.Name, tags[i], err)
		}
		// What the registry now serves under the tag must be what the
		// generator wrote into the Pipeline's references.
		desc, err := remote.Head(tags[i], opts...)
		if err != nil {
			return done, fmt.Errorf("reading back %s: %w", tags[i], err)
		}
		if desc.Digest != want {
			return done, fmt.Errorf("%s: the registry serves %s, the bundle is %s", tags[i], desc.Digest, want)
		}
		done = append(done, Pushed{Object: o, Ref: tags[i].Context().Digest(want.String())})
	}
	return done, nil
}
