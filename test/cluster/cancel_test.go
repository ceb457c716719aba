package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// editJSON is raw with each path (dot-separated) set to its value.
func editJSON(t testing.TB, raw []byte, edits map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for path, v := range edits {
		parts := strings.Split(path, ".")
		cur := m
		for _, p := range parts[:len(parts)-1] {
			cur = cur[p].(map[string]any)
		}
		cur[parts[len(parts)-1]] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cancelSuperseded: through the real sink, a pull request's new commits
// cancel its run still in progress (not the new head's), its close cancels
// the rest, and a branch build running beside them is never touched. The
// canceller's TaskRun pod lands on a kwok node, where nothing runs: the test
// stands in for its kubelet, running the very script the TaskRun carries,
// with the pod's environment and a token of the pod's ServiceAccount, so the
// Role and the admission policy are the real ones. Then what that identity
// may not do: cancel a branch build, change anything but spec.status, delete
// a run, read Secrets or pods.
func (s *stack) cancelSuperseded(t *testing.T, c catalog, sign func([]byte) string, pushPayload []byte, pushAfter string) {
	raw, err := os.ReadFile(filepath.Join(s.repo, pullRequestFixture))
	if err != nil {
		t.Fatal(err)
	}
	const number = 77
	headA, headB := strings.Repeat("a1", 20), strings.Repeat("b2", 20)
	prEvent := func(action, head string) *v1.PipelineRun {
		body := editJSON(t, raw, map[string]any{"action": action, "number": number, "pull_request.number": number, "pull_request.head.sha": head})
		id := s.postEvent(t, body, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": uuid(t)})
		if action == "closed" {
			return nil
		}
		pr := s.eventRun(t, c.ns(), id)
		t.Logf("pull request %d %s at %s: PipelineRun %s", number, action, head[:8], pr.Name)
		if pr.Labels["tekton-multiarch.dev/pull-request"] != fmt.Sprint(number) || pr.Labels["tekton-multiarch.dev/commit"] != head {
			t.Errorf("PipelineRun %s labels %v, want pull-request %d and commit %s", pr.Name, pr.Labels, number, head)
		}
		return pr
	}
	running := func(pr *v1.PipelineRun) {
		r := &prRun{s: s, c: c, name: pr.Name}
		r.buildPods(t)
	}

	ra := prEvent("opened", headA)
	running(ra)
	branchBody := []byte(strings.Replace(string(pushPayload), `"after": "`+pushAfter+`"`, `"after": "`+strings.Repeat("c3", 20)+`"`, 1))
	branch := s.eventRun(t, c.ns(), s.postEvent(t, branchBody, map[string]string{"X-Hub-Signature-256": sign(branchBody), "X-GitHub-Delivery": uuid(t)}))
	running(branch)
	t.Cleanup(func() {
		if err := s.cancelRun(context.Background(), c.ns(), branch.Name); err != nil {
			t.Error(err)
		}
	})

	// New commits: the old head's run is cancelled, the new head's kept.
	body := editJSON(t, raw, map[string]any{"action": "synchronize", "number": number, "pull_request.number": number, "pull_request.head.sha": headB})
	syncID := s.postEvent(t, body, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": uuid(t)})
	rb := s.eventRun(t, c.ns(), syncID)
	running(rb)
	log := s.runCanceller(t, c, syncID)
	if !strings.Contains(log, "cancelled "+ra.Name+" (commit "+headA+")") {
		t.Errorf("the canceller's log does not say it cancelled %s:\n%s", ra.Name, log)
	}
	s.waitCancelled(t, c, ra.Name)
	s.checkNotCancelled(t, c, rb.Name, branch.Name)

	// Closed (merged): every run of the pull request goes; the branch's stays.
	body = editJSON(t, raw, map[string]any{"action": "closed", "number": number, "pull_request.number": number, "pull_request.head.sha": headB, "pull_request.merged": true})
	closeID := s.postEvent(t, body, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": uuid(t)})
	log = s.runCanceller(t, c, closeID)
	if !strings.Contains(log, "cancelled "+rb.Name+" (commit "+headB+")") || !strings.Contains(log, "was closed or merged") {
		t.Errorf("the canceller's log does not say it cancelled %s on the close:\n%s", rb.Name, log)
	}
	s.waitCancelled(t, c, rb.Name)
	s.checkNotCancelled(t, c, branch.Name)

	// The canceller's identity can do nothing else.
	kc := s.tokenKubeconfig(t, c.ns(), c.cfg.Triggers.PullRequests.CancelServiceAccount)
	as := func(args ...string) (string, error) { return s.kubectlAs(kc, c.ns(), args...) }
	for _, tc := range []struct {
		what string
		args []string
		want string // in the refusal
	}{
		{"cancel a branch build", []string{"patch", "pipelinerun", branch.Name, "--type", "merge", "-p", `{"spec":{"status":"Cancelled"}}`}, "never a branch or tag build"},
		{"change a pull-request run's params", []string{"patch", "pipelinerun", rb.Name, "--type", "merge", "-p", `{"spec":{"status":"Cancelled","params":[{"name":"IMAGE","value":"evil.example.com/x:y"}]}}`}, "may only set spec.status to Cancelled"},
		{"relabel a pull-request run", []string{"label", "pipelinerun", rb.Name, "tekton-multiarch.dev/pull-request-"}, "may only set spec.status to Cancelled"},
		{"delete a run", []string{"delete", "pipelinerun", rb.Name}, "forbidden"},
		{"create a run", []string{"create", "-f", filepath.Join(c.dir, "examples", "pipelinerun.yaml")}, "forbidden"},
		{"read Secrets", []string{"get", "secrets"}, "forbidden"},
		{"read pods", []string{"get", "pods"}, "forbidden"},
		{"list runs elsewhere", []string{"get", "pipelineruns", "-n", "default"}, "forbidden"},
	} {
		out, err := as(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("as the canceller, %s: err %v, output %q; want refused with %q", tc.what, err, strings.TrimSpace(out), tc.want)
			continue
		}
		t.Logf("as the canceller, %s: refused: %s", tc.what, strings.TrimSpace(out))
	}
	s.checkNotCancelled(t, c, branch.Name)
}

// runCanceller stands in for the kubelet of the canceller TaskRun that
// event id made: it runs the TaskRun's own script with its pod's
// environment as the pod's ServiceAccount, then ends the pod with the
// script's exit code, and returns the script's output.
func (s *stack) runCanceller(t testing.TB, c catalog, id string) string {
	t.Helper()
	var tr *v1.TaskRun
	s.waitFor(t, "the canceller TaskRun of event "+id, 60*time.Second, func(ctx context.Context) (bool, error) {
		// The event's run's TaskRuns carry its ID too.
		list, err := s.tekton.TektonV1().TaskRuns(c.ns()).List(ctx, metav1.ListOptions{LabelSelector: eventIDKey + "=" + id + ",!" + pipeline.PipelineRunLabelKey})
		if err != nil {
			return false, err
		}
		if len(list.Items) != 1 {
			return false, fmt.Errorf("%d TaskRuns of event %s", len(list.Items), id)
		}
		tr = &list.Items[0]
		return true, nil
	})
	if tr.Spec.TaskSpec == nil || len(tr.Spec.TaskSpec.Steps) != 1 || tr.Spec.TaskSpec.Steps[0].Script != scripts.CancelSuperseded {
		t.Fatalf("TaskRun %s does not run cancel-superseded.sh", tr.Name)
	}
	r := &prRun{s: s, c: c}
	pod := r.waitPod(t, tr)
	if pod.Spec.ServiceAccountName != c.cfg.Triggers.PullRequests.CancelServiceAccount {
		t.Errorf("canceller pod runs as %q, want %q", pod.Spec.ServiceAccountName, c.cfg.Triggers.PullRequests.CancelServiceAccount)
	}
	ctr := container(pod, "step-cancel")
	if ctr == nil {
		t.Fatalf("pod %s has no step-cancel container", pod.Name)
	}
	out, code := s.runForPod(t, pod, ctr, scripts.CancelSuperseded)
	done := r.waitTaskRunDone(t, tr.Name)
	if code == 0 && !succeeded(done.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Errorf("canceller TaskRun %s: %s", tr.Name, condition(done.Status.GetCondition(apis.ConditionSucceeded)))
	}
	return out
}

// waitCancelled waits for a run to end Cancelled, its pods gone.
func (s *stack) waitCancelled(t testing.TB, c catalog, name string) {
	t.Helper()
	s.waitFor(t, "PipelineRun "+name+" cancelled", 60*time.Second, func(ctx context.Context) (bool, error) {
		pr, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond := pr.Status.GetCondition(apis.ConditionSucceeded)
		if cond == nil || cond.Status == corev1.ConditionUnknown {
			return false, fmt.Errorf("PipelineRun %s: %s", name, condition(cond))
		}
		if cond.Reason != v1.PipelineRunReasonCancelled.String() {
			t.Fatalf("PipelineRun %s ended %s, want Cancelled", name, condition(cond))
		}
		return true, nil
	})
}

// checkNotCancelled: the runs are still going, nobody asked them to stop.
func (s *stack) checkNotCancelled(t testing.TB, c catalog, names ...string) {
	t.Helper()
	for _, name := range names {
		pr, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Spec.Status != "" || pr.IsDone() {
			t.Errorf("PipelineRun %s: spec.status %q, %s; want it still running", name, pr.Spec.Status, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
		}
	}
}

// cancelRun cancels a run as the admin, so that its pods leave the nodes.
func (s *stack) cancelRun(ctx context.Context, ns, name string) error {
	patch := []byte(`{"spec":{"status":"` + string(v1.PipelineRunSpecStatusCancelled) + `"}}`)
	if _, err := s.tekton.TektonV1().PipelineRuns(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("cancel %s: %w", name, err)
	}
	return nil
}
