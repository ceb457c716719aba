package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pipeline "github.com/tektoncd/pipeline/pkg/apis/pipeline"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	gencatalog "github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// idsPerPod is the size of the UID and GID range the kubelet gives each
// user-namespaced pod (its userNamespaces.idsPerPod default).
const idsPerPod = 65536

// usernsConfig is the real node's catalog with build.userNamespaces on.
func usernsConfig(t testing.TB, im *realbuild.NodeImages, namespace string) string {
	return realNodeConfig(t, im, namespace, "build:\n  userNamespaces: true\n")
}

// testUserns runs the two-arch build of a catalog with build.userNamespaces
// on the real node, and checks from the host that the pods ran in user
// namespaces of their own: the build container's processes under a high
// host UID (its uid_map maps 0 to that range), with the runtime's default
// capabilities there and the catalog's seccomp filter, and what the build
// wrote owned, on the node's disk, as the checks below say.
//
// viaPolicy: the run's pod template has no hostUsers (as a tkn or Dashboard
// run), and examples/cluster/user-namespaces.yaml, applied for the run and
// deleted after it, sets it on every pod.
func (s *stack) testUserns(t *testing.T, c catalog, n *realNode, w *nodeWorld, tag string, viaPolicy bool) {
	params := map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": "Dockerfile.run"}
	// The kubelet empties a finished pod's emptyDirs: read them meanwhile.
	disk := scanEmptyDirs()
	defer disk.stop()
	var r *prRun
	var watch *credWatch
	if viaPolicy {
		s.applyUsernsPolicy(t, c)
		r, watch = s.startOnRealNode(t, c, n, w, tag, params, map[string]any{"hostUsers": nil})
		s.waitRealRun(t, r, watch)
	} else {
		r, watch = s.runOnRealNode(t, c, n, w, tag, params)
	}
	s.checkRealRun(t, r, w, tag)
	trs, err := r.taskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"build-amd64", "build-arm64", "manifest"} {
		pod, err := s.kube.CoreV1().Pods(c.ns()).Get(context.Background(), trs[task].Status.PodName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.HostUsers == nil || *pod.Spec.HostUsers {
			t.Errorf("%s: pod %s has hostUsers %v, want false", task, pod.Name, pod.Spec.HostUsers)
		}
	}
	for _, task := range []string{"build-amd64", "build-arm64"} {
		base := checkUsernsCreds(t, watch, task, n.seccompDefault)
		if base == 0 {
			continue
		}
		pod, err := s.kube.CoreV1().Pods(c.ns()).Get(context.Background(), trs[task].Status.PodName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		disk.stop()
		checkEmptyDirOwners(t, task, disk, pod.UID, base)
		build, _ := watch.byStep(task, "step-build")
		t.Logf("%s step-build: /var/lib/containers seen from the host through /proc/PID/root: uid %d", task, build.containersUID)
		if build.containersUID != int64(base) {
			t.Errorf("%s step-build: its /var/lib/containers is owned by %d seen from the host, want the pod's root %d", task, build.containersUID, base)
		}
	}
}

// applyUsernsPolicy applies the catalog's user-namespace admission policy
// until t's end, and waits until it mutates a probe pod of the build Task.
func (s *stack) applyUsernsPolicy(t testing.TB, c catalog) {
	t.Helper()
	out, err := s.kubectl(t, c.dir, "apply", "-f", gencatalog.UsernsPolicyFile)
	t.Logf("$ kubectl apply -f %s\n%s", gencatalog.UsernsPolicyFile, out)
	if err != nil {
		t.Fatalf("kubectl apply -f %s: %v", gencatalog.UsernsPolicyFile, err)
	}
	t.Cleanup(func() {
		if out, err := s.kubectl(t, c.dir, "delete", "-f", gencatalog.UsernsPolicyFile); err != nil {
			t.Errorf("kubectl delete -f %s: %v\n%s", gencatalog.UsernsPolicyFile, err, out)
		}
		// Later subtests' pods must not be mutated by a policy on its way out.
		s.waitFor(t, "the user-namespace policy gone", 30*time.Second, func(ctx context.Context) (bool, error) {
			got, err := s.dryRunPod(ctx, c.ns(), probePod("linux/amd64", true, nil))
			if err != nil {
				return false, err
			}
			if got.Spec.HostUsers == nil {
				return true, nil
			}
			return false, fmt.Errorf("a probe pod still gets hostUsers %v", *got.Spec.HostUsers)
		})
	})
	s.waitFor(t, "the user-namespace policy to set hostUsers on a probe pod", 30*time.Second, func(ctx context.Context) (bool, error) {
		got, err := s.dryRunPod(ctx, c.ns(), probePod("linux/amd64", true, nil))
		if err != nil {
			return false, err
		}
		return got.Spec.HostUsers != nil && !*got.Spec.HostUsers, fmt.Errorf("probe pod hostUsers %v", got.Spec.HostUsers)
	})
}

// checkUsernsCreds checks what the host sees of the build and clone steps of
// task: the build step's first process is root of a user namespace whose
// uid_map maps 0 to a range of idsPerPod IDs from a base >= idsPerPod,
// which is its host UID, with the runtime's default capabilities (in that
// namespace) and a seccomp filter; the clone step is git-sync's 65533 in
// the same range. It returns the base, or 0 when it could not tell.
func checkUsernsCreds(t testing.TB, w *credWatch, task string, seccompDefault bool) uint64 {
	t.Helper()
	build, ok := w.byStep(task, "step-build")
	if !ok {
		t.Errorf("%s: step-build was never seen running", task)
		return 0
	}
	t.Logf("%s step-build, read from the host: Uid %s, uid_map %q, CapEff %#x %v, Seccomp %s", task, build.uid, build.uidMap, build.capEff, capSet(build.capEff), build.seccompMode)
	f := strings.Fields(build.uidMap)
	if len(f) != 3 || f[0] != "0" {
		t.Errorf("%s step-build: uid_map %q, want one line mapping 0 to a host range", task, build.uidMap)
		return 0
	}
	base, _ := strconv.ParseUint(f[1], 10, 64)
	size, _ := strconv.ParseUint(f[2], 10, 64)
	if base < idsPerPod || size != idsPerPod {
		t.Errorf("%s step-build: uid_map maps 0 to %d (%d IDs), want a base >= %d and %d IDs: not the node's root", task, base, size, idsPerPod, idsPerPod)
	}
	if want := strings.Repeat(fmt.Sprint(base)+" ", 4); build.uid+" " != want {
		t.Errorf("%s step-build: host Uid %s, want %d (root of the pod's user namespace)", task, build.uid, base)
	}
	if build.capEff != defaultCaps || build.capBnd != defaultCaps {
		t.Errorf("%s step-build: CapEff %#x CapBnd %#x, want the runtime's default set %#x, held in the pod's user namespace", task, build.capEff, build.capBnd, uint64(defaultCaps))
	}
	if build.seccompMode != "2" {
		t.Errorf("%s step-build: Seccomp %s, want 2: the catalog's Localhost profile", task, build.seccompMode)
	}
	clone, ok := w.byStep(task, "step-clone")
	if !ok {
		t.Errorf("%s: step-clone was never seen running", task)
		return base
	}
	t.Logf("%s step-clone, read from the host: Uid %s, uid_map %q, CapEff %#x, Seccomp %s", task, clone.uid, clone.uidMap, clone.capEff, clone.seccompMode)
	if want := strings.Repeat(fmt.Sprint(base+65533)+" ", 4); clone.uid+" " != want || clone.uidMap != build.uidMap || clone.capEff != 0 {
		t.Errorf("%s step-clone: host Uid %s, uid_map %q, CapEff %#x, want git-sync's 65533 as %d in the build's range, no capabilities", task, clone.uid, clone.uidMap, clone.capEff, base+65533)
	}
	if seccompDefault && clone.seccompMode != "2" {
		t.Errorf("%s step-clone: Seccomp %s with the kubelet's seccompDefault, want 2 (filter)", task, clone.seccompMode)
	}
	return base
}

// emptyDirScan records, while pods run, who owns the entries of every
// pod's containers and source emptyDirs on the node's disk: for each, the
// fullest listing seen.
type emptyDirScan struct {
	mu     sync.Mutex
	best   map[string]map[uint32]int // volume dir -> owner UID -> entries
	sample map[string]map[uint32]string
	done   chan struct{}
	exited chan struct{}
	once   sync.Once
}

func scanEmptyDirs() *emptyDirScan {
	d := &emptyDirScan{best: map[string]map[uint32]int{}, sample: map[string]map[uint32]string{}, done: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(d.exited)
		for {
			select {
			case <-d.done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, vol := range []string{"containers", "source"} {
				dirs, _ := filepath.Glob(filepath.Join(kubeletRoot, "pods", "*", "volumes", "kubernetes.io~empty-dir", vol))
				for _, dir := range dirs {
					owners, sample := map[uint32]int{}, map[uint32]string{}
					n := 0
					_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
						if err != nil || p == dir {
							return nil
						}
						if n++; n > 5000 {
							return filepath.SkipAll
						}
						uid := fi.Sys().(*syscall.Stat_t).Uid
						owners[uid]++
						if _, ok := sample[uid]; !ok {
							sample[uid] = strings.TrimPrefix(p, dir+"/")
						}
						return nil
					})
					d.mu.Lock()
					if total(owners) > total(d.best[dir]) {
						d.best[dir], d.sample[dir] = owners, sample
					}
					d.mu.Unlock()
				}
			}
		}
	}()
	return d
}

