package cluster

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	genpipeline "github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

var (
	loadRuns   = flag.Int("load-runs", 50, "BenchmarkLoad: concurrent runs per round, half of two architectures, half of four")
	loadRounds = flag.Int("load-rounds", 3, "BenchmarkLoad: rounds of each way of pinning, interleaved")
)

// loadArchs are the fleet's architectures, as the four-architecture
// catalog lists them; the two-architecture one has the first two.
var loadArchs = []struct{ name, variant, id string }{
	{"amd64", "", "amd64"}, {"arm64", "", "arm64"}, {"arm", "v7", "arm-v7"}, {"s390x", "", "s390x"},
}

// loadFleet is 40 simulated build nodes, 10 of each of the four
// architectures, untainted and unlabelled beyond their architecture.
func loadFleet() []node {
	var nodes []node
	for _, a := range loadArchs {
		for i := 0; i < 10; i++ {
			nodes = append(nodes, node{name: fmt.Sprintf("load-%s-%02d", a.id, i), arch: a.name, id: a.id})
		}
	}
	return nodes
}

// loadResult is one round: how long from the first create until every
// build pod of every run was bound to a node, and where they went.
type loadResult struct {
	runs, pods, misplaced int
	scheduled             time.Duration
}

// BenchmarkLoad starts -load-runs concurrent runs (half building two
// architectures, half four) on the real control plane with 40 kwok nodes of
// four architectures, pinned two ways in turn: by the runs' taskRunSpecs
// (the generated example's) and by the arch-pinning admission policy (the
// same Pipeline, runs without taskRunSpecs, as tkn starts them). It counts
// build pods on a node of another architecture (the goal is 0: any is a
// failure) and reports the time from the first create to every build pod
// scheduled, policy/taskRunSpecs as a ratio. Nothing runs in the pods: kwok
// keeps them Running until the round's runs are cancelled.
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 1x -timeout 60m ./test/cluster/
func BenchmarkLoad(b *testing.B) {
	s := startStack(b, kwokNodes{extra: loadFleet()})
	var four string
	for _, a := range loadArchs {
		four += "  - name: " + a.name + "\n"
		if a.variant != "" {
			four += "    variant: " + a.variant + "\n"
		}
	}
	c2 := generateVariant(b, s.repo, "example:\n  namespace: load-two\n")
	c4 := generateVariant(b, s.repo, "architectures:\n"+four+"example:\n  namespace: load-four\n")
	s.install(b, c2)
	s.install(b, c4)
	// The four-architecture catalog's policy knows every platform of both.
	s.applyPolicy(b, c4)

	var byMode = map[string][]loadResult{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < *loadRounds; round++ {
			modes := []string{"taskRunSpecs", "policy"}
			if round%2 == 1 {
				modes[0], modes[1] = modes[1], modes[0]
			}
			for _, mode := range modes {
				r := s.loadRound(b, mode, c2, c4, *loadRuns)
				byMode[mode] = append(byMode[mode], r)
				b.Logf("round %d, %s: %d runs, %d build pods scheduled in %s, %d on a node of another architecture",
					round+1, mode, r.runs, r.pods, r.scheduled.Round(time.Millisecond), r.misplaced)
			}
		}
	}
	b.StopTimer()
	mean := func(rs []loadResult) (float64, int, int) {
		var sum time.Duration
		misplaced, pods := 0, 0
		for _, r := range rs {
			sum += r.scheduled
			misplaced += r.misplaced
			pods += r.pods
		}
		return sum.Seconds() / float64(len(rs)), misplaced, pods
	}
	trs, trsMis, trsPods := mean(byMode["taskRunSpecs"])
	pol, polMis, polPods := mean(byMode["policy"])
	b.ReportMetric(trs, "taskRunSpecs-s")
	b.ReportMetric(pol, "policy-s")
	b.ReportMetric(pol/trs, "policy/taskRunSpecs")
	b.ReportMetric(float64(trsMis+polMis), "misplaced")
	fmt.Printf("load: %d runs at once (half 2-arch, half 4-arch) on %d kwok nodes of 4 architectures, %d rounds each: "+
		"every build pod scheduled in %.1f s with taskRunSpecs (%d pods, %d misplaced), %.1f s with the arch policy (%d pods, %d misplaced): policy/taskRunSpecs = %.2f\n",
		*loadRuns, len(loadFleet())+len(buildNodes), len(byMode["policy"]), trs, trsPods, trsMis, pol, polPods, polMis, pol/trs)
	if trsMis+polMis > 0 {
		b.Errorf("%d build pods on a node of another architecture", trsMis+polMis)
	}
}

