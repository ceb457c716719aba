package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
	"knative.dev/pkg/apis"

	gencatalog "github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/cluster"
)

// nodeLossAfter is nodeLoss.after in the node-loss tests: the least the
// configuration allows, to keep them short.
const nodeLossAfter = "30s"

// nodeLossPeriod is how often the watcher's stand-in runs node-loss.sh;
// the CronJob runs it every minute.
const nodeLossPeriod = 10 * time.Second

// realNodeLoss loses the real node, as a power cut would, while both builds
// of a two-architecture run are going, with examples/cluster/node-loss.yaml
// applied. With build.retries 1 and the node back once the watcher has
// failed the builds' pods, the retried builds must push a complete index of
// the one commit; with retries 0 and the node still gone, the run must fail
// in bounded time, its build TaskRuns naming the node and its architecture,
// and leave the tag's previous index as it was.
func (s *stack) realNodeLoss(t *testing.T, n *realNode, w *nodeWorld) {
	rows := []struct {
		name    string
		retries int
	}{
		// First: its index is the second row's previous one.
		{"node-lost-build-retried", 1},
		{"node-lost-run-fails", 0},
	}
	var seed string
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			ctx := context.Background()
			c := generateVariant(t, s.repo, realNodeConfig(t, s.images, "real-node-loss-"+strconv.Itoa(row.retries),
				fmt.Sprintf("build:\n  retries: %d\nnodeLoss:\n  after: %s\n", row.retries, nodeLossAfter)))
			s.install(t, c)
			if out, err := s.kubectl(t, c.dir, "apply", "-f", gencatalog.NodeLossFile); err != nil {
				t.Fatalf("kubectl apply -f %s: %v\n%s", gencatalog.NodeLossFile, err, out)
			}
			tag := fmt.Sprintf("node-loss-%d", i+1)
			var before string
			if row.retries == 0 {
				if seed == "" {
					t.Fatal("the retried row pushed no index to put under this row's tag")
				}
				before = seedTag(t, w, seed, tag)
			}

			r, watch := s.startOnRealNode(t, c, n, w, tag, map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": "Dockerfile.cpu"}, nil)
			s.waitBuildPodsRunning(t, r)
			lost := time.Now()
			killed := s.powerOff(t, n, c.ns())
			powered := false
			defer func() {
				if !powered {
					s.powerOn(t, n)
				}
			}()
			watcher := s.startNodeLossWatcher(t, c)
			defer watcher.stop()
			// Both builds must have been cut off mid-build, not after.
			for _, task := range []string{"build-amd64", "build-arm64"} {
				if !slices.Contains(killed[task], "step-build") {
					t.Fatalf("%s's step-build was not running when the node was lost (running: %v): the build ended first", task, killed[task])
				}
			}

			if row.retries > 0 {
				// The node comes back once each build's first attempt failed:
				// the retry, waiting for a node of its architecture, takes it.
				s.waitFor(t, "each build of "+r.name+" failed once and retried", 5*time.Minute, func(ctx context.Context) (bool, error) {
					trs, err := r.taskRuns(ctx)
					if err != nil {
						return false, err
					}
					for _, name := range []string{"build-amd64", "build-arm64"} {
						if tr := trs[name]; tr == nil || len(tr.Status.RetriesStatus) == 0 {
							return false, fmt.Errorf("%s not retried yet", name)
						}
					}
					return true, nil
				})
				failedAt := time.Now()
				t.Logf("NODE LOSS: both builds' pods failed %s after the node was lost; powering it on", failedAt.Sub(lost).Round(time.Second))
				s.powerOn(t, n)
				powered = true
			}
			s.waitRealRun(t, r, watch)
			watcher.stop()
			pr, err := r.get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			trs, err := r.taskRuns(ctx)
			if err != nil {
				t.Fatal(err)
			}
			took := pr.Status.CompletionTime.Sub(lost).Round(time.Second)
			if !strings.Contains(watcher.output(), "failed pod ") {
				t.Errorf("the watcher failed no pod:\n%s", watcher.output())
			}
			for _, name := range []string{"build-amd64", "build-arm64"} {
				tr := trs[name]
				if tr == nil {
					t.Fatalf("no TaskRun for %s", name)
				}
				// The attempt the node took with it: its own, or the
				// TaskRun's last if it was not retried.
				lostStatus := tr.Status
				if row.retries > 0 {
					if len(tr.Status.RetriesStatus) != 1 {
						t.Errorf("%s: %d retries, want 1", name, len(tr.Status.RetriesStatus))
						continue
					}
					lostStatus = tr.Status.RetriesStatus[0]
				}
				checkNodeLostStatus(t, name, lostStatus)
			}
			if row.retries > 0 {
				digests := s.checkRealRun(t, r, w, tag)
				s.checkRetriedBuilds(t, trs, w.fixture.Commit)
				t.Logf("NODE LOSS %s: run Succeeded %s after the node was lost; index %s", row.name, took, digests["index"])
				seed = tag
				return
			}
			cond := pr.Status.GetCondition(apis.ConditionSucceeded)
			if !failed(cond) {
				t.Fatalf("PipelineRun %s: %s, want Failed", r.name, condition(cond))
			}
			if _, ok := trs["manifest"]; ok {
				t.Errorf("the manifest task ran after the builds were lost")
			}
			if after := indexDigest(t, w.image(tag)); after != before {
				t.Errorf("%s held %s before the run and %s after: a failed run must leave the tag's index alone", w.image(tag), before, after)
			}
			t.Logf("NODE LOSS %s: run Failed (%s) %s after the node was lost; %s still holds %s", row.name, condition(cond), took, w.image(tag), before)
		})
	}
}

