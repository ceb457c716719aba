package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// stamped is a log as the kubelet returns it with timestamps: each line
// "ms text" becomes "<RFC3339Nano> text".
func stamped(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		ms, text, _ := strings.Cut(l, " ")
		var n int
		fmt.Sscan(ms, &n)
		b.WriteString(at(n).Format(time.RFC3339Nano) + " " + text + "\n")
	}
	return b.String()
}

func terminated(name string, startedMS, finishedS int, message string) corev1.ContainerStatus {
	if message == "" {
		message = fmt.Sprintf(`[{"key":"StartedAt","value":%q,"type":3}]`, at(startedMS).Format("2006-01-02T15:04:05.000Z07:00"))
	}
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		StartedAt: metav1.NewTime(at(startedMS).Truncate(time.Second)), FinishedAt: metav1.NewTime(at(finishedS * 1000)), Message: message,
	}}}
}

func testPod(statuses ...corev1.ContainerStatus) *corev1.Pod {
	cond := func(typ corev1.PodConditionType, s int) corev1.PodCondition {
		return corev1.PodCondition{Type: typ, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at(s * 1000))}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", CreationTimestamp: metav1.NewTime(at(1000))},
		Status: corev1.PodStatus{
			Conditions: []corev1.PodCondition{
				cond(corev1.PodScheduled, 1), cond(corev1.PodReadyToStartContainers, 2), cond(corev1.PodInitialized, 3),
			},
			ContainerStatuses: statuses,
		},
	}
}

func testTaskRun(steps ...string) *v1.TaskRun {
	tr := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: "tr", CreationTimestamp: metav1.NewTime(t0)}}
	for _, st := range steps {
		tr.Status.Steps = append(tr.Status.Steps, v1.StepState{Name: st, Container: "step-" + st})
	}
	done := metav1.NewTime(at(20000))
	tr.Status.CompletionTime = &done
	return tr
}

func TestTimelines(t *testing.T) {
	buildLog := stamped(
		"4600 storage: overlay (STORAGE=auto: the kernel's overlay mounted here)",
		"4700 memory limit: 4294967296 bytes",
		"4800 building reg/app:tag for linux/amd64 on a linux/amd64 node (storage: overlay)",
		"4900 STEP 1/3: FROM reg/base",
		"5000 Trying to pull reg/base...",
		"6000 STEP 2/3: RUN make",
		"6500 STEP 3/3: RUN make install",
		"9000 COMMIT reg/app:tag",
		"9500 --> 0123456789ab",
		"9600 "+strings.Repeat("ab", 32),
		"9800 pushing reg/app:tag (up to 3 retries)",
		"12000 pushed reg/app@sha256:1234 (linux/amd64)",
	)
	type want struct {
		phases []phase
		total  time.Duration
		bud    time.Duration
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		name string
		tl   func() (timeline, error)
		want want
		err  string
	}{{
		name: "TaskRun: pod, clone and build steps, then Tekton",
		tl: func() (timeline, error) {
			pod := testPod(terminated("step-clone", 3400, 4, ""), terminated("step-build", 4500, 12, ""))
			return taskRunTimeline(testTaskRun("clone", "build"), pod, map[string]string{
				"step-clone": stamped("3450 cloning git://x/app.git at main (depth 1)", "4200 cloned commit abc"),
				"step-build": buildLog,
			})
		},
		want: want{
			phases: []phase{
				{"Tekton: TaskRun to pod", ms(1000)},
				{"pod: scheduling", 0},
				{"pod: sandbox (pause container, network)", ms(1000)},
				{"pod: Tekton's init containers", ms(1000)},
				{"pod: first step container starts", ms(400)},
				{"clone step", ms(50)},
				{"clone: git-sync fetch (depth 1), checkout", ms(750)},
				{"clone: results, exit", ms(300)},
				{"build: storage set-up (overlay test mount in a user namespace)", ms(100)},
				{"build: memory limit, credentials, labels", ms(200)},
				{"build: buildah bud starts", ms(100)},
				{"build: STEP 1/3 FROM", ms(1100)},
				{"build: STEP 2/3 RUN", ms(500)},
				{"build: STEP 3/3 RUN", ms(2500)},
				{"build: commit", ms(600)},
				{"build: after bud (arch check)", ms(200)},
				{"build: push", ms(2200)},
				// The step's end is known to the second only: 12 s, the
				// "pushed" line's time; then Tekton to the completion.
				{"build: results, exit", 0},
				{"Tekton: results, TaskRun done", ms(8000)},
			},
			total: ms(20000),
			bud:   ms(100 + 1100 + 500 + 2500 + 600),
		},
	}, {
		name: "raw build: git-sync as the init container, then the build container",
		tl: func() (timeline, error) {
			pod := testPod(terminated("build", 3200, 11, "ignored"))
			return rawTimeline(pod, stamped(
				"3300 building reg/app:tag for linux/amd64 (uid 0, CapEff 00000000a80425fb)",
				"3400 STEP 1/1: FROM reg/base",
				"5000 COMMIT reg/app:tag",
				"5200 "+strings.Repeat("cd", 32),
				"5300 pushing reg/app:tag",
				"7000 pushed reg/app:tag@sha256:99",
			))
		},
		want: want{
			phases: []phase{
				{"pod: scheduling", 0},
				{"pod: sandbox (pause container, network)", ms(1000)},
				{"pod: init container: git-sync clone (depth 1)", ms(1000)},
				{"pod: build container start", 0},
				{"build: shell", ms(300)},
				{"build: buildah bud starts", ms(100)},
				{"build: STEP 1/1 FROM", ms(1600)},
				{"build: commit", ms(200)},
				{"build: after bud (arch check)", ms(100)},
				{"build: push", ms(1700)},
				{"build: results, exit", ms(4000)},
			},
			total: ms(10000),
			bud:   ms(100 + 1600 + 200),
		},
	}, {
		name: "a step's termination message without StartedAt",
		tl: func() (timeline, error) {
			pod := testPod(terminated("step-build", 4500, 12, `[{"key":"IMAGE_DIGEST","value":"sha256:1","type":1}]`))
			return taskRunTimeline(testTaskRun("build"), pod, map[string]string{"step-build": buildLog})
		},
		err: "no StartedAt",
	}, {
		name: "a log line without a timestamp",
		tl: func() (timeline, error) {
			pod := testPod(terminated("step-build", 4500, 12, ""))
			return taskRunTimeline(testTaskRun("build"), pod, map[string]string{"step-build": "building x\n"})
		},
		err: "without a timestamp",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tl, err := tc.tl()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want.phases, tl.phases(), cmp.AllowUnexported(phase{})); diff != "" {
				t.Errorf("phases (-want +got):\n%s", diff)
			}
			var sum time.Duration
			for _, p := range tl.phases() {
				sum += p.d
			}
			if sum != tl.total() || tl.total() != tc.want.total {
				t.Errorf("phases add up to %s, total %s, want %s", sum, tl.total(), tc.want.total)
			}
			if got := tl.sum(budPhases...); got != tc.want.bud {
				t.Errorf("bud phases: %s, want %s", got, tc.want.bud)
			}
		})
	}
}

