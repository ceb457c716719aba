package start

import (
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// An OOMKilled build names its limit and where to raise it; other failures
// get nothing added.
func TestOOMHint(t *testing.T) {
	withLimit := func(q string) *v1.TaskRun {
		tr := &v1.TaskRun{}
		tr.Status.TaskSpec = &v1.TaskSpec{Steps: []v1.Step{{Name: "clone"}, {
			Name:             tasks.BuildStep,
			ComputeResources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(q)}},
		}}}
		return tr
	}
	overridden := withLimit("4Gi")
	overridden.Spec.StepSpecs = []v1.TaskRunStepSpec{{
		Name:             tasks.BuildStep,
		ComputeResources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1536Mi")}},
	}}
	for _, tc := range []struct {
		name   string
		tr     *v1.TaskRun
		reason string
		want   string
	}{
		{"task limit", withLimit("4Gi"), "StepOOM", "the build step had a memory limit of 4Gi: raise build.resources.limits.memory"},
		{"stepSpecs limit", overridden, "StepOOM", "a memory limit of 1536Mi (the run's stepSpecs)"},
		{"no limit", &v1.TaskRun{}, "StepOOM", "the build step had no memory limit"},
		{"not OOM", withLimit("4Gi"), "Failed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := oomHint(tc.tr, tc.reason)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("oomHint = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}
