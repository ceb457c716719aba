package cluster

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/result"
	corev1 "k8s.io/api/core/v1"
)

// A build's phases, for BenchmarkPhases: where a build pod's time goes,
// read from the timestamps the API server, the kubelet and Tekton keep and
// from the lines the step scripts print (the kubelet stamps each log line).
// The clocks differ in resolution: object creation and pod conditions to
// the second, Tekton's step starts to the millisecond, log lines to the
// microsecond.

// mark is the moment a build passed into the phase named.
type mark struct {
	at   time.Time
	name string
}

// timeline is a build's marks in the order the build passes them, and its
// end. A mark earlier than the one before it (a second-resolution time
// after a finer one) counts as at that one: a phase then lasts 0, never
// less, and the phases add up to the whole.
type timeline struct {
	marks []mark
	end   time.Time
}

func (tl *timeline) add(at time.Time, name string) {
	if !at.IsZero() {
		tl.marks = append(tl.marks, mark{at, name})
	}
}

type phase struct {
	name string
	d    time.Duration
}

func (tl timeline) phases() []phase {
	if len(tl.marks) == 0 {
		return nil
	}
	var ps []phase
	cur := tl.marks[0].at
	for i, m := range tl.marks {
		next := tl.end
		if i+1 < len(tl.marks) {
			next = tl.marks[i+1].at
		}
		if next.Before(cur) {
			next = cur
		}
		ps = append(ps, phase{m.name, next.Sub(cur)})
		cur = next
	}
	return ps
}

// total is the time from the first mark to the end.
func (tl timeline) total() time.Duration {
	if len(tl.marks) == 0 || tl.end.Before(tl.marks[0].at) {
		return 0
	}
	return tl.end.Sub(tl.marks[0].at)
}

// sum is the time of the phases whose names start with one of prefixes.
func (tl timeline) sum(prefixes ...string) time.Duration {
	return tl.sumWhere(startsWith(prefixes...))
}

// sumWhere is the time of the phases whose names keep accepts.
func (tl timeline) sumWhere(keep func(name string) bool) time.Duration {
	var d time.Duration
	for _, p := range tl.phases() {
		if keep(p.name) {
			d += p.d
		}
	}
	return d
}

// startsWith accepts a phase name that starts with one of prefixes.
func startsWith(prefixes ...string) func(string) bool {
	return func(name string) bool { return hasAnyPrefix(name, prefixes) }
}

