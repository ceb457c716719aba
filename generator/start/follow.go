package start

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"knative.dev/pkg/apis"

	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// Outcome is how a followed run ended.
type Outcome struct {
	Succeeded bool
	Reason    string // the PipelineRun's condition reason and message
	ImageURL  string
	Digest    string
}

// Follow prints the progress of each pipeline task's steps as they change,
// one line each (readable in a terminal and in CI logs alike), and the
// steps' own output as it comes, each line prefixed with the platform it
// builds ([linux/arm64]) or its task ([manifest]), until the run finishes or
// ctx ends. It watches the run and its TaskRuns (client-go watches, no
// polling); a watch the server closes is opened again after a fresh read,
// so nothing between the two is missed. A step's log is opened when the
// watch sees the step start; a node that serves no logs leaves the status
// lines alone.
func Follow(ctx context.Context, cs Clients, ns, name string, w io.Writer) (o Outcome, err error) {
	c := cs.Tekton
	out := &lineWriter{out: w}
	open := cs.logs
	if open == nil && cs.Kube != nil {
		open = kubeLogs(cs.Kube)
	}
	var logs *streams
	if open != nil {
		logs = newStreams(ctx, ns, open, out)
		defer func() {
			if err != nil {
				logs.stop()
			} else {
				// The outcome after the last lines of every step.
				logs.finish()
			}
		}()
	}
	seen := map[string]string{}
	trs := map[string]*v1.TaskRun{}
	reportAll := func() {
		items := make([]*v1.TaskRun, 0, len(trs))
		for _, tr := range trs {
			items = append(items, tr)
		}
		sort.Slice(items, func(i, j int) bool { return task(items[i]) < task(items[j]) })
		for _, tr := range items {
			report(out, seen, tr)
			logs.update(tr)
		}
	}
	selector := "tekton.dev/pipelineRun=" + name
	// read gets the run and its TaskRuns. API calls get their own deadline:
	// client-go's rate limiter fails a call early when ctx's deadline is
	// near, with an error that is not ctx's, and a timeout or Ctrl-C must
	// read as such.
	read := func() (*v1.PipelineRun, string, error) {
		api, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		pr, err := c.TektonV1().PipelineRuns(ns).Get(api, name, metav1.GetOptions{})
		if err != nil {
			return nil, "", fmt.Errorf("reading PipelineRun %s: %w", name, err)
		}
		list, err := c.TektonV1().TaskRuns(ns).List(api, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, "", fmt.Errorf("listing TaskRuns of %s: %w", name, err)
		}
		for i := range list.Items {
			trs[list.Items[i].Name] = &list.Items[i]
		}
		return pr, list.ResourceVersion, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return Outcome{}, err
		}
		pr, trVersion, err := read()
		if err != nil {
			return Outcome{}, err
		}
		reportAll()
		if o, done := outcome(pr); done {
			return o, nil
		}
		prW, err := c.TektonV1().PipelineRuns(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: pr.ResourceVersion})
		if err != nil {
			if ctx.Err() != nil {
				return Outcome{}, ctx.Err()
			}
			return Outcome{}, fmt.Errorf("watching PipelineRun %s: %w", name, err)
		}
		trW, err := c.TektonV1().TaskRuns(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: trVersion})
		if err != nil {
			prW.Stop()
			if ctx.Err() != nil {
				return Outcome{}, ctx.Err()
			}
			return Outcome{}, fmt.Errorf("watching TaskRuns of %s: %w", name, err)
		}
		o, done, err := follow(ctx, prW, trW, trs, reportAll)
		prW.Stop()
		trW.Stop()
		if err != nil || done {
			if done {
				// The run's last TaskRun update may come after the run's.
				if _, _, rerr := read(); rerr == nil {
					reportAll()
				}
			}
			return o, err
		}
	}
}

// follow handles watch events until the run is done (done), ctx ends (err)
// or a watch ends (neither: read again and watch again).
func follow(ctx context.Context, prW, trW watch.Interface, trs map[string]*v1.TaskRun, reportAll func()) (Outcome, bool, error) {
	for {
		select {
		case <-ctx.Done():
			return Outcome{}, false, ctx.Err()
		case ev, ok := <-prW.ResultChan():
			if !ok || ev.Type == watch.Error {
				return Outcome{}, false, nil
			}
			if pr, isPR := ev.Object.(*v1.PipelineRun); isPR {
				if o, done := outcome(pr); done {
					return o, true, nil
				}
			}
		case ev, ok := <-trW.ResultChan():
			if !ok || ev.Type == watch.Error {
				return Outcome{}, false, nil
			}
			if tr, isTR := ev.Object.(*v1.TaskRun); isTR {
				if ev.Type == watch.Deleted {
					delete(trs, tr.Name)
				} else {
					trs[tr.Name] = tr
				}
				reportAll()
			}
		}
	}
}

