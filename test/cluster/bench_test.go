package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
		n := s.timedBuild(b, c, w, fmt.Sprintf("native-%d", i), emulationParams("linux/amd64", "false"))
		e := s.timedBuild(b, c, w, fmt.Sprintf("emulated-%d", i), emulationParams("linux/arm64", "true"))
		runNative += spinTime(b, n, "amd64")
		runEmulated += spinTime(b, e, "arm64")
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

func emulationParams(platform, emulation string) map[string]string {
	return map[string]string{"PLATFORM": platform, "ALLOW_EMULATION": emulation, "DOCKERFILE": "Dockerfile.cpu"}
}

var spinRE = regexp.MustCompile(`spin \d+ on (\w+): (\d+) ms`)

// spinTime is the fixture's CPU-bound RUN step's own time, as it printed
// it, checking that it ran as arch.
func spinTime(tb testing.TB, bt buildTiming, arch string) time.Duration {
	tb.Helper()
	m := spinRE.FindStringSubmatch(bt.log)
	if m == nil {
		tb.Fatalf("TaskRun %s: the RUN step printed no time:\n%s", bt.tr.Name, bt.log)
	}
	if m[1] != arch {
		tb.Fatalf("TaskRun %s: the RUN step ran as %s, want %s", bt.tr.Name, m[1], arch)
	}
	ms, _ := strconv.Atoi(m[2])
	tb.Logf("%s: RUN step %d ms", bt.tr.Name, ms)
	return time.Duration(ms) * time.Millisecond
}

// buildTiming is one build on the real node: the build step's wall time
// (its container's start and end as Tekton records them, to the second),
// buildah bud's (from the kubelet's log timestamps, to the millisecond),
// the step's log and the pushed digest.
type buildTiming struct {
	tr        *v1.TaskRun
	step, bud time.Duration
	log       string // the build step's, without timestamps
	digest    string
	// spans are each step's first and last log lines' times (the kubelet's,
	// to the millisecond) and its log without them, by step name.
	spans map[string]logSpan
	// tl is the TaskRun's phases (taskRunTimeline).
	tl timeline
}

type logSpan struct {
	first, last time.Time
	text        string
}

