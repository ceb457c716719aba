package start

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// writes records every Write separately: a line is whole only if it was
// written in one.
type writes struct {
	mu sync.Mutex
	w  []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w = append(w.w, string(p))
	return len(p), nil
}

func (w *writes) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.w)
}

func TestCopyLines(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"lines", "STEP 1/2: FROM scratch\nSTEP 2/2: COPY . /\n", []string{"[p] STEP 1/2: FROM scratch\n", "[p] STEP 2/2: COPY . /\n"}},
		{"last line without newline", "a\nb", []string{"[p] a\n", "[p] b\n"}},
		{"carriage returns", "a\r\nb\r\n", []string{"[p] a\n", "[p] b\n"}},
		{"empty lines kept", "a\n\nb\n", []string{"[p] a\n", "[p] \n", "[p] b\n"}},
		{"nothing", "", nil},
		{"a line longer than maxLine in pieces", long + "\n", []string{"[p] " + long[:maxLine] + "\n", "[p] " + long[maxLine:] + "\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &writes{}
			if err := copyLines(w, bufio.NewReaderSize(strings.NewReader(tc.in), 16), "[p] "); err != nil {
				t.Fatal(err)
			}
			if got := w.all(); !slices.Equal(got, tc.want) {
				t.Errorf("got %d writes %q, want %q", len(got), trunc(got), trunc(tc.want))
			}
		})
	}
}

func trunc(ss []string) []string {
	var out []string
	for _, s := range ss {
		if len(s) > 40 {
			s = s[:40] + fmt.Sprintf("...(%d)", len(s))
		}
		out = append(out, s)
	}
	return out
}

func TestLinePrefix(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tr    *v1.TaskRun
		step  string
		want  string
		steps int
	}{
		{"build step of a per-arch build", buildTR("r-build-arm64", "build-arm64", "linux/arm64"), "build", "[linux/arm64] ", 2},
		{"its clone step", buildTR("r-build-arm64", "build-arm64", "linux/arm64"), "clone", "[linux/arm64 clone] ", 2},
		{"a matrix build", buildTR("r-build-0", "build", "linux/arm/v7"), "build", "[linux/arm/v7] ", 2},
		{"the manifest", manifestTR("r-manifest"), "manifest", "[manifest] ", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linePrefix(tc.tr, tc.step); got != tc.want {
				t.Errorf("linePrefix = %q, want %q", got, tc.want)
			}
		})
	}
}

func buildTR(name, task, platform string) *v1.TaskRun {
	return &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"tekton.dev/pipelineTask": task, "tekton.dev/pipelineRun": "r"}},
		Spec:       v1.TaskRunSpec{Params: v1.Params{{Name: "PLATFORM", Value: *v1.NewStructuredValues(platform)}}},
		Status:     v1.TaskRunStatus{TaskRunStatusFields: v1.TaskRunStatusFields{PodName: name + "-pod", Steps: []v1.StepState{{Name: "clone", Container: "step-clone"}, {Name: "build", Container: "step-build"}}}},
	}
}

func manifestTR(name string) *v1.TaskRun {
	return &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"tekton.dev/pipelineTask": "manifest", "tekton.dev/pipelineRun": "r"}},
		Status:     v1.TaskRunStatus{TaskRunStatusFields: v1.TaskRunStatusFields{PodName: name + "-pod", Steps: []v1.StepState{{Name: "manifest", Container: "step-manifest"}}}},
	}
}

// withSteps is tr with its first n steps running.
func withSteps(tr *v1.TaskRun, n int) *v1.TaskRun {
	tr = tr.DeepCopy()
	for i := range n {
		tr.Status.Steps[i].Running = &corev1.ContainerStateRunning{}
	}
	return tr
}

func done(tr *v1.TaskRun) *v1.TaskRun {
	tr = tr.DeepCopy()
	for i := range tr.Status.Steps {
		tr.Status.Steps[i].Running = nil
		tr.Status.Steps[i].Terminated = &corev1.ContainerStateTerminated{}
	}
	tr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue}}
	return tr
}

// nodeLogs stands in for the nodes: one pipe per container, and the order
// in which the logs were opened.
type nodeLogs struct {
	mu     sync.Mutex
	pipes  map[string]*io.PipeWriter
	opened []string
	closed map[string]bool
	// closedAtOpen: for each open, which containers of the pod had ended.
	closedAtOpen map[string][]string
}

func newNodeLogs() *nodeLogs {
	return &nodeLogs{pipes: map[string]*io.PipeWriter{}, closed: map[string]bool{}, closedAtOpen: map[string][]string{}}
}

