package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// BenchmarkEmulation is the seed's argument for native builds, measured on
// the real node: the same CPU-bound RUN step (the fixture's `spin`) built by
// the catalog's buildah-build Task natively for linux/amd64, then for
// linux/arm64 under qemu-user emulation, one TaskRun after the other on the
// same node. It reports the RUN step's own time (it prints it) and the build
// step's wall time, and the emulated/native ratio of each.
//
//	go test -run '^$' -bench BenchmarkEmulation -benchtime 1x ./test/cluster/
func BenchmarkEmulation(b *testing.B) {
	realbuild.EnsureArm64Emulation(b)
	p := &realNodeProvider{}
	s := startStack(b, kwokNodes{}, p)
	w := s.startNodeWorld(b)
	c := generateVariant(b, s.repo, realNodeConfig(b, s.images, "real-node-builds", ""))
	s.install(b, c)
	s.installNodeProfiles(b, c)

	var runNative, runEmulated, stepNative, stepEmulated time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := s.timedBuild(b, c, w, fmt.Sprintf("native-%d", i), "linux/amd64", "false")
		e := s.timedBuild(b, c, w, fmt.Sprintf("emulated-%d", i), "linux/arm64", "true")
		runNative += n.run
		runEmulated += e.run
		stepNative += n.step
		stepEmulated += e.step
	}
	b.StopTimer()
	runRatio := float64(runEmulated) / float64(runNative)
	stepRatio := float64(stepEmulated) / float64(stepNative)
	b.ReportMetric(runNative.Seconds()/float64(b.N), "native-RUN-s")
	b.ReportMetric(runEmulated.Seconds()/float64(b.N), "emulated-RUN-s")
	b.ReportMetric(runRatio, "RUN-emulated/native")
	b.ReportMetric(stepRatio, "buildstep-emulated/native")
	fmt.Printf("emulation on the real node: CPU-bound RUN step native %.2f s, arm64 under qemu %.2f s: %.1fx slower; "+
		"whole build step %.0f s vs %.0f s: %.1fx\n",
		runNative.Seconds()/float64(b.N), runEmulated.Seconds()/float64(b.N), runRatio,
		stepNative.Seconds()/float64(b.N), stepEmulated.Seconds()/float64(b.N), stepRatio)
}

// buildTiming is one build's RUN step time (as the step printed it) and the
// build step's wall time (from its container's start and end, to the second).
type buildTiming struct{ run, step time.Duration }

var spinRE = regexp.MustCompile(`spin \d+ on (\w+): (\d+) ms`)

// timedBuild runs the buildah-build Task alone for one platform on the real
// node, building Dockerfile.cpu, and times it.
func (s *stack) timedBuild(tb testing.TB, c catalog, w *nodeWorld, name, platform, emulation string) buildTiming {
	tb.Helper()
	ctx := context.Background()
	str := func(n, v string) v1.Param { return v1.Param{Name: n, Value: *v1.NewStructuredValues(v)} }
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-" + name, Namespace: c.ns()},
		Spec: v1.TaskRunSpec{
			TaskRef:            &v1.TaskRef{Name: "buildah-build"},
			ServiceAccountName: c.cfg.Example.ServiceAccount,
			Params: v1.Params{
				str("GIT_URL", w.fixture.URL), str("GIT_REF", "main"), str("IMAGE", w.image("bench")),
				str("TAG_SUFFIX", "-"+name), str("PLATFORM", platform), str("ALLOW_EMULATION", emulation),
				str("DOCKERFILE", "Dockerfile.cpu"), str("TLS_VERIFY", "false"),
			},
			PodTemplate: realNodePodTemplate(),
		},
	}
	if _, err := s.tekton.TektonV1().TaskRuns(c.ns()).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	var done *v1.TaskRun
	s.waitFor(tb, "TaskRun "+tr.Name, 15*time.Minute, func(ctx context.Context) (bool, error) {
		var err error
		done, err = s.tekton.TektonV1().TaskRuns(c.ns()).Get(ctx, tr.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return done.IsDone(), fmt.Errorf("TaskRun %s: %s", tr.Name, condition(done.Status.GetCondition(apis.ConditionSucceeded)))
	})
	if !succeeded(done.Status.GetCondition(apis.ConditionSucceeded)) {
		tb.Fatalf("TaskRun %s: %s\n%s", tr.Name, condition(done.Status.GetCondition(apis.ConditionSucceeded)), s.stepLog(tb, c.ns(), done, "step-build"))
	}
	log := s.stepLog(tb, c.ns(), done, "step-build")
	m := spinRE.FindStringSubmatch(log)
	if m == nil {
		tb.Fatalf("TaskRun %s: the RUN step printed no time:\n%s", tr.Name, log)
	}
	if want := platform[len("linux/"):]; m[1] != want {
		tb.Fatalf("TaskRun %s: the RUN step ran as %s, want %s", tr.Name, m[1], want)
	}
	ms, _ := strconv.Atoi(m[2])
	var step time.Duration
	for _, st := range done.Status.Steps {
		if st.Name == "build" && st.Terminated != nil {
			step = st.Terminated.FinishedAt.Sub(st.Terminated.StartedAt.Time)
		}
	}
	tb.Logf("%s (%s): RUN step %d ms, build step %s", tr.Name, platform, ms, step)
	return buildTiming{run: time.Duration(ms) * time.Millisecond, step: step}
}
