package start

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
)

// The run start makes gives each build its architecture's AppArmor profile
// at pod level where the catalog's differ per architecture, and names none
// where the Task's steps do (uniform), or where the Pipeline (matrix) leaves
// it to the arch-pinning policy.
func TestPipelineRunAppArmor(t *testing.T) {
	localhost := string(corev1.AppArmorProfileTypeLocalhost) + "/containerized-buildah"
	for _, tc := range []struct {
		name, yaml, pipeline string
		want                 map[string]string // pipeline task -> profile; "" none
	}{
		{"default", "", pipeline.Name, map[string]string{"build-amd64": "", "build-arm64": ""}},
		{"per arch", "apparmor: {architectures: {arm64: none}}", pipeline.Name, map[string]string{"build-amd64": localhost, "build-arm64": ""}},
		{"per arch, runtime default", "apparmor: {architectures: {amd64: runtime-default, arm64: none}}", pipeline.Name,
			map[string]string{"build-amd64": string(corev1.AppArmorProfileTypeRuntimeDefault), "build-arm64": ""}},
		{"per arch matrix", "apparmor: {architectures: {arm64: none}}", pipeline.MatrixName, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), "start.yaml")
			if err != nil {
				t.Fatal(err)
			}
			pr, err := PipelineRun(cfg, Options{GitURL: "https://example.com/a.git", Ref: "main", Image: "registry.example.com/a/b:v1", Pipeline: tc.pipeline})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, s := range pr.Spec.TaskRunSpecs {
				v := ""
				if pt := s.PodTemplate; pt != nil && pt.SecurityContext != nil && pt.SecurityContext.AppArmorProfile != nil {
					p := pt.SecurityContext.AppArmorProfile
					v = string(p.Type)
					if p.LocalhostProfile != nil {
						v += "/" + *p.LocalhostProfile
					}
				}
				got[s.PipelineTaskName] = v
			}
			if len(got) != len(tc.want) {
				t.Errorf("taskRunSpecs %v, want %v", got, tc.want)
			}
			for task, want := range tc.want {
				if got[task] != want {
					t.Errorf("taskRunSpec %s: pod appArmorProfile %q, want %q", task, got[task], want)
				}
			}
			if pt := pr.Spec.TaskRunTemplate.PodTemplate; pt != nil && pt.SecurityContext != nil {
				t.Errorf("the run's own pod template has a securityContext %+v: the manifest, under it, must ask for no profile", pt.SecurityContext)
			}
		})
	}
}
