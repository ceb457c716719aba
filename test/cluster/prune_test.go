package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	gencatalog "github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/cluster"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// finishedRun is a run the prune test makes: of pipeline, of pull request
// pr ("" for a branch build), ended with outcome ("True", "False") minutes
// after a base time, or still going ("").
type finishedRun struct {
	pipeline, pr, outcome string
	minutes               int
}

// prune: examples/cluster/prune.yaml applied as the README says; finished
// runs of both outcomes, of branch builds and of a pull request, a run still
// going and a finished run of another Pipeline; a Job made from the CronJob.
// Its pod lands on a kwok node: the test stands in for its kubelet, running
// the container's own command with its environment and a token of its
// ServiceAccount. What must be left: per Pipeline and pull request the
// newest keepSucceeded succeeded and keepFailed failed runs, the running
// one, the other Pipeline's. Then what the pruner's identity may not do.
func (s *stack) prune(t *testing.T, c catalog) {
	ctx := context.Background()
	if out, err := s.kubectl(t, c.dir, "apply", "-f", gencatalog.PruneFile); err != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", gencatalog.PruneFile, err, out)
	}
	keepS, keepF := c.cfg.Prune.KeepSucceeded, c.cfg.Prune.KeepFailed
	var runs []finishedRun
	for i := 0; i < keepS+2; i++ {
		runs = append(runs, finishedRun{"multiarch-build", "", "True", i})
	}
	for i := 0; i < keepF+1; i++ {
		runs = append(runs, finishedRun{"multiarch-build", "", "False", 20 + i})
	}
	for i := 0; i < keepS; i++ {
		runs = append(runs, finishedRun{"multiarch-build", "5", "True", 40 + i})
	}
	for i := 0; i < keepF+2; i++ {
		runs = append(runs, finishedRun{"multiarch-build", "5", "False", 60 + i})
	}
	runs = append(runs,
		finishedRun{"multiarch-build-matrix", "", "True", 80},
		finishedRun{"multiarch-build", "", "", 0},
		finishedRun{"someone-elses-pipeline", "", "True", 1})
	names := make([]string, len(runs))
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	for i, r := range runs {
		names[i] = s.makeFinishedRun(t, c, r, base)
	}

	// Which must go: the oldest beyond the keep counts, per group.
	want := map[string]bool{}
	count := map[string]int{}
	order := make([]int, len(runs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return runs[order[a]].minutes > runs[order[b]].minutes })
	for _, i := range order {
		r := runs[i]
		if r.outcome == "" || (r.pipeline != "multiarch-build" && r.pipeline != "multiarch-build-matrix") {
			continue
		}
		key := r.pipeline + "|" + r.pr + "|" + r.outcome
		keep := keepS
		if r.outcome == "False" {
			keep = keepF
		}
		if count[key] >= keep {
			want[names[i]] = true
		}
		count[key]++
	}

	out := s.runPruneJob(t, c)
	for i, name := range names {
		_, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(ctx, name, metav1.GetOptions{})
		gone := apierrors.IsNotFound(err)
		if err != nil && !gone {
			t.Fatal(err)
		}
		// A deletion the pruner asked for may still be in progress.
		if want[name] && !gone {
			s.waitFor(t, "PipelineRun "+name+" deleted", 30*time.Second, func(ctx context.Context) (bool, error) {
				_, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(ctx, name, metav1.GetOptions{})
				return apierrors.IsNotFound(err), fmt.Errorf("still there: %v", err)
			})
			gone = true
		}
		if gone != want[name] {
			t.Errorf("%s (%s, pull request %q, outcome %q, +%d min): deleted %v, want %v", name, runs[i].pipeline, runs[i].pr, runs[i].outcome, runs[i].minutes, gone, want[name])
		}
		if want[name] && !strings.Contains(out, "deleted "+name+" ") {
			t.Errorf("the pruner's log does not name %s", name)
		}
	}
	t.Logf("PRUNE: %d runs made, %d deleted, %d kept (keepSucceeded %d, keepFailed %d per Pipeline and pull request)",
		len(runs), len(want), len(runs)-len(want), keepS, keepF)

	// The pruner's identity deletes nothing else.
	kc := s.tokenKubeconfig(t, c.ns(), c.cfg.Prune.ServiceAccount)
	for _, tc := range []struct {
		what, name, want string
	}{
		{"delete a run still going", names[len(names)-2], "may delete only finished runs"},
		{"delete another Pipeline's run", names[len(names)-1], "may delete only runs of"},
	} {
		out, err := s.kubectlAs(kc, c.ns(), "delete", "pipelinerun", tc.name)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("as the pruner, %s: err %v, %q; want refused with %q", tc.what, err, out, tc.want)
			continue
		}
		t.Logf("as the pruner, %s: refused: %s", tc.what, out)
	}
	for _, args := range [][]string{{"get", "secrets"}, {"delete", "taskruns", "--all"}, {"create", "-f", filepath.Join(c.dir, "examples", "pipelinerun.yaml")}} {
		if out, err := s.kubectlAs(kc, c.ns(), args...); err == nil || !strings.Contains(out, "forbidden") {
			t.Errorf("as the pruner, kubectl %s: err %v, %q; want forbidden", strings.Join(args, " "), err, out)
		}
	}
	// Tidy up for what runs after: the run left going.
	if err := s.cancelRun(ctx, c.ns(), names[len(names)-2]); err != nil {
		t.Error(err)
	}
}

