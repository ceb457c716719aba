//go:build tools

// Package tools pins the Tekton Pipelines controller and its remote resolution
// controller (bundles, git, hub, cluster resolvers) the cluster test runs, at the
// same version as the main module's tektoncd/pipeline.
package tools

import (
	_ "github.com/tektoncd/pipeline/cmd/controller"
	_ "github.com/tektoncd/pipeline/cmd/resolvers"
)