// checkNodeLostStatus checks that a build attempt on the lost node failed
// saying so: the node, its architecture, the reason.
func checkNodeLostStatus(t testing.TB, name string, st v1.TaskRunStatus) {
	t.Helper()
	cond := st.GetCondition(apis.ConditionSucceeded)
	want := fmt.Sprintf("node %s (amd64) was lost: Ready=Unknown", realNodeName)
	if cond == nil || cond.Status != corev1.ConditionFalse || !strings.Contains(cond.Message, want) {
		t.Errorf("%s: the attempt on the lost node ended %s; want Failed with a message that says %q", name, condition(cond), want)
		return
	}
	t.Logf("%s: %s", name, condition(cond))
}

// checkRetriedBuilds checks what must hold across a retry: the retried
// build ran where it did before (the arch guard's BUILD_ARCH and EMULATED),
// and each build, cloning for itself, built the commit GIT_REF named.
func (s *stack) checkRetriedBuilds(t testing.TB, trs map[string]*v1.TaskRun, commit string) {
	t.Helper()
	for _, name := range []string{"build-amd64", "build-arm64"} {
		res := taskRunResults(trs[name])
		if res["COMMIT"] != commit {
			t.Errorf("%s built commit %q after its retry, want %s (main)", name, res["COMMIT"], commit)
		}
		if res["BUILD_ARCH"] != "x86_64" {
			t.Errorf("%s: BUILD_ARCH %q after its retry, want x86_64 (the real node)", name, res["BUILD_ARCH"])
		}
		if want := map[string]string{"build-amd64": "false", "build-arm64": "true"}[name]; res["EMULATED"] != want {
			t.Errorf("%s: EMULATED %q after its retry, want %s", name, res["EMULATED"], want)
		}
		if !strings.HasSuffix(trs[name].Status.PodName, "-retry1") {
			t.Errorf("%s: pod %s; want the retry's", name, trs[name].Status.PodName)
		}
	}
	t.Logf("retried builds: commit %s, each on the real node, arm64 emulated", commit)
}

// waitBuildPodsRunning waits until every build pod of r runs.
func (s *stack) waitBuildPodsRunning(t testing.TB, r *prRun) {
	t.Helper()
	s.waitFor(t, "every build pod of "+r.name+" running", 3*time.Minute, func(ctx context.Context) (bool, error) {
		pods, err := s.kube.CoreV1().Pods(r.c.ns()).List(ctx, metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + r.name})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Labels["tekton.dev/pipelineTask"], "build-") && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 2, fmt.Errorf("%d build pods running", running)
	})
}