// outcome is how pr ended, if it has.
func outcome(pr *v1.PipelineRun) (Outcome, bool) {
	cond := pr.Status.GetCondition(apis.ConditionSucceeded)
	if cond == nil || cond.Status == corev1.ConditionUnknown {
		return Outcome{}, false
	}
	o := Outcome{Succeeded: cond.Status == corev1.ConditionTrue, Reason: cond.Reason + ": " + cond.Message}
	for _, r := range pr.Status.Results {
		switch r.Name {
		case "IMAGE_URL":
			o.ImageURL = r.Value.StringVal
		case "IMAGE_DIGEST":
			o.Digest = r.Value.StringVal
		}
	}
	return o, true
}

func task(tr *v1.TaskRun) string {
	t := tr.Labels["tekton.dev/pipelineTask"]
	if t == "" {
		return tr.Name
	}
	// A matrix makes one TaskRun per platform under one pipeline task.
	if t == pipeline.MatrixBuildTask {
		for _, p := range tr.Spec.Params {
			if p.Name == "PLATFORM" {
				return t + " " + p.Value.StringVal
			}
		}
	}
	return t
}

// report prints what changed in one TaskRun since the last look.
func report(out io.Writer, seen map[string]string, tr *v1.TaskRun) {
	t := task(tr)
	say := func(key, state string) {
		if seen[key] != state {
			seen[key] = state
			fmt.Fprintf(out, "[%s] %s\n", t, state)
		}
	}
	if tr.Status.PodName != "" {
		say(t+"/pod", "pod "+tr.Status.PodName)
	}
	// A pod no node can take (no node of its architecture, none with
	// room, a cordoned one): Tekton keeps the run going and puts the
	// scheduler's reason on the TaskRun. Say it, rather than wait silently.
	// Tekton's bare "Pending" (a pod just created, no condition yet) says
	// nothing the pod line did not.
	if cond := tr.Status.GetCondition(apis.ConditionSucceeded); cond != nil && cond.Status == corev1.ConditionUnknown && waiting(cond.Reason) && cond.Message != "Pending" {
		say(t+"/pending", "pending: "+cond.Message)
	}
	for _, s := range tr.Status.Steps {
		var state string
		switch {
		case s.Terminated != nil && s.Terminated.ExitCode == 0:
			state = "done"
		case s.Terminated != nil:
			state = fmt.Sprintf("failed (exit %d)", s.Terminated.ExitCode)
		case s.Running != nil:
			state = "running"
		default:
			state = "waiting"
		}
		say(t+"/"+s.Name, stepLabel(s.Name)+": "+state)
	}
	if cond := tr.Status.GetCondition(apis.ConditionSucceeded); cond != nil && cond.Status != corev1.ConditionUnknown {
		if cond.Status == corev1.ConditionTrue {
			msg := "succeeded"
			for _, r := range tr.Status.Results {
				if r.Name == "IMAGE_REF" {
					msg += ": " + r.Value.StringVal
				}
			}
			say(t+"/done", msg)
		} else {
			say(t+"/done", "failed: "+cond.Reason+": "+cond.Message+oomHint(tr, cond.Reason))
		}
	}
}

// waiting reasons: Tekton's for a pod that is not running yet (pkg/pod:
// ReasonPodPending, ReasonExceededNodeResources, and the quota one).
func waiting(reason string) bool {
	switch reason {
	case "Pending", "ExceededNodeResources", "ExceededResourceQuota":
		return true
	}
	return false
}

func stepLabel(step string) string {
	if step == tasks.BuildStep {
		return "build+push"
	}
	return step
}

// oomHint says, for a TaskRun whose step was OOMKilled, which memory limit it
// had and where to raise it: Tekton's message names the step only.
func oomHint(tr *v1.TaskRun, reason string) string {
	if reason != string(v1.TaskRunReasonStepOOM) {
		return ""
	}
	limit := "no memory limit"
	if tr.Status.TaskSpec != nil {
		for _, st := range tr.Status.TaskSpec.Steps {
			if st.Name == tasks.BuildStep {
				if q, ok := st.ComputeResources.Limits[corev1.ResourceMemory]; ok {
					limit = "a memory limit of " + q.String()
				}
			}
		}
	}
	for _, ss := range tr.Spec.StepSpecs {
		if ss.Name == tasks.BuildStep {
			if q, ok := ss.ComputeResources.Limits[corev1.ResourceMemory]; ok {
				limit = "a memory limit of " + q.String() + " (the run's stepSpecs)"
			}
		}
	}
	return " (the build step had " + limit + ": raise build.resources.limits.memory, or the architecture's resources, in the generator's configuration and generate again)"
}
