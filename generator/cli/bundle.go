package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tekton-multiarch/tekton-multiarch/generator/bundle"
	"github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

func newBundle(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Tekton bundles of the catalog",
	}
	var configPath, repository string
	var timeout time.Duration
	push := &cobra.Command{
		Use:   "push --repository REGISTRY/PATH",
		Short: "Push every Task and Pipeline as a Tekton bundle; print each by digest",
		Long: "Pushes each Task and Pipeline the configuration generates as a bundle of its own,\n" +
			"tagged <repository>/<name>:<catalog version>, and prints it by digest, one line each:\n" +
			"  <Kind> <name> <repository>/<name>@sha256:...\n" +
			"Credentials come from the docker config (~/.docker/config.json, or $DOCKER_CONFIG/config.json,\n" +
			"with its credential helpers), as docker login and kubectl create secret docker-registry users have them.\n" +
			"The bundles are reproducible: the digests are those `generate` writes into a Pipeline with\n" +
			"references.mode: bundles, whatever registry holds them.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if repository == "" {
				return &exitError{ExitUsage, fmt.Errorf("--repository is required: the registry and path to push to, e.g. registry.example.com/tekton-multiarch")}
			}
			cfg, err := config.Load(configPath)
			if err != nil {
				return &exitError{ExitUsage, err}
			}
			objs, err := catalog.BundleObjects(cfg)
			if err != nil {
				return &exitError{ExitFailed, err}
			}
			for _, o := range objs {
				if _, err := bundle.Tag(repository, o.Name, cfg.Catalog.Version); err != nil {
					return &exitError{ExitUsage, fmt.Errorf("--repository: %w", err)}
				}
			}
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			pushed, err := bundle.Push(ctx, repository, cfg.Catalog.Version, objs)
			for _, p := range pushed {
				fmt.Fprintf(stdout, "%s %s %s\n", p.Object.Kind, p.Object.Name, p.Ref)
			}
			if err != nil {
				return &exitError{ExitFailed, err}
			}
			return nil
		},
	}
	push.Flags().StringVar(&configPath, "config", "", "configuration file (default: the embedded default)")
	push.Flags().StringVar(&repository, "repository", "", "registry and path the bundles go under: <repository>/<name>:<version>")
	push.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up on the registry after this long")
	cmd.AddCommand(push)
	return cmd
}
