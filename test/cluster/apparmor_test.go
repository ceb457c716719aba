package cluster

import (
	"context"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gencatalog "github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// perArchAppArmor: a catalog generated for the seed's cluster, AppArmor's
// generated profile on amd64 and none on arm64 (apparmor.architectures), on
// the real API server and Tekton controller. However the build is started
// (the example run's taskRunSpecs, tkn through the arch-pinning policy, the
// matrix Pipeline through it too), each build pod gets its architecture's
// profile at pod level and the manifest pod none, as the API server stored
// them. Whether a kernel enforces them is the arm64 node's test.
func (s *stack) perArchAppArmor(t *testing.T, committed catalog) {
	v := generateVariant(t, s.repo, `apparmor:
  architectures:
    arm64: none
example:
  namespace: multiarch-builds-aa
`)
	if _, uniform := v.cfg.AppArmorUniform(); uniform {
		t.Fatalf("variant config: AppArmor is uniform, want amd64 localhost and arm64 none")
	}
	t.Run("install", func(t *testing.T) { s.install(t, v) })
	if !s.installed(v) {
		t.Fatal("the per-architecture AppArmor catalog is not installed")
	}
	// One policy per cluster: the variant's (with its AppArmor mutation)
	// replaces the committed one's for this run, and the committed one
	// comes back.
	t.Cleanup(func() { s.applyPolicy(t, committed) })
	s.applyPolicy(t, v)
	t.Run("example-run", func(t *testing.T) { s.runToSuccess(t, v) })
	t.Run("tkn-pipeline-start", func(t *testing.T) { s.driveToSuccess(t, s.tknStart(t, v)) })
	t.Run("tkn-matrix-pipeline", func(t *testing.T) {
		r := s.tkn(t, v, gencatalog.TknStartMatrixCommand(v.cfg))
		s.driveMatrix(t, r, "linux/amd64", "linux/arm64")
		r.checkPodsAppArmor(t)
	})
}

// checkPodsAppArmor checks every pod of the run: a build pod's AppArmor is
// its platform's (read from its PLATFORM env, as the policy reads it), the
// manifest pod's appArmorOfManifest.
func (r *prRun) checkPodsAppArmor(t testing.TB) {
	t.Helper()
	pods, err := r.s.kube.CoreV1().Pods(r.c.ns()).List(context.Background(), metav1.ListOptions{
		LabelSelector: pipeline.PipelineRunLabelKey + "=" + r.name,
	})
	if err != nil {
		t.Fatal(err)
	}
	builds := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if container(p, "step-manifest") != nil {
			checkAppArmor(t, r.c, p, "step-manifest", appArmorOfManifest(r.c))
			continue
		}
		platform := envOf(p, "step-build", "PLATFORM")
		var arch *config.Architecture
		for _, a := range r.c.cfg.Architectures {
			if a.Platform() == platform {
				arch = &a
			}
		}
		if arch == nil {
			t.Errorf("pod %s: PLATFORM %q is none of the catalog's", p.Name, platform)
			continue
		}
		builds++
		want := r.c.cfg.AppArmorFor(*arch)
		checkAppArmor(t, r.c, p, "step-build", want)
		t.Logf("pod %s (%s): AppArmor %s", p.Name, platform, want)
	}
	if builds != len(r.c.cfg.Architectures) {
		t.Errorf("run %s: %d build pods, want %d", r.name, builds, len(r.c.cfg.Architectures))
	}
}