func hasAnyPrefix(name string, prefixes []string) bool {
	for _, pre := range prefixes {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

// logMarker: a log line that matches re begins the phase name, re's
// groups expanded ($1, ...); each phase begins at its first such line.
type logMarker struct {
	re   *regexp.Regexp
	name string
}

func marker(re, name string) logMarker { return logMarker{regexp.MustCompile(re), name} }

// budMarkers are the lines of buildah bud and push, as build.sh and the
// raw build (rawbuild.sh) print them around buildah's own: the Dockerfile
// steps, the commit (buildah's "COMMIT <image>"), the image ID buildah
// prints last, and the push. The phases from "building" to the image ID
// are buildah bud's.
var budMarkers = []logMarker{
	marker(`^building `, "build: buildah bud starts"),
	marker(`^STEP (\d+)/(\d+): (\S+)`, "build: STEP $1/$2 $3"),
	marker(`^COMMIT`, "build: commit"),
	marker(`^[0-9a-f]{64}$`, "build: after bud (arch check)"),
	marker(`^pushing `, "build: push"),
	marker(`^pushed `, "build: results, exit"),
}

// budPhases and pushPhases name a timeline's bud and push phases (sum).
var (
	budPhases  = []string{"build: buildah bud starts", "build: STEP ", "build: commit"}
	pushPhases = []string{"build: push"}
)

// stepMarkers are the catalog's steps' lines, by step name; a step's first
// phase, from its start, is stepStartPhase's.
var stepMarkers = map[string][]logMarker{
	"clone": {
		marker(`^cloning `, "clone: git-sync fetch (depth 1), checkout"),
		marker(`^cloned commit `, "clone: results, exit"),
	},
	"build": append([]logMarker{
		marker(`^storage: `, "build: memory limit, credentials, labels"),
	}, budMarkers...),
	"manifest": {
		marker(`^adding `, "manifest: add the images (reads each manifest)"),
		marker(`^pushing index `, "manifest: push the index"),
		marker(`^reading back `, "manifest: read the index back, check it"),
		marker(`^pushed `, "manifest: results, exit"),
	},
}

func stepStartPhase(step string) string {
	switch step {
	case "build":
		return "build: storage set-up (overlay test mount in a user namespace)"
	case "manifest":
		return "manifest: checks, annotations"
	}
	return step + " step"
}

// addLog adds the marks of a log read with the kubelet's timestamps
// (kubectl logs --timestamps).
func (tl *timeline) addLog(raw string, markers []logMarker) error {
	if raw == "" {
		return nil
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(raw, "\n"), "\n") {
		stamp, text, _ := strings.Cut(line, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			return fmt.Errorf("log line without a timestamp: %q", line)
		}
		for _, m := range markers {
			sub := m.re.FindStringSubmatchIndex(text)
			if sub == nil {
				continue
			}
			name := string(m.re.ExpandString(nil, m.name, text, sub))
			if !seen[name] {
				seen[name] = true
				tl.add(at, name)
			}
			break
		}
	}
	return nil
}

func podCondition(pod *corev1.Pod, typ corev1.PodConditionType) time.Time {
	for _, c := range pod.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// addPod adds a pod's start: scheduling, its sandbox (the pause container
// and the pod's network), its init containers (named init), then the
// wait for its first container (named start).
func (tl *timeline) addPod(pod *corev1.Pod, init, start string) {
	tl.add(pod.CreationTimestamp.Time, "pod: scheduling")
	tl.add(podCondition(pod, corev1.PodScheduled), "pod: sandbox (pause container, network)")
	tl.add(initStart(pod), init)
	tl.add(podCondition(pod, corev1.PodInitialized), start)
}

// initStart is when the pod's first init container started. Not the
// PodReadyToStartContainers condition: it turns False when a finished
// pod's sandbox is removed, which the first measured runs showed. Without
// init container statuses, the condition's time, if it still holds.
func initStart(pod *corev1.Pod) time.Time {
	var first time.Time
	for _, cs := range pod.Status.InitContainerStatuses {
		var at time.Time
		switch {
		case cs.State.Terminated != nil:
			at = cs.State.Terminated.StartedAt.Time
		case cs.State.Running != nil:
			at = cs.State.Running.StartedAt.Time
		}
		if !at.IsZero() && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	if first.IsZero() {
		return podCondition(pod, corev1.PodReadyToStartContainers)
	}
	return first
}

// stepStart is when Tekton's entrypoint started a step's command, to the
// millisecond: the StartedAt it writes into the container's termination
// message (Tekton's own TaskRun status has it to the second only).
func stepStart(cs corev1.ContainerStatus) (time.Time, error) {
	t := cs.State.Terminated
	if t == nil {
		return time.Time{}, fmt.Errorf("container %s has not terminated", cs.Name)
	}
	var rs []result.RunResult
	if err := json.Unmarshal([]byte(t.Message), &rs); err != nil {
		return time.Time{}, fmt.Errorf("container %s: its termination message is not Tekton's: %v: %q", cs.Name, err, t.Message)
	}
	for _, r := range rs {
		if r.Key == "StartedAt" {
			return time.Parse(time.RFC3339Nano, r.Value)
		}
	}
	return time.Time{}, fmt.Errorf("container %s: no StartedAt in its termination message %q", cs.Name, t.Message)
}

func containerStatus(pod *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs, true
		}
	}
	return corev1.ContainerStatus{}, false
}

// taskRunTimeline is a finished TaskRun's phases, from its creation to its
// completion: the controller's making of its pod, the pod's start
// (Tekton's init containers, then the kubelet's start of the first step
// container: Tekton's entrypoint waits for no ready annotation in a pod
// without sidecars), each step from its start by the lines
// stepMarkers name, then the controller's reading of the results. logs are
// the step containers', with the kubelet's timestamps.
func taskRunTimeline(tr *v1.TaskRun, pod *corev1.Pod, logs map[string]string) (timeline, error) {
	var tl timeline
	if tr.Status.CompletionTime == nil {
		return tl, fmt.Errorf("TaskRun %s has not completed", tr.Name)
	}
	tl.add(tr.CreationTimestamp.Time, "Tekton: TaskRun to pod")
	tl.addPod(pod, "pod: Tekton's init containers", "pod: first step container starts")
	var lastEnd time.Time
	for _, st := range tr.Status.Steps {
		cs, ok := containerStatus(pod, st.Container)
		if !ok {
			return tl, fmt.Errorf("TaskRun %s: pod %s has no container %s", tr.Name, pod.Name, st.Container)
		}
		start, err := stepStart(cs)
		if err != nil {
			return tl, fmt.Errorf("TaskRun %s: %v", tr.Name, err)
		}
		tl.add(start, stepStartPhase(st.Name))
		if err := tl.addLog(logs[st.Container], stepMarkers[st.Name]); err != nil {
			return tl, fmt.Errorf("TaskRun %s, step %s: %v", tr.Name, st.Name, err)
		}
		lastEnd = cs.State.Terminated.FinishedAt.Time
	}
	tl.add(lastEnd, "Tekton: results, TaskRun done")
	tl.end = tr.Status.CompletionTime.Time
	return tl, nil
}

// rawTimeline is a raw build pod's phases (rawbuild.sh in the container
// build, git-sync as the init container clone), from the pod's creation to
// its build container's end.
func rawTimeline(pod *corev1.Pod, log string) (timeline, error) {
	var tl timeline
	tl.addPod(pod, "pod: init container: git-sync clone (depth 1)", "pod: build container start")
	cs, ok := containerStatus(pod, "build")
	if !ok || cs.State.Terminated == nil {
		return tl, fmt.Errorf("pod %s: its build container has not terminated", pod.Name)
	}
	tl.add(cs.State.Terminated.StartedAt.Time, "build: shell")
	if err := tl.addLog(log, budMarkers); err != nil {
		return tl, fmt.Errorf("pod %s: %v", pod.Name, err)
	}
	tl.end = cs.State.Terminated.FinishedAt.Time
	return tl, nil
}

// pipelineTimeline is a two-arch run's critical path: the controller's
// start of the run, the slowest build TaskRun's phases, the manifest
// TaskRun's (each named with its pipeline task), and the run's completion.
func pipelineTimeline(pr *v1.PipelineRun, builds map[string]timeline, manifest timeline) (timeline, string) {
	var tl timeline
	tl.add(pr.CreationTimestamp.Time, "Tekton: PipelineRun to TaskRuns")
	slowest := ""
	for name, b := range builds {
		if slowest == "" || b.end.After(builds[slowest].end) || (b.end.Equal(builds[slowest].end) && name < slowest) {
			slowest = name
		}
	}
	for _, m := range builds[slowest].marks {
		tl.add(m.at, "slowest build: "+m.name)
	}
	tl.add(builds[slowest].end, "Tekton: builds done to manifest TaskRun")
	for _, m := range manifest.marks {
		tl.add(m.at, "manifest: "+m.name)
	}
	tl.add(manifest.end, "Tekton: PipelineRun done")
	if pr.Status.CompletionTime != nil {
		tl.end = pr.Status.CompletionTime.Time
	}
	return tl, slowest
}

// phaseTable is mean phase times of several kinds of build (columns), each
// over its rounds; rows in the order phases first appear.
type phaseTable struct {
	kinds  []string
	order  []string
	sums   map[string]map[string]time.Duration // kind -> phase -> sum
	totals map[string]time.Duration
	rounds map[string]int
}

func newPhaseTable(kinds ...string) *phaseTable {
	return &phaseTable{kinds: kinds, sums: map[string]map[string]time.Duration{}, totals: map[string]time.Duration{}, rounds: map[string]int{}}
}

func (pt *phaseTable) add(kind string, tl timeline) {
	if pt.sums[kind] == nil {
		pt.sums[kind] = map[string]time.Duration{}
	}
	for _, p := range tl.phases() {
		if _, ok := pt.index(p.name); !ok {
			pt.order = append(pt.order, p.name)
		}
		pt.sums[kind][p.name] += p.d
	}
	pt.totals[kind] += tl.total()
	pt.rounds[kind]++
}

func (pt *phaseTable) index(name string) (int, bool) {
	for i, n := range pt.order {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

func (pt *phaseTable) mean(kind string) time.Duration {
	if pt.rounds[kind] == 0 {
		return 0
	}
	return pt.totals[kind] / time.Duration(pt.rounds[kind])
}

// meanOf is the mean over kind's rounds of its phases whose names start
// with one of prefixes.
func (pt *phaseTable) meanOf(kind string, prefixes ...string) time.Duration {
	return pt.meanWhere(kind, startsWith(prefixes...))
}

// meanWhere is the mean over kind's rounds of its phases whose names keep
// accepts.
func (pt *phaseTable) meanWhere(kind string, keep func(name string) bool) time.Duration {
	if pt.rounds[kind] == 0 {
		return 0
	}
	var d time.Duration
	for name, sum := range pt.sums[kind] {
		if keep(name) {
			d += sum
		}
	}
	return d / time.Duration(pt.rounds[kind])
}

// String is the table: a row per phase, the mean seconds of each kind
// ("-" where a kind has no such phase), then the totals.
func (pt *phaseTable) String() string {
	var b strings.Builder
	width := len("total")
	for _, n := range pt.order {
		width = max(width, len(n))
	}
	fmt.Fprintf(&b, "    %-*s", width, "phase (mean s)")
	for _, k := range pt.kinds {
		fmt.Fprintf(&b, " %14s", k)
	}
	b.WriteString("\n")
	for _, n := range pt.order {
		fmt.Fprintf(&b, "    %-*s", width, n)
		for _, k := range pt.kinds {
			d, ok := pt.sums[k][n]
			if !ok || pt.rounds[k] == 0 {
				fmt.Fprintf(&b, " %14s", "-")
				continue
			}
			fmt.Fprintf(&b, " %14.2f", d.Seconds()/float64(pt.rounds[k]))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "    %-*s", width, "total")
	for _, k := range pt.kinds {
		fmt.Fprintf(&b, " %14.2f", pt.mean(k).Seconds())
	}
	b.WriteString("\n")
	return b.String()
}
