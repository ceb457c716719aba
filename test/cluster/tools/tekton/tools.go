//go:build tools

// Package tools pins the Tekton Pipelines controller the cluster test runs, at the
// same version as the main module's tektoncd/pipeline.
package tools

import _ "github.com/tektoncd/pipeline/cmd/controller"