func (n *nodeLogs) open(_ context.Context, _, pod, container string) (io.ReadCloser, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := pod + "/" + container
	r, w := io.Pipe()
	n.pipes[key] = w
	n.opened = append(n.opened, key)
	for k, c := range n.closed {
		if c && strings.HasPrefix(k, pod+"/") {
			n.closedAtOpen[key] = append(n.closedAtOpen[key], k)
		}
	}
	return r, nil
}

// write waits for the stream of key to be open, then writes s to it.
func (n *nodeLogs) write(t *testing.T, key, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n.mu.Lock()
		w := n.pipes[key]
		n.mu.Unlock()
		if w != nil {
			if _, err := io.WriteString(w, s); err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was never opened; opened: %v", key, n.opened)
		}
		time.Sleep(time.Millisecond)
	}
}

func (n *nodeLogs) end(t *testing.T, key string) {
	t.Helper()
	n.write(t, key, "")
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed[key] = true
	n.pipes[key].Close()
}

// Two builds write half-lines by turns: every line comes out whole, with
// its platform; a TaskRun's steps are read in order, the next one only once
// the one before has ended.
func TestStreamsInterleaveWholeLines(t *testing.T) {
	nodes := newNodeLogs()
	w := &writes{}
	s := newStreams(context.Background(), "ns", nodes.open, &lineWriter{out: w})
	amd, arm := buildTR("r-build-amd64", "build-amd64", "linux/amd64"), buildTR("r-build-arm64", "build-arm64", "linux/arm64")
	s.update(withSteps(amd, 2)) // Tekton starts every step container at once
	s.update(withSteps(arm, 1))

	nodes.write(t, "r-build-amd64-pod/step-clone", "cloning git://h/app at ma")
	nodes.write(t, "r-build-arm64-pod/step-clone", "cloning git://h/app at main\ncloned com")
	nodes.write(t, "r-build-amd64-pod/step-clone", "in\n")
	nodes.write(t, "r-build-arm64-pod/step-clone", "mit abc\n")
	nodes.end(t, "r-build-amd64-pod/step-clone")
	nodes.end(t, "r-build-arm64-pod/step-clone")
	s.update(withSteps(arm, 2))
	nodes.write(t, "r-build-arm64-pod/step-build", "STEP 1/4: FROM ")
	nodes.write(t, "r-build-amd64-pod/step-build", "STEP 1/4: FROM base\nSTEP 2/4: RUN ma")
	nodes.write(t, "r-build-arm64-pod/step-build", "base\n")
	nodes.write(t, "r-build-amd64-pod/step-build", "ke\n")
	nodes.end(t, "r-build-amd64-pod/step-build")
	nodes.end(t, "r-build-arm64-pod/step-build")
	s.update(done(amd))
	s.update(done(arm))
	s.finish()

	got := w.all()
	want := []string{
		"[linux/amd64 clone] cloning git://h/app at main\n",
		"[linux/arm64 clone] cloning git://h/app at main\n",
		"[linux/arm64 clone] cloned commit abc\n",
		"[linux/amd64] STEP 1/4: FROM base\n",
		"[linux/amd64] STEP 2/4: RUN make\n",
		"[linux/arm64] STEP 1/4: FROM base\n",
	}
	if len(got) != len(want) {
		t.Errorf("%d writes %q, want the %d lines %q", len(got), got, len(want), want)
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("no write %q in %q", l, got)
		}
	}
	// Per platform, the lines in the order the step wrote them.
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		var gotP, wantP []string
		for _, l := range got {
			if strings.HasPrefix(l, "["+p) {
				gotP = append(gotP, l)
			}
		}
		for _, l := range want {
			if strings.HasPrefix(l, "["+p) {
				wantP = append(wantP, l)
			}
		}
		if !slices.Equal(gotP, wantP) {
			t.Errorf("%s: lines in order %q, want %q", p, gotP, wantP)
		}
	}
	for _, pod := range []string{"r-build-amd64-pod", "r-build-arm64-pod"} {
		if c := nodes.closedAtOpen[pod+"/step-build"]; !slices.Equal(c, []string{pod + "/step-clone"}) {
			t.Errorf("%s: step-build opened while %v had ended, want after step-clone only", pod, c)
		}
	}
}