// loadRound creates n runs at once, half in c2 (two architectures), half
// in c4 (four), pinned by mode, waits until every build pod is bound to a
// node, checks each node's architecture against the pod's PLATFORM, then
// cancels the runs and waits for their pods to go.
func (s *stack) loadRound(t testing.TB, mode string, c2, c4 catalog, n int) loadResult {
	t.Helper()
	ctx := context.Background()
	type run struct {
		c    catalog
		name string
	}
	runs := make([]run, n)
	wantPods := 0
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range runs {
		c := c2
		if i%2 == 1 {
			c = c4
		}
		wantPods += len(c.cfg.Architectures)
		opts := genpipeline.ExampleRunOptions(c.cfg)
		opts.GenerateName = "load-" + strings.ToLower(mode) + "-"
		pr := genpipeline.PipelineRun(opts)
		if mode == "policy" {
			pr.Spec.TaskRunSpecs = nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Create(ctx, pr, metav1.CreateOptions{})
			if err != nil {
				errs <- err
				return
			}
			runs[i] = run{c, got.Name}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create a %s run: %v", mode, err)
	}

	var res loadResult
	res.runs = n
	var last time.Time
	s.waitFor(t, fmt.Sprintf("every build pod of %d %s runs scheduled", n, mode), 10*time.Minute, func(ctx context.Context) (bool, error) {
		bound, misplaced := 0, 0
		for _, ns := range []string{c2.ns(), c4.ns()} {
			pods, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: tasks.BuildTaskLabel + "=" + tasks.BuildName})
			if err != nil {
				return false, err
			}
			nodes, err := s.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			arch := map[string]string{}
			for _, nd := range nodes.Items {
				arch[nd.Name] = nd.Labels[corev1.LabelArchStable]
			}
			for _, p := range pods.Items {
				if !strings.HasPrefix(p.Labels[pipeline.PipelineRunLabelKey], "load-"+strings.ToLower(mode)+"-") || p.Spec.NodeName == "" {
					continue
				}
				bound++
				platform := envOf(&p, "step-build", "PLATFORM")
				if want := strings.Split(platform, "/"); len(want) < 2 || arch[p.Spec.NodeName] != want[1] {
					misplaced++
				}
				for _, cond := range p.Status.Conditions {
					if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionTrue && cond.LastTransitionTime.After(last) {
						last = cond.LastTransitionTime.Time
					}
				}
			}
		}
		res.pods, res.misplaced = bound, misplaced
		return bound == wantPods, fmt.Errorf("%d of %d build pods scheduled", bound, wantPods)
	})
	// The scheduler's own timestamps have whole seconds: the poll's time,
	// when later, is the better bound.
	res.scheduled = time.Since(t0)
	if d := last.Sub(t0); d > res.scheduled {
		res.scheduled = d
	}

	for _, r := range runs {
		if err := s.cancelRun(ctx, r.c.ns(), r.name); err != nil {
			t.Fatal(err)
		}
	}
	s.waitFor(t, "the round's runs cancelled and their pods gone", 10*time.Minute, func(ctx context.Context) (bool, error) {
		left := 0
		for _, ns := range []string{c2.ns(), c4.ns()} {
			pods, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending {
					left++
				}
			}
		}
		return left == 0, fmt.Errorf("%d pods left", left)
	})
	// Cancelled runs are deleted, so the next round lists only its own.
	for _, r := range runs {
		if err := s.tekton.TektonV1().PipelineRuns(r.c.ns()).Delete(ctx, r.name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete %s: %v", r.name, err)
		}
	}
	return res
}
