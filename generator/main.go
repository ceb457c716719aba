// Command generator writes the tekton-multiarch Tekton catalog from one
// configuration. Run `go run ./generator --help`.
package main

import (
	"os"

	"github.com/tekton-multiarch/tekton-multiarch/generator/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
