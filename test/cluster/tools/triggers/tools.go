//go:build tools

// Package tools pins the Tekton Triggers binaries the cluster test runs (the
// controller, the EventListener sink and the core interceptors server), at the
// version generator/triggers validates against.
package tools

import (
	_ "github.com/tektoncd/triggers/cmd/controller"
	_ "github.com/tektoncd/triggers/cmd/eventlistenersink"
	_ "github.com/tektoncd/triggers/cmd/interceptors"
)