// powerOff loses the real node as a power cut would: its kubelet stops,
// every process of the pods of namespace ns dies, containerd stops. It
// returns the containers that were running, by pipeline task.
func (s *stack) powerOff(t testing.TB, n *realNode, ns string) map[string][]string {
	t.Helper()
	ctrs, err := n.cri.running(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]string{} // pod cgroup directory -> pod
	running := map[string][]string{}
	for _, c := range ctrs {
		task := c.pod
		if p, err := s.kube.CoreV1().Pods(ns).Get(context.Background(), c.pod, metav1.GetOptions{}); err == nil {
			task = p.Labels["tekton.dev/pipelineTask"]
		}
		dir, err := podCgroup(c.pid)
		if errors.Is(err, fs.ErrNotExist) {
			// The container ended since it was listed (a step as short as
			// the clone): its pod's cgroup comes from its other containers.
			continue
		}
		if err != nil {
			t.Fatalf("pod %s, container %s: %v", c.pod, c.name, err)
		}
		running[task] = append(running[task], c.name)
		pods[dir] = c.pod
	}
	if len(pods) == 0 {
		t.Fatalf("no running container of namespace %s to lose", ns)
	}
	sbs, err := n.cri.rt.ListPodSandbox(context.Background(), &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.namespace": ns},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet first, so that no word of the pods' end reaches the API
	// server; then the pods, before they can finish, and their shims (one
	// per sandbox), which a power cut takes too; then containerd.
	s.stopNow(t, n.kubelet)
	for dir, pod := range pods {
		if err := killCgroup(dir); err != nil {
			t.Fatalf("killing pod %s (%s): %v", pod, dir, err)
		}
	}
	for _, sb := range sbs.Items {
		if err := killShim(sb.Id); err != nil {
			t.Fatal(err)
		}
	}
	s.stopNow(t, n.containerd)
	t.Logf("node %s powered off: kubelet and containerd stopped, %d pods killed (running containers: %v)", realNodeName, len(pods), running)
	return running
}

// powerOn starts the real node's containerd and kubelet again and waits
// for it to be Ready.
func (s *stack) powerOn(t testing.TB, n *realNode) {
	t.Helper()
	s.startContainerd(n)
	// A new client, which waits for the new containerd to answer.
	n.cri.conn.Close()
	n.cri = dialCRI(t, n.socket)
	// The node's sandboxes are removed at its end while this containerd
	// runs: registered after its stop, so it runs before it.
	n.owner.Cleanup(func() { n.cri.removeAllSandboxes(n.owner) })
	since := time.Now()
	n.kubelet = s.startKubelet(n)
	s.waitKubeletBack(t, since)
	t.Logf("node %s powered on and Ready in %s", realNodeName, time.Since(since).Round(time.Second))
}

// podCgroup is the cgroup directory of the pod process pid runs in: the
// parent of its container's, in the pids hierarchy (cgroup v1) or the
// unified one.
func podCgroup(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	var v1Pids, v2 string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[1] == "pids":
			v1Pids = filepath.Join("/sys/fs/cgroup/pids", parts[2])
		case parts[0] == "0" && parts[1] == "":
			v2 = filepath.Join("/sys/fs/cgroup", parts[2])
			if exists("/sys/fs/cgroup/unified") {
				v2 = filepath.Join("/sys/fs/cgroup/unified", parts[2])
			}
		}
	}
	dir := v1Pids
	if dir == "" {
		dir = v2
	}
	if dir == "" || !exists(filepath.Join(dir, "cgroup.procs")) {
		return "", fmt.Errorf("no pids or unified cgroup in %s", b)
	}
	return filepath.Dir(dir), nil
}

// killCgroup SIGKILLs every process under cgroup directory dir until none
// is left.
func killCgroup(dir string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pids []int
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killShim SIGKILLs the containerd shim of sandbox id, if it runs.
func killShim(id string) error {
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return err
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		args := strings.Split(string(b), "\x00")
		if !strings.Contains(args[0], "containerd-shim") || !slices.Contains(args, id) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("killing the shim of sandbox %s (pid %d): %v", id, pid, err)
		}
	}
	return nil
}

// nodeLossWatcher stands in for the CronJob of examples/cluster/node-loss.yaml,
// whose image this offline test does not have and whose pod would need a
// node other than the lost one: it runs the CronJob container's script with
// its environment, as its ServiceAccount (a TokenRequest token: RBAC and the
// admission policy are the API server's), every nodeLossPeriod.
type nodeLossWatcher struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	out      strings.Builder
}

func (s *stack) startNodeLossWatcher(t testing.TB, c catalog) *nodeLossWatcher {
	t.Helper()
	job := cluster.NewNodeLossWatcher(c.cfg).CronJob.Spec.JobTemplate.Spec.Template.Spec
	ctr := &job.Containers[0]
	kubeconfig := s.tokenKubeconfig(t, c.ns(), job.ServiceAccountName)
	w := &nodeLossWatcher{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(nodeLossPeriod)
		defer tick.Stop()
		for {
			out, err := s.runAs(t, c.ns(), kubeconfig, ctr, ctr.Command[2])
			w.mu.Lock()
			fmt.Fprintf(&w.out, "%s node-loss.sh:\n%s", time.Now().Format(time.TimeOnly), out)
			w.mu.Unlock()
			if err != nil {
				t.Errorf("node-loss.sh as %s: %v\n%s", job.ServiceAccountName, err, out)
			}
			select {
			case <-w.quit:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		w.stop()
		t.Logf("the node-loss watcher's runs:\n%s", w.output())
	})
	return w
}

func (w *nodeLossWatcher) stop() {
	w.stopOnce.Do(func() { close(w.quit) })
	<-w.done
}

func (w *nodeLossWatcher) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}