func total(m map[uint32]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (d *emptyDirScan) stop() {
	d.once.Do(func() { close(d.done) })
	<-d.exited
}

// checkEmptyDirOwners checks who owned, on the node's disk, what the build
// step wrote into its containers emptyDir (buildah's storage) and the clone
// step into source. The kubelet mounts a user-namespaced pod's volumes
// idmapped with the pod's own mapping: an ID k of the pod's is k on disk,
// and only through the mount (the processes' view) base+k. So what root in
// the pod wrote is owned by 0 on disk, what git-sync wrote by 65533.
func checkEmptyDirOwners(t testing.TB, task string, d *emptyDirScan, podUID types.UID, base uint64) {
	t.Helper()
	for _, tc := range []struct {
		vol  string
		want uint32 // the pod's ID of the step that writes there
	}{{"containers", 0}, {"source", 65533}} {
		dir := filepath.Join(kubeletRoot, "pods", string(podUID), "volumes", "kubernetes.io~empty-dir", tc.vol)
		owners, sample := d.best[dir], d.sample[dir]
		var uids []uint32
		for u := range owners {
			uids = append(uids, u)
		}
		sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
		var desc []string
		for _, u := range uids {
			desc = append(desc, fmt.Sprintf("uid %d: %d entries (e.g. %s)", u, owners[u], sample[u]))
		}
		t.Logf("%s: emptyDir %s on the node's disk while it ran (the pod's range on the host %d..%d): %s", task, tc.vol, base, base+idsPerPod-1, strings.Join(desc, "; "))
		if owners[tc.want] == 0 {
			t.Errorf("%s: nothing in emptyDir %s owned by %d on the node's disk (the pod's ID of the step that writes there)", task, tc.vol, tc.want)
		}
		for _, u := range uids {
			if uint64(u) >= base && uint64(u) < base+idsPerPod || u >= idsPerPod {
				t.Errorf("%s: emptyDir %s has entries owned by %d on disk: not the pod's own IDs (idmapped volume)", task, tc.vol, u)
			}
		}
	}
}

// testUsernsUnsupported runs a user-namespaced build on a runtime handler
// without user-namespace support (Debian's runc 1.1, through a
// RuntimeClass): the kubelet refuses the pod sandbox and says why in the
// pod's events, which is where the README sends the user.
func (s *stack) testUsernsUnsupported(t *testing.T, c catalog, n *realNode, w *nodeWorld) {
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: debianRuncHandler}, Handler: debianRuncHandler}
	if _, err := s.kube.NodeV1().RuntimeClasses().Create(context.Background(), rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.kube.NodeV1().RuntimeClasses().Delete(context.Background(), rc.Name, metav1.DeleteOptions{})
	})
	r, watch := s.startOnRealNode(t, c, n, w, "userns-unsupported", nil, map[string]any{"runtimeClassName": debianRuncHandler})
	watch.stop()
	t.Cleanup(func() {
		if err := s.cancelRun(context.Background(), c.ns(), r.name); err != nil {
			t.Error(err)
		}
	})
	want := fmt.Sprintf("can't set `spec.hostUsers: false`, RuntimeClass handler %q does not support user namespaces", debianRuncHandler)
	var event corev1.Event
	s.waitFor(t, "the kubelet's event on build-amd64's pod", 90*time.Second, func(ctx context.Context) (bool, error) {
		trs, err := r.taskRuns(ctx)
		if err != nil || trs["build-amd64"] == nil || trs["build-amd64"].Status.PodName == "" {
			return false, fmt.Errorf("no pod for build-amd64 yet (%v)", err)
		}
		evs, err := s.kube.CoreV1().Events(c.ns()).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + trs["build-amd64"].Status.PodName})
		if err != nil {
			return false, err
		}
		var seen []string
		for _, e := range evs.Items {
			if strings.Contains(e.Message, want) {
				event = e
				return true, nil
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, fmt.Errorf("events so far: %v", seen)
	})
	t.Logf("pod %s: event %s (%s, %d times): %s", event.InvolvedObject.Name, event.Reason, event.Type, event.Count, event.Message)
	if event.Reason != "FailedCreatePodSandBox" || event.Type != corev1.EventTypeWarning {
		t.Errorf("the kubelet said it as %s %s, want a Warning FailedCreatePodSandBox", event.Type, event.Reason)
	}
	trs, err := r.taskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tr := trs["build-amd64"]
	if pod, err := s.kube.CoreV1().Pods(c.ns()).Get(context.Background(), tr.Status.PodName, metav1.GetOptions{}); err == nil {
		t.Logf("pod %s: phase %s", pod.Name, pod.Status.Phase)
		if pod.Status.Phase != corev1.PodPending {
			t.Errorf("pod %s is %s, want Pending (no sandbox)", pod.Name, pod.Status.Phase)
		}
	}
	cond := tr.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("TaskRun %s (%s) meanwhile: %s", tr.Name, tr.Labels[pipeline.PipelineTaskLabelKey], condition(cond))
}
