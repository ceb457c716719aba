package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// matrixLimits measures, on the real Tekton v1.15.0 controller with the
// arch policy applied, what a Pipeline choosing its platforms at run time
// (a matrix over a PLATFORMS array param) can and cannot do with this
// catalog's Tasks. It is why the catalog ships no such Pipeline yet (see
// the README): the parts that work are asserted to work, the parts that do
// not are asserted to fail with Tekton's own message, so a Tekton upgrade
// that lifts a limit shows up here.
func (s *stack) matrixLimits(t *testing.T, c catalog) {
	t.Run("fan-out-and-fan-in", func(t *testing.T) {
		// Works: one build per platform of the run, each pod pinned by the
		// policy; their IMAGE_REF results reach the manifest as an array.
		r := s.matrixRun(t, c, "fan-in", `
        - {name: IMAGES, value: ["$(tasks.build.results.IMAGE_REF[*])"]}
        - {name: PLATFORMS, value: "linux/amd64,linux/arm64"}`, "")
		refs := r.finishMatrixBuilds(t, "linux/amd64", "linux/arm64")
		var manifest *v1.TaskRun
		s.waitFor(t, "the manifest TaskRun", 60*time.Second, func(ctx context.Context) (bool, error) {
			trs, err := r.matrixTaskRuns(ctx)
			for i := range trs {
				if trs[i].Labels[pipeline.PipelineTaskLabelKey] == "manifest" {
					manifest = &trs[i]
				}
			}
			return manifest != nil, err
		})
		for _, p := range manifest.Spec.Params {
			if p.Name == "IMAGES" {
				sort.Strings(p.Value.ArrayVal)
				if !slices.Equal(p.Value.ArrayVal, refs) {
					t.Errorf("manifest IMAGES = %v, want each build's IMAGE_REF %v", p.Value.ArrayVal, refs)
				}
				t.Logf("matrix fan-in: manifest IMAGES = %v", p.Value.ArrayVal)
			}
		}
	})
	// Does not work: the manifest's PLATFORMS and SOURCE_COMMITS are
	// strings, and Tekton does not turn an array into one.
	for _, tc := range []struct{ name, param, builds string }{
		{"platforms-array-to-string", `{name: PLATFORMS, value: "$(params.PLATFORMS[*])"}`, ""},
		{"results-array-to-string", `{name: PLATFORMS, value: "linux/amd64,linux/arm64"}
        - {name: SOURCE_COMMITS, value: "$(tasks.build.results.COMMIT[*])"}`, "built"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.matrixRun(t, c, tc.name, `
        - {name: IMAGES, value: ["$(tasks.build.results.IMAGE_REF[*])"]}
        - `+tc.param, "")
			if tc.builds != "" {
				r.finishMatrixBuilds(t, "linux/amd64", "linux/arm64")
			}
			pr := r.waitDone(t)
			cond := pr.Status.GetCondition(apis.ConditionSucceeded)
			t.Logf("measured: %s", condition(cond))
			if !failed(cond) || cond.Reason != "PipelineValidationFailed" || !strings.Contains(cond.Message, "param types don't match the user-specified type") {
				t.Errorf("want PipelineValidationFailed (param types don't match), got %s", condition(cond))
			}
		})
	}
	// Does not work: a per-platform TAG_SUFFIX through matrix include adds
	// the include's platform to the run even when PLATFORMS does not list it.
	t.Run("include-adds-platforms", func(t *testing.T) {
		r := s.matrixRun(t, c, "include", `
        - {name: IMAGES, value: ["$(tasks.build.results.IMAGE_REF[*])"]}
        - {name: PLATFORMS, value: "linux/amd64,linux/arm64"}`, `
        include:
          - name: s390x
            params: [{name: PLATFORM, value: linux/s390x}, {name: TAG_SUFFIX, value: -s390x}]`)
		var got []string
		s.waitFor(t, "the build TaskRuns", 60*time.Second, func(ctx context.Context) (bool, error) {
			trs, err := r.matrixTaskRuns(ctx)
			got = nil
			for _, tr := range trs {
				for _, p := range tr.Spec.Params {
					if p.Name == "PLATFORM" {
						got = append(got, p.Value.StringVal)
					}
				}
			}
			sort.Strings(got)
			return len(got) >= 3, err
		})
		t.Logf("measured: PLATFORMS [linux/amd64 linux/arm64] with an include for linux/s390x builds %v", got)
		if want := []string{"linux/amd64", "linux/arm64", "linux/s390x"}; !slices.Equal(got, want) {
			t.Errorf("builds %v, want %v", got, want)
		}
	})
}

