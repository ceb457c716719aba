//go:build tools

// Package tools pins the buildah the cluster test's buildah image carries, at the
// version of the catalog's default image (quay.io/buildah/stable:v1.40.1);
// build-images.sh builds its cmd/buildah.
package tools

import _ "github.com/containers/buildah/cmd/buildah"
