package cli

import (
	"github.com/spf13/pflag"

	"github.com/tekton-multiarch/tekton-multiarch/generator/start"
)

// addBuildFlags are start's flags for the build itself (start.BuildOptions),
// each a Pipeline param or workspace.
func addBuildFlags(f *pflag.FlagSet, b *start.BuildOptions) {
	f.StringVar(&b.Target, "target", "", "Dockerfile stage to build (buildah --target; default: the last stage)")
	// StringArray, not StringSlice: a label's value may hold a comma.
	f.StringArrayVar(&b.Labels, "label", nil, "KEY=VALUE label on each image, besides the OCI source and revision ones (repeatable)")
	f.StringArrayVar(&b.Annotations, "annotation", nil, "KEY=VALUE annotation on each image and on the index (repeatable)")
	f.BoolVar(&b.NoPush, "no-push", false, "build-only: build and check every architecture and the index, push nothing (PUSH=false)")
	f.StringVar(&b.CABundle, "ca-bundle", "", "configmap:NAME or secret:NAME holding PEM certificates the registry's TLS is checked against (the ca-bundle workspace)")
	f.StringVar(&b.BuildSecret, "build-secret", "", "Secret whose every key KEY is a buildah build --secret id=KEY (the build-secrets workspace); never in a layer or a log")
}