// driveMatrix drives a run of the catalog's multiarch-build-matrix to
// success: one build per platform, each on its architecture's node, pushed
// to <tag>-ARCH; the manifest gets every IMAGE_REF, the platforms and the
// commits as arrays; the run's results.
func (s *stack) driveMatrix(t testing.TB, r *prRun, platforms ...string) {
	t.Helper()
	refs := r.finishMatrixBuilds(t, platforms...)
	var manifest *v1.TaskRun
	s.waitFor(t, "the manifest TaskRun", 60*time.Second, func(ctx context.Context) (bool, error) {
		trs, err := r.matrixTaskRuns(ctx)
		for i := range trs {
			if trs[i].Labels[pipeline.PipelineTaskLabelKey] == "manifest" {
				manifest = &trs[i]
			}
		}
		return manifest != nil, err
	})
	params := map[string][]string{}
	for _, p := range manifest.Spec.Params {
		params[p.Name] = append(p.Value.ArrayVal, p.Value.StringVal)
	}
	got := append([]string{}, params["IMAGES"]...)
	got = slices.DeleteFunc(got, func(s string) bool { return s == "" })
	sort.Strings(got)
	if !slices.Equal(got, refs) {
		t.Errorf("manifest IMAGES %v, want %v", got, refs)
	}
	commit := buildValues(r.c, "amd64").commit
	for name, want := range map[string][]string{"PLATFORM_LIST": platforms, "SOURCE_COMMIT_LIST": slices.Repeat([]string{commit}, len(platforms))} {
		got := slices.DeleteFunc(append([]string{}, params[name]...), func(s string) bool { return s == "" })
		if !slices.Equal(got, want) {
			t.Errorf("manifest %s %v, want %v", name, got, want)
		}
	}
	t.Logf("manifest params IMAGES %v PLATFORM_LIST %v SOURCE_COMMIT_LIST %v", got, params["PLATFORM_LIST"], params["SOURCE_COMMIT_LIST"])
	mpod := r.waitPod(t, manifest)
	index := fakeDigest("index")
	r.finish(t, mpod, manifestOutcomes(r.c.cfg.Example.Image, index, "x"))
	pr := r.waitDone(t)
	if cond := pr.Status.GetCondition(apis.ConditionSucceeded); !succeeded(cond) {
		t.Fatalf("PipelineRun %s: %s", r.name, condition(cond))
	}
	t.Logf("PipelineRun %s (%v): %s", r.name, platforms, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
}

// matrixRun applies a Pipeline that builds each platform of its PLATFORMS
// param (default linux/amd64, linux/arm64) with a matrix, then the
// manifest with manifestParams, and starts it without taskRunSpecs.
func (s *stack) matrixRun(t testing.TB, c catalog, name, manifestParams, include string) *prRun {
	t.Helper()
	p := fmt.Sprintf(`apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: matrix-%s, namespace: %s}
spec:
  params:
    - {name: PLATFORMS, type: array, default: [linux/amd64, linux/arm64]}
  tasks:
    - name: build
      taskRef: {name: %s}
      params:
        - {name: IMAGE, value: %s}
        - {name: GIT_URL, value: %s}
      matrix:
        params:
          - {name: PLATFORM, value: ["$(params.PLATFORMS[*])"]}%s
    - name: manifest
      taskRef: {name: %s}
      params:
        - {name: IMAGE, value: %s}%s
`, name, c.ns(), tasks.BuildName, c.cfg.Example.Image, c.cfg.Example.GitURL, include, tasks.ManifestName, c.cfg.Example.Image, manifestParams)
	f := filepath.Join(t.TempDir(), "pipeline.yaml")
	write(t, f, []byte(p))
	if out, err := s.kubectl(t, c.dir, "apply", "-f", f); err != nil {
		t.Fatalf("kubectl apply the matrix Pipeline: %v\n%s", err, out)
	}
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "matrix-" + name + "-", Namespace: c.ns()},
		Spec: v1.PipelineRunSpec{
			PipelineRef:     &v1.PipelineRef{Name: "matrix-" + name},
			TaskRunTemplate: v1.PipelineTaskRunTemplate{ServiceAccountName: c.cfg.Example.ServiceAccount},
		},
	}
	got, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Create(context.Background(), pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.cancelRun(context.Background(), c.ns(), got.Name)
	})
	return &prRun{s: s, c: c, name: got.Name}
}

func (r *prRun) matrixTaskRuns(ctx context.Context) ([]v1.TaskRun, error) {
	list, err := r.s.tekton.TektonV1().TaskRuns(r.c.ns()).List(ctx, metav1.ListOptions{LabelSelector: pipeline.PipelineRunLabelKey + "=" + r.name})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// finishMatrixBuilds waits for one build TaskRun per platform, checks each
// pod is on its architecture's node (the policy pinned it), completes it
// with results, and returns the IMAGE_REFs, sorted.
func (r *prRun) finishMatrixBuilds(t testing.TB, platforms ...string) []string {
	t.Helper()
	var builds []v1.TaskRun
	r.s.waitFor(t, fmt.Sprintf("%d matrix build TaskRuns", len(platforms)), 60*time.Second, func(ctx context.Context) (bool, error) {
		trs, err := r.matrixTaskRuns(ctx)
		builds = nil
		for _, tr := range trs {
			if tr.Labels[pipeline.PipelineTaskLabelKey] == "build" {
				builds = append(builds, tr)
			}
		}
		return len(builds) == len(platforms), err
	})
	var refs []string
	for i := range builds {
		pod := r.waitPod(t, &builds[i])
		platform := envOf(pod, "step-build", "PLATFORM")
		arch := strings.Split(platform, "/")[1]
		if !slices.Contains(platforms, platform) {
			t.Errorf("a build of %s, not one of %v", platform, platforms)
		}
		checkBuildNode(t, r.c, pod, arch)
		t.Logf("matrix build %s (PLATFORM=%s): node %s, nodeSelector %v", builds[i].Name, platform, pod.Spec.NodeName, pod.Spec.NodeSelector)
		v := buildValues(r.c, arch)
		refs = append(refs, v.ref)
		r.finish(t, pod, v.outcomes(v.url))
	}
	sort.Strings(refs)
	return refs
}
