package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// burstSize is how many pushes the burst sends, as a busy repository does.
const burstSize = 20

// uuid is a random version-4 UUID, as GitHub's X-GitHub-Delivery.
func uuid(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// burst sends burstSize signed pushes of different commits to the real sink
// at once: each must start exactly one run of its commit, every build pod
// on a node of its architecture. Then GitHub's redelivery of one of them
// (the same X-GitHub-Delivery, the same body): the sink takes it (202), and
// no second run of that commit starts, because the run is named after the
// delivery and its create fails.
func (s *stack) burst(t *testing.T, c catalog, payload []byte, after string, sign func([]byte) string) {
	before := s.triggeredRuns(t, c)
	type push struct {
		commit, delivery, event string
		body                    []byte
	}
	pushes := make([]*push, burstSize)
	for i := range pushes {
		commit := strings.Repeat("0", 8) + hex.EncodeToString([]byte(uuid(t)))[:32]
		body := []byte(strings.Replace(string(payload), `"after": "`+after+`"`, `"after": "`+commit+`"`, 1))
		if string(body) == string(payload) {
			t.Fatalf("no %q in the push fixture to replace", `"after": "`+after+`"`)
		}
		pushes[i] = &push{commit: commit, delivery: uuid(t), body: body}
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, p := range pushes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if p.event, err = s.sendEvent(t, p.body, map[string]string{"X-Hub-Signature-256": sign(p.body), "X-GitHub-Delivery": p.delivery}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	sent := time.Since(t0)
	t.Logf("%d signed pushes accepted by the sink in %s", burstSize, sent.Round(time.Millisecond))

	runs := map[string]*v1.PipelineRun{}
	for _, p := range pushes {
		pr := s.eventRun(t, c.ns(), p.event)
		if got := prParam(pr, "GIT_REF"); got != p.commit {
			t.Errorf("the run of delivery %s builds %s, not its commit %s", p.delivery, got, p.commit)
		}
		if want := "multiarch-build-" + p.delivery; pr.Name != want {
			t.Errorf("the run of delivery %s is named %s, want %s", p.delivery, pr.Name, want)
		}
		runs[p.commit] = pr
	}
	if len(runs) != burstSize {
		t.Errorf("%d distinct commits built, want %d", len(runs), burstSize)
	}
	if after := s.triggeredRuns(t, c); after-before != burstSize {
		t.Errorf("%d PipelineRuns from the burst, want exactly %d", after-before, burstSize)
	}

	// Every build pod of every run on a node of its architecture.
	misplaced, pods := 0, 0
	for _, pr := range runs {
		r := &prRun{s: s, c: c, name: pr.Name}
		_, byArch := r.buildPods(t)
		for arch, pod := range byArch {
			pods++
			if !onArch(pod.Spec.NodeName, arch) {
				misplaced++
			}
			checkBuildNode(t, c, pod, arch)
		}
	}
	t.Logf("BURST: %d pushes in %s, %d runs, %d build pods scheduled %s after the first push, %d misplaced",
		burstSize, sent.Round(time.Millisecond), len(runs), pods, time.Since(t0).Round(time.Millisecond), misplaced)

	// GitHub's "Redeliver": the same delivery, the same body.
	p := pushes[0]
	id := s.postEvent(t, p.body, map[string]string{"X-Hub-Signature-256": sign(p.body), "X-GitHub-Delivery": p.delivery})
	var line string
	s.waitFor(t, "the sink's log of redelivered event "+id, 30*time.Second, func(context.Context) (bool, error) {
		for _, l := range strings.Split(readFile(t, filepath.Join(s.logDir, "triggers-eventlistenersink.log")), "\n") {
			if strings.Contains(l, id) && strings.Contains(l, "already exists") {
				line = l
				return true, nil
			}
		}
		return false, fmt.Errorf("no line of event %s saying the run already exists", id)
	})
	t.Logf("redelivery of %s: sink log: %s", p.delivery, line)
	time.Sleep(2 * time.Second)
	list, err := s.tekton.TektonV1().PipelineRuns(c.ns()).List(context.Background(), metav1.ListOptions{LabelSelector: eventIDKey + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("the redelivery made %d PipelineRuns, want none", len(list.Items))
	}
	if after := s.triggeredRuns(t, c); after-before != burstSize {
		t.Errorf("%d PipelineRuns after the redelivery, want still %d", after-before, burstSize)
	}
	// One build of the commit, and the run is the first delivery's.
	pr, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(context.Background(), "multiarch-build-"+p.delivery, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Labels[eventIDKey] != p.event {
		t.Errorf("run %s now carries event %s, want the first delivery's %s", pr.Name, pr.Labels[eventIDKey], p.event)
	}

	// The burst's runs are cancelled, so that their pods leave the nodes.
	for _, pr := range runs {
		if err := s.cancelRun(context.Background(), c.ns(), pr.Name); err != nil {
			t.Error(err)
		}
	}
	s.waitFor(t, "the burst's runs cancelled and their pods gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
		left := 0
		for _, pr := range runs {
			got, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Get(ctx, pr.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !got.IsDone() {
				left++
			}
			pods, err := s.kube.CoreV1().Pods(c.ns()).List(ctx, metav1.ListOptions{LabelSelector: pipeline.PipelineRunLabelKey + "=" + pr.Name})
			if err != nil {
				return false, err
			}
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil && p.Status.Phase == "Running" {
					left++
				}
			}
		}
		return left == 0, fmt.Errorf("%d runs or running pods left", left)
	})
}

// prParam is a run's string param.
func prParam(pr *v1.PipelineRun, name string) string {
	for _, p := range pr.Spec.Params {
		if p.Name == name {
			return p.Value.StringVal
		}
	}
	return ""
}

// onArch says whether node is a build node of arch (as the pipeline task
// names it: arm-v7).
func onArch(node, arch string) bool {
	for _, n := range buildNodes {
		if n.name == node {
			return n.archID() == arch
		}
	}
	return false
}
