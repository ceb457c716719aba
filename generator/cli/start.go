package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
	"github.com/tekton-multiarch/tekton-multiarch/generator/start"
)

// ExitInterrupted is the exit code after Ctrl-C while following.
const ExitInterrupted = 130

func newStart(stdout, stderr io.Writer) *cobra.Command {
	var o start.Options
	var configPath, kubeconfig, output string
	var dryRun, follow bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "start --git-url URL --image REGISTRY/REPO:TAG [--ref REF]",
		Short: "Start a multi-arch build on the cluster, each architecture pinned to its nodes",
		Long: "Creates a PipelineRun of the multiarch-build Pipeline with one taskRunSpec per architecture\n" +
			"(nodeSelector kubernetes.io/arch), which `tkn pipeline start` cannot set per task.\n" +
			"Talks to the cluster like kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else in-cluster.",
		Example: "  tekton-multiarch start --git-url https://github.com/me/app --ref main --image registry.example.com/me/app:v1 --follow\n" +
			"  tekton-multiarch start --git-url https://github.com/me/app --image registry.example.com/me/app:v1 --dry-run -o yaml",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				return &exitError{ExitUsage, err}
			}
			if output != "" && output != "yaml" && output != "json" {
				return &exitError{ExitUsage, fmt.Errorf("--output: %q is not a format; use yaml or json", output)}
			}
			if output != "" && !dryRun {
				return &exitError{ExitUsage, errors.New("--output: prints the PipelineRun instead of creating it, so it needs --dry-run")}
			}
			pr, err := start.PipelineRun(cfg, o)
			if err != nil {
				return &exitError{ExitUsage, err}
			}
			if dryRun {
				var b []byte
				if output == "json" {
					b, err = json.MarshalIndent(pr, "", "  ")
					b = append(b, '\n')
				} else {
					b, err = render.YAML(pr)
				}
				if err != nil {
					return &exitError{ExitFailed, err}
				}
				_, err = stdout.Write(b)
				return err
			}

			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			clients, err := start.Connect(kubeconfig)
			if err != nil {
				return &exitError{ExitFailed, err}
			}
			c := clients.Tekton
			ns := pr.Namespace
			if o.Matrix() {
				// Nothing pins a matrix's builds but the policy: without it,
				// the explicit Pipeline with taskRunSpecs, and say so.
				if why := start.ArchPolicyMissing(ctx, clients.Kube); why != "" {
					fb, err := start.Fallback(cfg, o)
					if err != nil {
						return &exitError{ExitFailed, fmt.Errorf("%s: %s cannot pin its builds; %w", why, o.Pipeline, err)}
					}
					fmt.Fprintf(stderr, "%s: %s cannot pin its builds; running %s with a taskRunSpec per architecture instead\n", why, o.Pipeline, pipeline.Name)
					pr, o.Pipeline = fb, pipeline.Name
				} else if err := start.CheckMatrixInstalled(ctx, c, ns); cfg.References.Mode == config.RefNamespace && err != nil {
					return &exitError{ExitFailed, err}
				}
			}
			// In the other modes the resolvers fetch the Pipeline and Tasks:
			// nothing is installed in the namespace to check.
			if !o.Matrix() && cfg.References.Mode == config.RefNamespace {
				if err := start.CheckInstalled(ctx, c, ns, cfg.Architectures); err != nil {
					return &exitError{ExitFailed, err}
				}
			}
			created, err := c.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{})
			if err != nil {
				return &exitError{ExitFailed, fmt.Errorf("creating the PipelineRun in namespace %s: %w", ns, err)}
			}
			name := created.Name
			fmt.Fprintf(stdout, "pipelinerun/%s created in namespace %s\n", name, ns)
			logs := fmt.Sprintf("tkn pipelinerun logs %s -f -n %s", name, ns)
			if !follow {
				fmt.Fprintf(stdout, "follow it: %s\n", logs)
				return nil
			}
			fctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out, err := start.Follow(fctx, clients, ns, name, stdout)
			switch {
			case err != nil && ctx.Err() != nil:
				fmt.Fprintf(stderr, "stopped following; %s goes on. Cancel it with: tkn pipelinerun cancel %s -n %s\n", name, name, ns)
				return &exitError{ExitInterrupted, errors.New("interrupted")}
			case err != nil && errors.Is(err, context.DeadlineExceeded):
				return &exitError{ExitFailed, fmt.Errorf("%s did not finish within --timeout %s; it goes on (full logs: %s)", name, timeout, logs)}
			case err != nil:
				return &exitError{ExitFailed, err}
			case !out.Succeeded:
				return &exitError{ExitFailed, fmt.Errorf("%s failed: %s\nfull logs: %s", name, strings.TrimSuffix(out.Reason, ": "), logs)}
			}
			if out.Digest == "" {
				// Build-only (--no-push): every architecture was built and
				// checked, and the manifest task pushed no index.
				fmt.Fprintf(stdout, "succeeded: built and checked, nothing pushed (build-only)\nfull logs: %s\n", logs)
			} else {
				fmt.Fprintf(stdout, "succeeded: %s@%s\nfull logs: %s\n", out.ImageURL, out.Digest, logs)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.GitURL, "git-url", "", "repository to build (https://, ssh:// or git@host:path)")
	f.StringVar(&o.Ref, "ref", "main", "branch, tag or full 40-character commit SHA")
	f.StringVar(&o.Image, "image", "", "multi-arch tag to push, e.g. registry.example.com/me/app:v1; each architecture goes to <tag>-<arch>")
	f.StringSliceVar(&o.Archs, "arch", nil, "architectures to build (default: all of the catalog's); must match the installed Pipeline")
	f.StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the catalog and the run (default: the configuration's example.namespace)")
	f.StringVar(&o.ServiceAccount, "service-account", "", "ServiceAccount of the run (default: the configuration's example.serviceAccount)")
	f.StringVar(&o.RegistrySecret, "registry-secret", "", "dockerconfigjson Secret for the dockerconfig workspace (default: the configuration's example.registrySecret)")
	f.StringVar(&o.Pipeline, "pipeline", "multiarch-build", "multiarch-build (a taskRunSpec pins each architecture) or multiarch-build-matrix (the --arch platforms chosen at run time; needs examples/cluster/arch-pinning.yaml, else falls back to multiarch-build)")
	f.StringVar(&configPath, "config", "", "the configuration the installed catalog was generated from (default: the embedded one)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
	f.BoolVar(&dryRun, "dry-run", false, "print the PipelineRun, talk to no cluster")
	f.StringVarP(&output, "output", "o", "", "with --dry-run: yaml (default) or json")
	f.BoolVar(&follow, "follow", false, "follow the run per architecture until it ends; exit non-zero if it fails")
	f.DurationVar(&timeout, "timeout", time.Hour, "with --follow: how long to wait for the run to end")
	addBuildFlags(f, &o.Build)
	return cmd
}