// timedBuild runs the buildah-build Task alone on the real node, as a
// TaskRun named bench-<name> in c's namespace, and times it. params go on
// top of the defaults: the node fixture's repository at main, pushed to
// w.image("bench") + "-" + name over plain HTTP, linux/amd64. The TaskRun
// and its pod are deleted after, so that no build's pod or storage lingers
// into the next one's measurement.
func (s *stack) timedBuild(tb testing.TB, c catalog, w *nodeWorld, name string, params map[string]string, buildArgs ...string) buildTiming {
	tb.Helper()
	ctx := context.Background()
	values := map[string]string{
		"GIT_URL": w.fixture.URL, "GIT_REF": "main", "IMAGE": w.image("bench"), "TAG_SUFFIX": "-" + name,
		"PLATFORM": "linux/amd64", "TLS_VERIFY": "false",
	}
	for k, v := range params {
		values[k] = v
	}
	var ps v1.Params
	for _, k := range sortedKeys(values) {
		ps = append(ps, v1.Param{Name: k, Value: *v1.NewStructuredValues(values[k])})
	}
	if len(buildArgs) > 0 {
		ps = append(ps, v1.Param{Name: "BUILD_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: buildArgs}})
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-" + name, Namespace: c.ns()},
		Spec: v1.TaskRunSpec{
			TaskRef:            &v1.TaskRef{Name: "buildah-build"},
			ServiceAccountName: c.cfg.Example.ServiceAccount,
			Params:             ps,
			PodTemplate:        realNodePodTemplate(),
		},
	}
	trs := s.tekton.TektonV1().TaskRuns(c.ns())
	if _, err := trs.Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	var done *v1.TaskRun
	s.waitFor(tb, "TaskRun "+tr.Name, 15*time.Minute, func(ctx context.Context) (bool, error) {
		var err error
		done, err = trs.Get(ctx, tr.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return done.IsDone(), fmt.Errorf("TaskRun %s: %s", tr.Name, condition(done.Status.GetCondition(apis.ConditionSucceeded)))
	})
	if !succeeded(done.Status.GetCondition(apis.ConditionSucceeded)) {
		tb.Fatalf("TaskRun %s: %s\n%s", tr.Name, condition(done.Status.GetCondition(apis.ConditionSucceeded)), s.stepLog(tb, c.ns(), done, "step-build"))
	}
	bt := buildTiming{tr: done, spans: map[string]logSpan{}}
	var logs map[string]string
	bt.tl, logs = s.taskRunPhases(tb, c.ns(), done)
	var err error
	bt.log, bt.bud, err = budTime(logs["step-build"])
	if err != nil {
		tb.Fatalf("TaskRun %s: %v\n%s", tr.Name, err, bt.log)
	}
	for _, st := range done.Status.Steps {
		if st.Name == "build" && st.Terminated != nil {
			bt.step = st.Terminated.FinishedAt.Sub(st.Terminated.StartedAt.Time)
		}
		if sp, ok := spanOf(logs[st.Container]); ok {
			bt.spans[st.Name] = sp
		}
	}
	for _, r := range done.Status.Results {
		if r.Name == "IMAGE_DIGEST" {
			bt.digest = r.Value.StringVal
		}
	}
	if bt.step == 0 || bt.digest == "" {
		tb.Fatalf("TaskRun %s: no build step time (%s) or no IMAGE_DIGEST (%q)", tr.Name, bt.step, bt.digest)
	}
	tb.Logf("%s: build step %s, buildah bud %s, %s", tr.Name, bt.step, bt.bud, bt.digest)

	if err := trs.Delete(ctx, tr.Name, metav1.DeleteOptions{}); err != nil {
		tb.Fatal(err)
	}
	s.waitPodGone(tb, c.ns(), done.Status.PodName)
	return bt
}

// taskRunPhases reads a finished TaskRun's pod and its steps' logs (with
// the kubelet's timestamps, by container) and returns its phases
// (taskRunTimeline) and the logs.
func (s *stack) taskRunPhases(tb testing.TB, ns string, tr *v1.TaskRun) (timeline, map[string]string) {
	tb.Helper()
	ctx := context.Background()
	pod, err := s.kube.CoreV1().Pods(ns).Get(ctx, tr.Status.PodName, metav1.GetOptions{})
	if err != nil {
		tb.Fatalf("TaskRun %s: %v", tr.Name, err)
	}
	logs := map[string]string{}
	for _, st := range tr.Status.Steps {
		raw, err := s.kube.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: st.Container, Timestamps: true}).DoRaw(ctx)
		if err != nil {
			tb.Fatalf("TaskRun %s: the %s step's log: %v", tr.Name, st.Name, err)
		}
		logs[st.Container] = string(raw)
	}
	tl, err := taskRunTimeline(tr, pod, logs)
	if err != nil {
		tb.Fatal(err)
	}
	return tl, logs
}

// waitPodGone waits until pod is deleted, so that its storage does not
// linger into the next build's measurement.
func (s *stack) waitPodGone(tb testing.TB, ns, pod string) {
	tb.Helper()
	s.waitFor(tb, "pod "+pod+" gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := s.kube.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Errorf("pod %s still there (%v)", pod, err)
	})
}

// budTime reads a step log with the kubelet's timestamps (kubectl logs
// --timestamps) and returns it without them, and buildah bud's time: from
// build.sh's "building ..." line, printed just before it starts buildah
// bud, to the last line buildah printed (the image ID) before "pushing ...".
func budTime(raw string) (string, time.Duration, error) {
	var log strings.Builder
	var start, last, end time.Time
	for _, line := range strings.Split(strings.TrimSuffix(raw, "\n"), "\n") {
		stamp, text, _ := strings.Cut(line, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			return log.String(), 0, fmt.Errorf("log line without a timestamp: %q", line)
		}
		log.WriteString(text + "\n")
		switch {
		case start.IsZero() && strings.HasPrefix(text, "building "):
			start = at
		case !start.IsZero() && end.IsZero() && strings.HasPrefix(text, "pushing "):
			end = last
		}
		last = at
	}
	if start.IsZero() || end.IsZero() {
		return log.String(), 0, fmt.Errorf("no \"building\" and \"pushing\" lines in the build log")
	}
	return log.String(), end.Sub(start), nil
}

// spanOf is the time of the first and last lines of a log read with the
// kubelet's timestamps, and its text; false for a log without a line.
func spanOf(raw string) (logSpan, bool) {
	var sp logSpan
	for _, line := range strings.Split(strings.TrimSuffix(raw, "\n"), "\n") {
		stamp, text, _ := strings.Cut(line, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			continue
		}
		sp.text += text + "\n"
		if sp.first.IsZero() {
			sp.first = at
		}
		sp.last = at
	}
	return sp, !sp.first.IsZero()
}
