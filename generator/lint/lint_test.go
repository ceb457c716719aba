package lint_test

import (
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/lint"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

func objects() validate.Objects {
	o, err := catalog.NewObjects(config.Default())
	if err != nil {
		panic(err)
	}
	return validate.Objects{
		Tasks:        []*v1.Task{o.GitSync, o.Build, o.Manifest},
		Pipelines:    []*v1.Pipeline{o.Pipeline},
		PipelineRuns: []*v1.PipelineRun{o.Example},
	}
}

func TestCatalogIsClean(t *testing.T) {
	if errs := lint.Check(objects()); len(errs) > 0 {
		t.Fatalf("lint found problems in the default catalog: %v", errs)
	}
}

// Each rule must catch its own violation, planted in an otherwise clean catalog.
func TestRulesCatchViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(o validate.Objects)
		want   string
	}{
		{"param in script", func(o validate.Objects) {
			o.Tasks[1].Spec.Steps[1].Script += "\necho $(params.IMAGE)\n"
		}, "interpolates $(params.*) into its script"},
		{"param in the script of a command", func(o validate.Objects) {
			o.Tasks[1].Spec.Steps[1].Command[2] += "\necho $(params.IMAGE)\n"
		}, "interpolates $(params.*) into its command"},
		{"undeclared workspace", func(o validate.Objects) {
			o.Tasks[1].Spec.Steps[1].Env = append(o.Tasks[1].Spec.Steps[1].Env, corev1.EnvVar{Name: "X", Value: "$(workspaces.cache.path)"})
		}, `names workspace "cache"`},
		{"undeclared result path", func(o validate.Objects) {
			o.Tasks[2].Spec.Steps[0].Env = append(o.Tasks[2].Spec.Steps[0].Env, corev1.EnvVar{Name: "X", Value: "$(results.NOPE.path)"})
		}, `names result "NOPE"`},
		{"unknown pipeline task in result ref", func(o validate.Objects) {
			o.Pipelines[0].Spec.Results[0].Value = *v1.NewStructuredValues("$(tasks.build-s390x.results.IMAGE_URL)")
		}, `names pipeline task "build-s390x"`},
		{"unknown result of a task", func(o validate.Objects) {
			o.Pipelines[0].Spec.Results[0].Value = *v1.NewStructuredValues("$(tasks.manifest.results.NOPE)")
		}, `names result "NOPE", which Task buildah-manifest does not declare`},
		{"taskRunSpec for no task", func(o validate.Objects) {
			o.PipelineRuns[0].Spec.TaskRunSpecs[0].PipelineTaskName = "build-x86_64"
		}, `taskRunSpecs names pipeline task "build-x86_64"`},
		{"privileged step", func(o validate.Objects) {
			yes := true
			o.Tasks[1].Spec.Steps[1].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
		}, "step build is privileged"},
		{"unpinned image", func(o validate.Objects) {
			o.Tasks[0].Spec.Steps[0].Image = "registry.k8s.io/git-sync/git-sync:latest"
		}, "floating tag"},
		{"task ref to nowhere", func(o validate.Objects) {
			o.Pipelines[0].Spec.Tasks[0].TaskRef.Name = "kaniko"
		}, `refers to Task "kaniko"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := objects()
			tc.break_(o)
			errs := lint.Check(o)
			var all []string
			for _, e := range errs {
				all = append(all, e.Error())
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Errorf("lint did not report %q; got %q", tc.want, all)
			}
		})
	}
}
