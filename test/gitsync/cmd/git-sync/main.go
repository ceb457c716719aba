// Command git-sync is the git-sync v4 stand-in of package gitsync as a program
// of its own: test/cluster/build-images.sh compiles it (CGO_ENABLED=0) to
// /git-sync in the cluster test's git-sync image, where the real image has
// git-sync. It needs git on PATH.
package main

import (
	"os"

	"github.com/tekton-multiarch/tekton-multiarch/test/gitsync"
)

func main() {
	os.Exit(gitsync.Main(os.Args[1:], os.Stdout, os.Stderr))
}