// makeFinishedRun creates a run of r.pipeline, pending so that Tekton
// starts nothing, then gives it the status it would have ended with.
func (s *stack) makeFinishedRun(t testing.TB, c catalog, r finishedRun, base time.Time) string {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"tekton.dev/pipeline": r.pipeline}
	if r.pr != "" {
		labels["tekton-multiarch.dev/pull-request"] = r.pr
	}
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "prune-" + strings.TrimPrefix(r.pipeline, "multiarch-") + "-", Namespace: c.ns(), Labels: labels},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: r.pipeline},
			Status:      v1.PipelineRunSpecStatusPending,
		},
	}
	got, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Create(ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The controller marks the run pending first; only then is its status
	// ours to set: a reconcile still in flight would write its own status
	// over ours (knative's update retries on the fresh object).
	s.waitFor(t, "PipelineRun "+got.Name+" pending", 30*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(ctx, got.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond := cur.Status.GetCondition(apis.ConditionSucceeded)
		return cond != nil && cond.Reason == v1.PipelineRunReasonPending.String(), fmt.Errorf("%s", condition(cond))
	})
	if r.outcome == "" {
		return got.Name
	}
	end := metav1.NewTime(base.Add(time.Duration(r.minutes) * time.Minute))
	start := metav1.NewTime(end.Add(-time.Minute))
	reason := "Succeeded"
	if r.outcome == "False" {
		reason = "Failed"
	}
	s.waitFor(t, "PipelineRun "+got.Name+" given its end", 30*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(ctx, got.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cur.Status.StartTime, cur.Status.CompletionTime = &start, &end
		cur.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionStatus(r.outcome), Reason: reason,
			LastTransitionTime: apis.VolatileTime{Inner: end}}}
		if _, err := s.tekton.TektonV1().PipelineRuns(c.ns()).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return false, err
		}
		return true, nil
	})
	// And it leaves a finished run as it is.
	time.Sleep(200 * time.Millisecond)
	cur, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(ctx, got.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cond := cur.Status.GetCondition(apis.ConditionSucceeded); cond == nil || string(cond.Status) != r.outcome || cur.Status.CompletionTime == nil {
		t.Fatalf("PipelineRun %s lost the end it was given: %s", got.Name, condition(cond))
	}
	return got.Name
}

// runPruneJob makes a Job from the CronJob, as `kubectl create job --from`
// does, and stands in for its pod's kubelet: it runs the container's
// command with the pod's environment as the pod's ServiceAccount, then ends
// the pod with its exit code. It returns the command's output.
func (s *stack) runPruneJob(t testing.TB, c catalog) string {
	t.Helper()
	if out, err := s.kubectl(t, c.dir, "-n", c.ns(), "create", "job", "prune-now", "--from=cronjob/"+cluster.PruneName); err != nil {
		t.Fatalf("kubectl create job --from=cronjob/%s: %v\n%s", cluster.PruneName, err, out)
	}
	var pod *corev1.Pod
	s.waitFor(t, "the prune Job's pod running", 60*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := s.kube.CoreV1().Pods(c.ns()).List(ctx, metav1.ListOptions{LabelSelector: "job-name=prune-now"})
		if err != nil || len(pods.Items) != 1 {
			return false, fmt.Errorf("pods of Job prune-now: %v", err)
		}
		pod = &pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning, fmt.Errorf("pod %s is %s", pod.Name, pod.Status.Phase)
	})
	ctr := container(pod, "prune")
	if ctr == nil || len(ctr.Command) != 3 || ctr.Command[2] != scripts.Prune {
		t.Fatalf("the prune pod does not run prune.sh: %v", ctr)
	}
	out, _ := s.runForPod(t, pod, ctr, ctr.Command[2])
	return out
}