// Nodes that serve no logs (kwok's): one line says so per TaskRun, and
// nothing waits for them, neither a refused open nor one never answered.
func TestStreamsWithoutLogs(t *testing.T) {
	saved := openTimeout
	openTimeout = 100 * time.Millisecond
	t.Cleanup(func() { openTimeout = saved })
	for _, tc := range []struct {
		name string
		open logOpener
		want *regexp.Regexp
	}{
		{"refused", func(context.Context, string, string, string) (io.ReadCloser, error) {
			return nil, &url.Error{Op: "Get", URL: "https://10.244.0.1:10250/containerLogs/ns/p/step-clone", Err: errors.New("dial tcp 10.244.0.1:10250: connect: connection refused")}
		}, regexp.MustCompile(`^\[linux/arm64 clone\] no step logs \(dial tcp 10\.244\.0\.1:10250: connect: connection refused\); following the status only\n$`)},
		{"never answered", func(ctx context.Context, _, _, _ string) (io.ReadCloser, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, regexp.MustCompile(`^\[linux/arm64 clone\] no step logs \(the node did not answer within .*\); following the status only\n$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &writes{}
			s := newStreams(context.Background(), "ns", tc.open, &lineWriter{out: w})
			tr := buildTR("r-build-arm64", "build-arm64", "linux/arm64")
			s.update(done(tr))
			s.update(done(tr))
			begin := time.Now()
			s.finish()
			if d := time.Since(begin); d > 5*time.Second {
				t.Errorf("finish took %s", d)
			}
			got := w.all()
			if len(got) != 1 || !tc.want.MatchString(got[0]) {
				t.Errorf("writes %q, want one matching %s", got, tc.want)
			}
		})
	}
}

// A TaskRun that ends before a step starts (a failed clone): its stream
// stops there instead of waiting for the step.
func TestStreamsStepNeverStarts(t *testing.T) {
	nodes := newNodeLogs()
	w := &writes{}
	s := newStreams(context.Background(), "ns", nodes.open, &lineWriter{out: w})
	tr := buildTR("r-build-amd64", "build-amd64", "linux/amd64")
	s.update(withSteps(tr, 1))
	nodes.write(t, "r-build-amd64-pod/step-clone", "git-sync could not clone\n")
	nodes.end(t, "r-build-amd64-pod/step-clone")
	failed := withSteps(tr, 1)
	failed.Status.Steps[0].Running, failed.Status.Steps[0].Terminated = nil, &corev1.ContainerStateTerminated{ExitCode: 1}
	failed.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse}}
	s.update(failed)
	s.finish()
	if got, want := w.all(), []string{"[linux/amd64 clone] git-sync could not clone\n"}; !slices.Equal(got, want) {
		t.Errorf("writes %q, want %q", got, want)
	}
	if slices.Contains(nodes.opened, "r-build-amd64-pod/step-build") {
		t.Errorf("the build step's log was opened though it never started")
	}
}

// Follow against a fake clientset, a run that has ended: every step's
// lines, prefixed, come before the outcome it returns.
func TestFollowPrintsLogsOfAnEndedRun(t *testing.T) {
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		Status: v1.PipelineRunStatus{
			Status: duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue, Reason: "Succeeded"}}},
			PipelineRunStatusFields: v1.PipelineRunStatusFields{Results: []v1.PipelineRunResult{
				{Name: "IMAGE_URL", Value: *v1.NewStructuredValues("reg/app:v1")},
				{Name: "IMAGE_DIGEST", Value: *v1.NewStructuredValues("sha256:abc")},
			}},
		},
	}
	c := fake.NewSimpleClientset(pr,
		done(buildTR("r-build-amd64", "build-amd64", "linux/amd64")),
		done(buildTR("r-build-arm64", "build-arm64", "linux/arm64")),
		done(manifestTR("r-manifest")))
	logs := map[string]string{
		"r-build-amd64-pod/step-clone": "cloned commit abc\n", "r-build-amd64-pod/step-build": "STEP 1/1: FROM scratch\n",
		"r-build-arm64-pod/step-clone": "cloned commit abc\n", "r-build-arm64-pod/step-build": "STEP 1/1: FROM scratch\n",
		"r-manifest-pod/step-manifest": "pushed index sha256:abc\n",
	}
	open := func(_ context.Context, _, pod, ctr string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(logs[pod+"/"+ctr])), nil
	}
	var b strings.Builder
	o, err := Follow(context.Background(), Clients{Tekton: c, logs: open}, "ns", "r", &b)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Succeeded || o.ImageURL != "reg/app:v1" || o.Digest != "sha256:abc" {
		t.Errorf("outcome %+v", o)
	}
	out := b.String()
	t.Logf("output:\n%s", out)
	for _, want := range []string{
		"[linux/amd64 clone] cloned commit abc\n", "[linux/amd64] STEP 1/1: FROM scratch\n",
		"[linux/arm64 clone] cloned commit abc\n", "[linux/arm64] STEP 1/1: FROM scratch\n",
		"[manifest] pushed index sha256:abc\n",
		"[build-arm64] build+push: done\n", "[manifest] manifest: done\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
