package start

import (
	"testing"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
)

// The run start makes carries build.userNamespaces in the run's pod
// template, under every TaskRun's, for either Pipeline.
func TestPipelineRunHostUsers(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, pipeline string
		want                 string // "unset" or "false"
	}{
		{"default", "", pipeline.Name, "unset"},
		{"userns", "build: {userNamespaces: true}", pipeline.Name, "false"},
		{"userns matrix", "build: {userNamespaces: true}", pipeline.MatrixName, "false"},
		{"off matrix", "build: {userNamespaces: false}", pipeline.MatrixName, "unset"},
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
			got := "unset"
			if pt := pr.Spec.TaskRunTemplate.PodTemplate; pt != nil && pt.HostUsers != nil {
				got = map[bool]string{true: "true", false: "false"}[*pt.HostUsers]
			}
			if got != tc.want {
				t.Errorf("taskRunTemplate.podTemplate.hostUsers %s, want %s", got, tc.want)
			}
			for _, s := range pr.Spec.TaskRunSpecs {
				if s.PodTemplate != nil && s.PodTemplate.HostUsers != nil {
					t.Errorf("taskRunSpec %s sets hostUsers itself: the run's template is the one place", s.PipelineTaskName)
				}
			}
		})
	}
}