// A two-arch run's critical path is its slowest build's, then the
// manifest's; the table's means are per kind.
func TestPipelineTimelineAndTable(t *testing.T) {
	build := func(endMS int) timeline {
		tl := timeline{end: at(endMS)}
		tl.add(at(1000), "Tekton: TaskRun to pod")
		tl.add(at(2000), "build: push")
		return tl
	}
	manifest := timeline{end: at(15000)}
	manifest.add(at(12000), "Tekton: TaskRun to pod")
	manifest.add(at(13000), "manifest: push the index")
	done := metav1.NewTime(at(16000))
	pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0)}}
	pr.Status.CompletionTime = &done
	crit, slowest := pipelineTimeline(pr, map[string]timeline{"build-amd64": build(5000), "build-arm64": build(11000)}, manifest)
	if slowest != "build-arm64" {
		t.Errorf("slowest build %q, want build-arm64", slowest)
	}
	want := []phase{
		{"Tekton: PipelineRun to TaskRuns", time.Second},
		{"slowest build: Tekton: TaskRun to pod", time.Second},
		{"slowest build: build: push", 9 * time.Second},
		{"Tekton: builds done to manifest TaskRun", time.Second},
		{"manifest: Tekton: TaskRun to pod", time.Second},
		{"manifest: manifest: push the index", 2 * time.Second},
		{"Tekton: PipelineRun done", time.Second},
	}
	if diff := cmp.Diff(want, crit.phases(), cmp.AllowUnexported(phase{})); diff != "" {
		t.Errorf("critical path (-want +got):\n%s", diff)
	}

	pt := newPhaseTable("a", "b")
	pt.add("a", build(5000))
	pt.add("a", build(7000))
	pt.add("b", manifest)
	if got := pt.mean("a"); got != 5*time.Second {
		t.Errorf("mean of a: %s, want 5s", got)
	}
	if got := pt.meanOf("a", "build: push"); got != 4*time.Second {
		t.Errorf("mean push of a: %s, want 4s", got)
	}
	table := pt.String()
	for _, line := range []string{"build: push", "manifest: push the index", "total"} {
		if !strings.Contains(table, line) {
			t.Errorf("the table has no row %q:\n%s", line, table)
		}
	}
	if !strings.Contains(table, "-") {
		t.Errorf("the table marks no phase a kind lacks with -:\n%s", table)
	}
}

// The init containers' phase starts with the first of them; a pod without
// their statuses falls back to its PodReadyToStartContainers condition.
func TestInitStart(t *testing.T) {
	pod := testPod()
	if got := initStart(pod); !got.Equal(at(2000)) {
		t.Errorf("without init container statuses: %s, want the condition's %s", got, at(2000))
	}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{terminated("prepare", 2500, 3, ""), terminated("place-scripts", 1700, 2, "")}
	if got := initStart(pod); !got.Equal(at(1000)) {
		t.Errorf("with init container statuses: %s, want the first one's start %s", got, at(1000))
	}
}
