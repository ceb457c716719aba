// Package start runs a multi-arch build on a cluster: it makes the same
// PipelineRun as the examples (per-architecture taskRunSpecs, which tkn
// cannot set), checks the catalog is installed, creates the run and follows
// it.
package start

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
)

// Options are the start command's flags.
type Options struct {
	GitURL         string
	Ref            string
	Image          string
	Archs          []string // names (arm64), IDs (arm-v7) or platforms (linux/arm/v7); empty: all configured
	Namespace      string
	ServiceAccount string
	RegistrySecret string
	// Pipeline is pipeline.Name (default) or pipeline.MatrixName.
	Pipeline string
	// Build are the build's own options (build.go).
	Build BuildOptions
}

// Matrix is whether the run is of the Pipeline that takes its platforms at
// run time.
func (o Options) Matrix() bool { return o.Pipeline == pipeline.MatrixName }

// FlagError is bad input, named by its flag. The command exits 2 on it.
type FlagError struct {
	Flag, Message string
}

func (e *FlagError) Error() string { return "--" + e.Flag + ": " + e.Message }

var (
	// A tag such as 20240115 is all hex, so an abbreviated-looking SHA is not
	// refused here: the clone step says so if git-sync cannot fetch it.
	gitURL = regexp.MustCompile(`^((https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$`)
)

// Resolve checks every flag against the catalog's configuration, before any
// API call, and returns what the PipelineRun is made of.
func (o Options) Resolve(cfg *config.Config) (pipeline.RunOptions, error) {
	fail := func(flag, format string, args ...any) (pipeline.RunOptions, error) {
		return pipeline.RunOptions{}, &FlagError{flag, fmt.Sprintf(format, args...)}
	}
	switch {
	case strings.TrimSpace(o.GitURL) == "":
		return fail("git-url", "empty; give the repository to build, e.g. https://github.com/me/app.git")
	case !gitURL.MatchString(o.GitURL):
		return fail("git-url", "%q is not a git URL; use https://host/owner/repo.git, ssh://git@host/owner/repo.git or git@host:owner/repo.git", o.GitURL)
	}
	switch {
	case strings.TrimSpace(o.Ref) == "":
		return fail("ref", "empty; give a branch, a tag or a full 40-character commit SHA")
	case strings.ContainsAny(o.Ref, " \t\n~^:?*[\\") || strings.Contains(o.Ref, ".."):
		return fail("ref", "%q is not a valid git ref", o.Ref)
	}
	if msg := config.TaggedImageProblem(o.Image); msg != "" {
		return fail("image", "%s", msg)
	}
	ns := o.Namespace
	if ns == "" {
		ns = cfg.Example.Namespace
	}
	for _, m := range validation.IsDNS1123Label(ns) {
		return fail("namespace", "%q: %s", ns, m)
	}
	for _, f := range []struct{ flag, v string }{{"service-account", o.ServiceAccount}, {"registry-secret", o.RegistrySecret}} {
		if f.v == "" {
			continue
		}
		for _, m := range validation.IsDNS1123Subdomain(f.v) {
			return fail(f.flag, "%q: %s", f.v, m)
		}
	}

	if o.Pipeline != "" && o.Pipeline != pipeline.Name && o.Pipeline != pipeline.MatrixName {
		return fail("pipeline", "%q is not a Pipeline of this catalog; use %s (explicit per-architecture tasks, pinned by taskRunSpecs) or %s (platforms chosen at run time, needs the arch-pinning policy)", o.Pipeline, pipeline.Name, pipeline.MatrixName)
	}
	archs := cfg.Architectures
	if len(o.Archs) > 0 {
		var chosen []config.Architecture
		for _, want := range o.Archs {
			i := slices.IndexFunc(cfg.Architectures, func(a config.Architecture) bool {
				return want == a.ID() || want == a.Platform() || want == strings.TrimPrefix(a.Platform(), "linux/") ||
					(want == a.Name && a.Variant == "")
			})
			if i < 0 {
				return fail("arch", "%q is not an architecture of this catalog; it builds %s", want, ids(cfg.Architectures))
			}
			if slices.ContainsFunc(chosen, func(a config.Architecture) bool { return a.ID() == cfg.Architectures[i].ID() }) {
				return fail("arch", "%q is listed twice", want)
			}
			chosen = append(chosen, cfg.Architectures[i])
		}
		// The Pipeline runs every build-<arch> task: a run cannot leave one
		// out, and an unpinned build would land on any node.
		if len(chosen) != len(cfg.Architectures) && !o.Matrix() {
			return fail("arch", "the Pipeline builds %s and a run cannot skip one; to build fewer, use --pipeline %s (needs the arch-pinning policy) or regenerate the catalog with a configuration listing only those", ids(cfg.Architectures), pipeline.MatrixName)
		}
		archs = chosen
	}
	sa, secret := cfg.Example.ServiceAccount, cfg.Example.RegistrySecret
	if o.ServiceAccount != "" {
		sa = o.ServiceAccount
	}
	if o.RegistrySecret != "" {
		secret = o.RegistrySecret
	}
	return pipeline.RunOptions{
		GenerateName:   pipeline.Name + "-",
		Namespace:      ns,
		GitURL:         o.GitURL,
		GitRef:         o.Ref,
		Image:          o.Image,
		RegistrySecret: secret,
		ServiceAccount: sa,
		Architectures:  archs,
		Refs:           cfg,
		HostUsers:      cfg.Build.HostUsers(),
		AppArmor:       pipeline.PodAppArmor(cfg),
	}, nil
}

func ids(as []config.Architecture) string {
	var s []string
	for _, a := range as {
		s = append(s, a.ID())
	}
	return strings.Join(s, ", ")
}

// PipelineRun is the run for o, from the same code as the examples.
func PipelineRun(cfg *config.Config, o Options) (*v1.PipelineRun, error) {
	ro, err := o.Resolve(cfg)
	if err != nil {
		return nil, err
	}
	pr := pipeline.PipelineRun(ro)
	if o.Matrix() {
		pr = pipeline.MatrixRun(ro)
	}
	if err := o.Build.apply(pr); err != nil {
		return nil, err
	}
	return pr, nil
}

// Fallback is the run of the explicit Pipeline, pinned by taskRunSpecs,
// for a matrix run on a cluster without the arch-pinning policy. It needs
// every configured architecture: that Pipeline cannot skip one.
func Fallback(cfg *config.Config, o Options) (*v1.PipelineRun, error) {
	o.Pipeline = pipeline.Name
	pr, err := PipelineRun(cfg, o)
	if err != nil {
		return nil, fmt.Errorf("and %s cannot run instead: %w", pipeline.Name, err)
	}
	return pr, nil
}
