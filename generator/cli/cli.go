// Package cli is the generator's command line: generate, config.
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1 // a failure, or --check found stale files
	ExitUsage  = 2 // bad flags or a bad configuration
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run executes the command line and returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "error:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// cobra's own errors are about flags and arguments.
	return ExitUsage
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "tekton-multiarch",
		Short:         "Generate the tekton-multiarch Tekton catalog: native multi-arch image builds with buildah",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newGenerate(stdout), newConfig(stdout), newStart(stdout, stderr), newBundle(stdout))
	return root
}

func newConfig(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the default configuration, commented, to start your own from",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := stdout.Write(config.DefaultYAML())
			return err
		},
	}
}

func newGenerate(stdout io.Writer) *cobra.Command {
	var configPath, out string
	var check bool
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write tasks/, pipelines/ and examples/ from a configuration (default: the embedded one)",
		Long: "Renders every Task, the Pipeline, their READMEs and samples, and the examples, in memory;\n" +
			"validates them with Tekton's own validation; then writes them all, or nothing.\n" +
			"With --check it writes nothing and exits 1 with a diff when the files on disk are stale.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				// A bad or unreadable configuration is the caller's to fix.
				return &exitError{ExitUsage, err}
			}
			files, err := catalog.Generate(cfg)
			if err != nil {
				return &exitError{ExitFailed, err}
			}
			if check {
				diff, err := render.Check(out, files, catalog.Owned)
				if err != nil {
					return &exitError{ExitFailed, err}
				}
				if diff != "" {
					fmt.Fprint(stdout, diff)
					return &exitError{ExitFailed, errors.New("generated files are stale: run `make generate` and commit the result")}
				}
				fmt.Fprintf(stdout, "%d generated files are up to date\n", len(files))
				return nil
			}
			if err := render.Write(out, files, catalog.Owned); err != nil {
				return &exitError{ExitFailed, fmt.Errorf("writing %s: %w", out, err)}
			}
			fmt.Fprintf(stdout, "wrote %d files under %s\n", len(files), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (default: the embedded default; see `generator config`)")
	cmd.Flags().StringVar(&out, "out", ".", "directory to write tasks/, pipelines/ and examples/ under")
	cmd.Flags().BoolVar(&check, "check", false, "write nothing; exit 1 and print a diff if the files under --out are stale")
	return cmd
}
