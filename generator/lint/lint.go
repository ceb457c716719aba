// Package lint checks what Tekton's validation does not: script injection,
// references to undeclared workspaces, results and pipeline tasks,
// privileged containers and unpinned images.
package lint

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

var (
	workspaceRef  = regexp.MustCompile(`\$\(workspaces\.([^.)]+)\.`)
	resultPathRef = regexp.MustCompile(`\$\(results\.([^.)]+)\.path\)`)
	taskResultRef = regexp.MustCompile(`\$\(tasks\.([^.)]+)\.results\.([^.)\[]+)`)
)

// Check returns every problem found in o, each naming the object and where.
func Check(o validate.Objects) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	tasks := map[string]*v1.Task{}
	for _, t := range o.Tasks {
		tasks[t.Name] = t
		where := "Task " + t.Name
		steps := append([]v1.Step(nil), t.Spec.Steps...)
		for _, s := range steps {
			if strings.Contains(s.Script, "$(params.") {
				fail("%s: step %s interpolates $(params.*) into its script; pass the param through env instead", where, s.Name)
			}
			// The step scripts run as `sh -c <script>`: a param in the command
			// is one in the script. Args stay open to whole params, which
			// reach the script as "$@", never as code.
			for _, c := range s.Command {
				if strings.Contains(c, "$(params.") {
					fail("%s: step %s interpolates $(params.*) into its command; pass the param through env instead", where, s.Name)
					break
				}
			}
			if s.SecurityContext != nil && s.SecurityContext.Privileged != nil && *s.SecurityContext.Privileged {
				fail("%s: step %s is privileged", where, s.Name)
			}
			if msg := config.PinnedImageProblem(s.Image); msg != "" {
				fail("%s: step %s image: %s", where, s.Name, msg)
			}
		}
		for _, s := range t.Spec.Sidecars {
			if s.SecurityContext != nil && s.SecurityContext.Privileged != nil && *s.SecurityContext.Privileged {
				fail("%s: sidecar %s is privileged", where, s.Name)
			}
			if msg := config.PinnedImageProblem(s.Image); msg != "" {
				fail("%s: sidecar %s image: %s", where, s.Name, msg)
			}
		}
		if st := t.Spec.StepTemplate; st != nil && st.SecurityContext != nil && st.SecurityContext.Privileged != nil && *st.SecurityContext.Privileged {
			fail("%s: stepTemplate is privileged", where)
		}
		declared := map[string]bool{}
		for _, w := range t.Spec.Workspaces {
			declared[w.Name] = true
		}
		results := map[string]bool{}
		for _, r := range t.Spec.Results {
			results[r.Name] = true
		}
		for _, s := range stringsOf(t.Spec) {
			for _, m := range workspaceRef.FindAllStringSubmatch(s, -1) {
				if !declared[m[1]] {
					fail("%s: %s names workspace %q, which the Task does not declare", where, m[0], m[1])
				}
			}
			for _, m := range resultPathRef.FindAllStringSubmatch(s, -1) {
				if !results[m[1]] {
					fail("%s: %s names result %q, which the Task does not declare", where, m[0], m[1])
				}
			}
		}
	}

	pipelines := map[string]*v1.Pipeline{}
	for _, p := range o.Pipelines {
		pipelines[p.Name] = p
		where := "Pipeline " + p.Name
		pts := map[string]*v1.Task{}
		for _, pt := range append(append([]v1.PipelineTask(nil), p.Spec.Tasks...), p.Spec.Finally...) {
			if pt.TaskRef == nil || RefName(pt.TaskRef.Name, pt.TaskRef.Params) == "" {
				fail("%s: task %s has no taskRef naming a Task", where, pt.Name)
				continue
			}
			t, ok := tasks[RefName(pt.TaskRef.Name, pt.TaskRef.Params)]
			if !ok {
				fail("%s: task %s refers to Task %q, which the catalog does not have", where, pt.Name, RefName(pt.TaskRef.Name, pt.TaskRef.Params))
				continue
			}
			pts[pt.Name] = t
		}
		for _, s := range stringsOf(p.Spec) {
			for _, m := range taskResultRef.FindAllStringSubmatch(s, -1) {
				t, ok := pts[m[1]]
				if !ok {
					fail("%s: %s names pipeline task %q, which does not exist", where, m[0], m[1])
					continue
				}
				if !hasResult(t, m[2]) {
					fail("%s: %s names result %q, which Task %s does not declare", where, m[0], m[2], t.Name)
				}
			}
		}
	}

	for _, pr := range o.PipelineRuns {
		where := "PipelineRun " + pr.Name + pr.GenerateName
		if pr.Spec.PipelineRef == nil {
			fail("%s: no pipelineRef", where)
			continue
		}
		p, ok := pipelines[RefName(pr.Spec.PipelineRef.Name, pr.Spec.PipelineRef.Params)]
		if !ok {
			fail("%s: refers to Pipeline %q, which the catalog does not have", where, RefName(pr.Spec.PipelineRef.Name, pr.Spec.PipelineRef.Params))
			continue
		}
		names := map[string]bool{}
		for _, pt := range append(append([]v1.PipelineTask(nil), p.Spec.Tasks...), p.Spec.Finally...) {
			names[pt.Name] = true
		}
		for _, trs := range pr.Spec.TaskRunSpecs {
			if !names[trs.PipelineTaskName] {
				fail("%s: taskRunSpecs names pipeline task %q, which Pipeline %s does not have (it has %s)", where, trs.PipelineTaskName, p.Name, keys(names))
			}
		}
	}
	return errs
}

func hasResult(t *v1.Task, name string) bool {
	for _, r := range t.Spec.Results {
		if r.Name == name {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// stringsOf returns every string value inside v, found through its JSON form.
func stringsOf(v any) []string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		panic(err)
	}
	var out []string
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case string:
			out = append(out, t)
		case []any:
			for _, e := range t {
				walk(e)
			}
		case map[string]any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(generic)
	return out
}

// RefName is the name of the object a taskRef or pipelineRef points at,
// whatever resolves it: the name, a resolver's name param, or the git
// resolver's file name (tasks/<name>/<version>/<name>.yaml).
func RefName(name string, params v1.Params) string {
	if name != "" {
		return name
	}
	for _, p := range params {
		if p.Name == "name" {
			return p.Value.StringVal
		}
	}
	for _, p := range params {
		if p.Name == "pathInRepo" {
			return strings.TrimSuffix(path.Base(p.Value.StringVal), ".yaml")
		}
	}
	return ""
}
