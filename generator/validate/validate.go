// Package validate decodes generated YAML strictly into Tekton's own v1 types
// and runs Tekton's own defaulting and validation on it, as the admission
// webhook would.
package validate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"knative.dev/pkg/apis"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Objects are the Tekton objects of one or more YAML documents, by kind.
type Objects struct {
	Tasks        []*v1.Task
	Pipelines    []*v1.Pipeline
	PipelineRuns []*v1.PipelineRun
	TaskRuns     []*v1.TaskRun
}

// Add appends another set.
func (o *Objects) Add(other Objects) {
	o.Tasks = append(o.Tasks, other.Tasks...)
	o.Pipelines = append(o.Pipelines, other.Pipelines...)
	o.PipelineRuns = append(o.PipelineRuns, other.PipelineRuns...)
	o.TaskRuns = append(o.TaskRuns, other.TaskRuns...)
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// Decode strictly decodes every document of data (an unknown field is an
// error) into its tekton.dev/v1 type. source names data in errors.
func Decode(source string, data []byte) (Objects, error) {
	var out Objects
	for i, doc := range docSeparator.Split(string(data), -1) {
		if len(bytes.TrimSpace(stripComments([]byte(doc)))) == 0 {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return out, fmt.Errorf("%s: document %d: %w", source, i+1, err)
		}
		if head.APIVersion != v1.SchemeGroupVersion.String() {
			return out, fmt.Errorf("%s: document %d: apiVersion %q, want %s", source, i+1, head.APIVersion, v1.SchemeGroupVersion)
		}
		var err error
		switch head.Kind {
		case "Task":
			var t v1.Task
			err = decodeStrict([]byte(doc), &t)
			out.Tasks = append(out.Tasks, &t)
		case "Pipeline":
			var p v1.Pipeline
			err = decodeStrict([]byte(doc), &p)
			out.Pipelines = append(out.Pipelines, &p)
		case "PipelineRun":
			var pr v1.PipelineRun
			err = decodeStrict([]byte(doc), &pr)
			out.PipelineRuns = append(out.PipelineRuns, &pr)
		case "TaskRun":
			var tr v1.TaskRun
			err = decodeStrict([]byte(doc), &tr)
			out.TaskRuns = append(out.TaskRuns, &tr)
		default:
			return out, fmt.Errorf("%s: document %d: kind %q is not a Tekton kind this catalog ships", source, i+1, head.Kind)
		}
		if err != nil {
			return out, fmt.Errorf("%s: document %d (%s): %w", source, i+1, head.Kind, err)
		}
	}
	return out, nil
}

// decodeStrict decodes like the API server does: field names are
// case-sensitive, and unknown or duplicate fields are errors that carry their path.
func decodeStrict(doc []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, into, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// Context is what the webhook validates a create in: default feature flags.
func Context() context.Context {
	ff, err := config.NewFeatureFlagsFromMap(map[string]string{})
	if err != nil {
		panic(err)
	}
	cfg := config.FromContextOrDefaults(context.Background())
	cfg.FeatureFlags = ff
	return apis.WithinCreate(config.ToContext(context.Background(), cfg))
}

type validatable interface {
	SetDefaults(context.Context)
	Validate(context.Context) *apis.FieldError
}

// Check runs SetDefaults and Validate on a copy of every object.
// A PipelineRun with only generateName gets a name first, as the API server
// would give it.
func Check(o Objects) error {
	ctx := Context()
	var errs []error
	run := func(kind, name string, v validatable) {
		v.SetDefaults(ctx)
		if fe := v.Validate(ctx); fe != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", kind, name, fe))
		}
	}
	for _, t := range o.Tasks {
		run("Task", t.Name, t.DeepCopy())
	}
	for _, p := range o.Pipelines {
		run("Pipeline", p.Name, p.DeepCopy())
	}
	for _, pr := range o.PipelineRuns {
		c := pr.DeepCopy()
		if c.Name == "" {
			c.Name = c.GenerateName + "validate"
		}
		run("PipelineRun", c.Name, c)
	}
	for _, tr := range o.TaskRuns {
		c := tr.DeepCopy()
		if c.Name == "" {
			c.Name = c.GenerateName + "validate"
		}
		run("TaskRun", c.Name, c)
	}
	return errors.Join(errs...)
}
