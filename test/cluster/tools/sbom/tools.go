//go:build tools

// Package tools pins the SBOM tools of the build Task's sbom steps, as the
// catalog's default images carry them: syft v1.57.2 (anchore/syft:v1.57.2-debug)
// and crane from go-containerregistry v0.22.1
// (gcr.io/go-containerregistry/crane/debug:v0.22.1), the version syft itself
// requires, so both build from one dependency graph. build-images.sh builds
// their cmd packages into the test's syft and crane images.
package tools

import (
	_ "github.com/anchore/syft/cmd/syft"
	_ "github.com/google/go-containerregistry/cmd/crane"
)
