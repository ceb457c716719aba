package cluster

// Builds that fail on the kwok nodes, and runs Tekton or the API server
// refuses: what the user sees of each.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
)

// arm64Fails: the arm64 build step exits 1 while amd64 is still running,
// then amd64 succeeds; the PipelineRun must fail and never start the
// manifest task.
func (s *stack) arm64Fails(t testing.TB, c catalog) {
	s.driveArm64Failure(t, s.create(t, c, "examples/pipelinerun.yaml"))
}

// driveArm64Failure fails the arm64 build of a PipelineRun however it was
// created and checks the run fails without a manifest.
func (s *stack) driveArm64Failure(t testing.TB, r *prRun) {
	c := r.c
	builds, pods := r.buildPods(t)
	v := buildValues(c, "arm64")
	r.failBuild(t, builds["build-arm64"], pods["arm64"], "arm64", map[string]stepOutcome{
		"step-clone": {results: map[string]string{"COMMIT": v.commit, "URL": v.url, "COMMIT_TIME": v.commitTime}},
		"step-build": {exitCode: 1},
	})
	tr := r.waitTaskRunDone(t, builds["build-arm64"].Name)
	if got, want := len(tr.Status.RetriesStatus), c.cfg.Build.Retries; got != want {
		t.Errorf("TaskRun build-arm64 was retried %d times, want build.retries = %d", got, want)
	}
	cond := tr.Status.GetCondition(apis.ConditionSucceeded)
	if !failed(cond) {
		t.Fatalf("TaskRun build-arm64 with step-build exiting 1: %s, want failed", condition(cond))
	}
	if !strings.Contains(cond.Message, `"step-build" exited with code 1`) {
		t.Errorf("TaskRun build-arm64 failure message %q does not name the failing step", cond.Message)
	}
	t.Logf("TaskRun build-arm64: %s", condition(cond))

	for _, arch := range archs(c) {
		if arch == "arm64" {
			continue
		}
		v := buildValues(c, arch)
		r.finish(t, pods[arch], v.outcomes(v.url))
	}
	pr := r.waitDone(t)
	prCond := pr.Status.GetCondition(apis.ConditionSucceeded)
	if !failed(prCond) {
		t.Fatalf("PipelineRun %s after build-arm64 failed: %s, want failed", r.name, condition(prCond))
	}
	t.Logf("PipelineRun %s: %s", r.name, condition(prCond))
	trs, err := r.taskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := trs["manifest"]; ok {
		t.Errorf("a manifest TaskRun was created although build-arm64 failed")
	}
	for _, ref := range pr.Status.ChildReferences {
		if ref.PipelineTaskName == "manifest" {
			t.Errorf("PipelineRun childReferences include manifest (%s)", ref.Name)
		}
	}
	var skipped []string
	for _, sk := range pr.Status.SkippedTasks {
		skipped = append(skipped, sk.Name+" ("+string(sk.Reason)+")")
	}
	t.Logf("skippedTasks: %v", skipped)
}

// failBuild ends the build's pod with outcomes, then each retry's pod as
// Tekton makes them (build.retries: a new pod of the same TaskRun), each of
// which must land on a node of arch too, as the first did.
func (r *prRun) failBuild(t testing.TB, tr *v1.TaskRun, pod *corev1.Pod, arch string, outcomes map[string]stepOutcome) {
	t.Helper()
	r.finish(t, pod, outcomes)
	seen := map[string]bool{pod.Name: true}
	for i := 1; i <= r.c.cfg.Build.Retries; i++ {
		var next *corev1.Pod
		r.s.waitFor(t, fmt.Sprintf("retry %d of %s running", i, tr.Name), 60*time.Second, func(ctx context.Context) (bool, error) {
			pods, err := r.s.kube.CoreV1().Pods(r.c.ns()).List(ctx, metav1.ListOptions{LabelSelector: pipeline.TaskRunLabelKey + "=" + tr.Name})
			if err != nil {
				return false, err
			}
			for j := range pods.Items {
				if p := &pods.Items[j]; !seen[p.Name] {
					next = p
				}
			}
			if next == nil {
				return false, fmt.Errorf("no new pod of %s yet", tr.Name)
			}
			return next.Spec.NodeName != "" && next.Status.Phase == corev1.PodRunning, fmt.Errorf("pod %s is %s", next.Name, next.Status.Phase)
		})
		checkBuildNode(t, r.c, next, arch)
		t.Logf("retry %d of %s: pod %s on %s", i, tr.Name, next.Name, next.Spec.NodeName)
		seen[next.Name] = true
		r.finish(t, next, outcomes)
	}
}

// typoAPIServer: a misspelt field is refused by the API server itself,
// from the CRD's structural schema, through kubectl's strict field
// validation.
func (s *stack) typoAPIServer(t testing.TB, c catalog) {
	f := variantFile(t, c, func(pr map[string]any) {
		spec := pr["spec"].(map[string]any)
		spec["taskRunSpec"] = spec["taskRunSpecs"]
		delete(spec, "taskRunSpecs")
	})
	out, err := s.kubectl(t, c.dir, "create", "-f", f)
	t.Logf("$ kubectl create -f <examples/pipelinerun.yaml with taskRunSpecs misspelt taskRunSpec>\n%s", out)
	if err == nil {
		t.Fatalf("the API server accepted a PipelineRun with spec.taskRunSpec")
	}
	if !strings.Contains(out, `unknown field "spec.taskRunSpec"`) {
		t.Errorf("kubectl create failed, but not on the unknown field:\n%s", out)
	}
}

// typoController: a misspelt pipeline task name passes the API server (any
// string is valid there) and offline validation, and the controller fails
// the run before creating any TaskRun.
func (s *stack) typoController(t testing.TB, c catalog) {
	f := variantFile(t, c, func(pr map[string]any) {
		specs := pr["spec"].(map[string]any)["taskRunSpecs"].([]any)
		last := specs[len(specs)-1].(map[string]any)
		last["pipelineTaskName"] = "build-arm46"
	})
	r := s.create(t, c, f)
	pr := r.waitDone(t)
	cond := pr.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("PipelineRun %s with taskRunSpecs naming build-arm46: %s", r.name, condition(cond))
	if !failed(cond) || cond.Reason != v1.PipelineRunReasonInvalidTaskRunSpec.String() {
		t.Errorf("want failed with reason %s, got %s", v1.PipelineRunReasonInvalidTaskRunSpec, condition(cond))
	}
	if cond != nil && !strings.Contains(cond.Message, "build-arm46") {
		t.Errorf("the controller's message does not name the typo: %q", cond.Message)
	}
	if trs, err := r.taskRuns(context.Background()); err != nil {
		t.Fatal(err)
	} else if len(trs) != 0 {
		t.Errorf("TaskRuns created for an invalid PipelineRun: %v", mapKeys(trs))
	}
}
