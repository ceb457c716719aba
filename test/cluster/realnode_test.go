package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// The real node's services, on the pods' bridge: a registry and a git
// daemon, both plain (the registry takes TLS_VERIFY=false).
const (
	nodeRegistryPort = 5000
	nodeGitPort      = 9418
)

// nodeWorld is what the real-node builds use: the registry the builds push
// to, the git daemon they clone from, and the fixture repository.
type nodeWorld struct {
	registry string // host:port, reachable from pods and (through nsenter) from the test
	fixture  *realbuild.Fixture
	work     string
	gitBase  string // what the git daemon serves
}

func (w *nodeWorld) image(tag string) string { return w.registry + "/multiarch/app:" + tag }

// gitURL is the URL of a repository under gitBase (e.g. one of
// realbuild.MakeGitRepo's, name.git), as pods reach it.
func (w *nodeWorld) gitURL(name string) string {
	return fmt.Sprintf("git://%s/%s", listenAddr(nodeGitPort), name)
}

// startNodeWorld starts the registry and git daemon inside the namespace,
// listening on the bridge, and makes the fixture (realbuild's: a Go program
// cross-compiled for amd64 and arm64, and Dockerfiles with and without a RUN
// step).
func (s *stack) startNodeWorld(t testing.TB) *nodeWorld {
	t.Helper()
	w := &nodeWorld{registry: listenAddr(nodeRegistryPort), work: filepath.Join(s.work, "node-world")}
	regDir := filepath.Join(w.work, "registry")
	if err := os.MkdirAll(filepath.Join(regDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(regDir, "data"), w.registry)
	write(t, filepath.Join(regDir, "config.yml"), []byte(cfg))
	s.start(t, "docker-registry", nil, "docker-registry", "serve", filepath.Join(regDir, "config.yml"))

	w.gitBase = filepath.Join(w.work, "git")
	w.fixture = realbuild.MakeFixture(t, w.gitBase)
	s.start(t, "git-daemon", nil, "git", "daemon", "--listen="+bridgeIP, fmt.Sprintf("--port=%d", nodeGitPort),
		"--base-path="+w.gitBase, "--export-all", "--reuseaddr", "--informative-errors", w.gitBase)
	w.fixture.URL = w.gitURL(w.fixture.Name)

	// Commands the test runs against these services run inside the
	// namespace, where the bridge is.
	realbuild.SkopeoPrefix = []string{"nsenter", "--net=" + s.nsPath, "--"}
	realbuild.RegistryClient = s.nsHTTP(nil)
	t.Cleanup(func() { realbuild.SkopeoPrefix, realbuild.RegistryClient = nil, http.DefaultClient })
	s.waitFor(t, "the node's registry and git daemon", 30*time.Second, func(ctx context.Context) (bool, error) {
		if out, err := exec.CommandContext(ctx, "nsenter", "--net="+s.nsPath, "--", "git", "ls-remote", w.fixture.URL).CombinedOutput(); err != nil {
			return false, fmt.Errorf("git ls-remote %s: %v: %s", w.fixture.URL, err, out)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.registry+"/v2/", nil)
		if err != nil {
			return false, err
		}
		resp, err := s.nsHTTP(nil).Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("registry /v2/: %s", resp.Status)
	})
	return w
}

// realNodeConfig is the test's configuration: the catalog's images are the
// ones made here, and this kernel has no AppArmor. Nothing else differs
// from the committed catalog's.
func realNodeConfig(t testing.TB, im *realbuild.NodeImages, namespace, extra string) string {
	return fmt.Sprintf(`images:
  gitSync: %s
  buildah: %s
  syft: %s
  crane: %s
apparmor:
  mode: none
cluster:
  nodeProfileLoaderImage: %s
example:
  namespace: %s
`, im.Ref(t, "GITSYNC_IMAGE"), im.Ref(t, "BUILDAH_IMAGE"), im.Ref(t, "SYFT_IMAGE"), im.Ref(t, "CRANE_IMAGE"), im.Ref(t, "NODE_PROFILE_LOADER_IMAGE"), namespace) + extra
}

// TestRealNode runs the catalog's pods in a real container runtime: a
// kubelet with containerd and runc beside the control plane (and kwok's
// nodes, which its runs never use). It has a control plane of its own, so
// it runs alone: go test -run TestRealNode ./test/cluster/.
func TestRealNode(t *testing.T) {
	realbuild.EnsureArm64Emulation(t)
	p := &realNodeProvider{}
	s := startStack(t, kwokNodes{}, p)
	n := p.node
	w := s.startNodeWorld(t)
	c := generateVariant(t, s.repo, realNodeConfig(t, s.images, "real-node-builds", ""))
	s.install(t, c)
	s.installNodeProfiles(t, c)
	// User-namespaced builds (build.userNamespaces): a catalog of their own.
	cu := generateVariant(t, s.repo, usernsConfig(t, s.images, "real-node-userns"))
	s.install(t, cu)

	var twoArch *prRun
	var firstDigests map[string]string
	t.Run("emulated-arm64", func(t *testing.T) {
		r, watch := s.runOnRealNode(t, c, n, w, "v1", map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": "Dockerfile.run"})
		twoArch = r
		firstDigests = s.checkRealRun(t, r, w, "v1")
		checkStepCreds(t, watch, false)
		s.checkTknLogs(t, r, w)
		// The default storage (auto) picks a mode without /dev/fuse, which
		// the pod does not get, and says which in one line: the kernel's
		// overlay in buildah's user namespace, from buildah 1.35 on.
		want := `storage: overlay \(STORAGE=auto: the kernel's overlay mounted here\)`
		var minor int
		v := s.images.Ref(t, "BUILDAH_VERSION")
		if _, err := fmt.Sscanf(v, "1.%d", &minor); err != nil {
			t.Fatalf("BUILDAH_VERSION %q: %v", v, err)
		}
		if minor < 35 {
			want = `storage: vfs \(STORAGE=auto: buildah ` + regexp.QuoteMeta(v) + `, older than 1.35, .*; this container has no /dev/fuse\)`
		}
		checkStorageLine(t, s, r, want)
	})
	// Chains signs emulated-arm64's run; its runs are deleted at the end.
	t.Run("chains-signed", func(t *testing.T) {
		if twoArch == nil {
			t.Fatal("emulated-arm64 made no run to sign")
		}
		s.chainsSigned(t, twoArch, w, "v1")
	})
	t.Run("sbom", func(t *testing.T) { s.realSBOM(t, c, n, w) })
	t.Run("faults", func(t *testing.T) { s.realFaults(t, c, n, w) })
	t.Run("oom", func(t *testing.T) { s.realOOM(t, n, w) })
	t.Run("node-loss", func(t *testing.T) { s.realNodeLoss(t, n, w) })
	t.Run("start-follow-logs", func(t *testing.T) { s.startFollowOnRealNode(t, w) })
	t.Run("build-only", func(t *testing.T) { s.realBuildOnly(t, c, n, w) })
	t.Run("fuse-overlayfs", func(t *testing.T) {
		// build.storage fuse-overlayfs: the build step asks for /dev/fuse
		// through its limit, and only so does it get the device (the
		// device plugin's allocation).
		cf := generateVariant(t, s.repo, realNodeConfig(t, s.images, "real-node-fuse", "build:\n  storage: fuse-overlayfs\n"))
		s.install(t, cf)
		r, _ := s.runOnRealNode(t, cf, n, w, "fuse", map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": "Dockerfile.run"})
		s.checkRealRun(t, r, w, "fuse")
		checkStorageLine(t, s, r, `storage: fuse-overlayfs \(STORAGE=fuse-overlayfs`)
	})
	t.Run("userns", func(t *testing.T) { s.testUserns(t, cu, n, w, "userns", false) })
	t.Run("userns-unsupported-runtime", func(t *testing.T) { s.testUsernsUnsupported(t, cu, n, w) })
	t.Run("seccomp-default", func(t *testing.T) {
		s.restartKubelet(t, n, true)
		r, watch := s.runOnRealNode(t, c, n, w, "v2", map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": "Dockerfile.run"})
		again := s.checkRealRun(t, r, w, "v2")
		checkStepCreds(t, watch, true)
		// The same commit and params as emulated-arm64, built again in new
		// pods under another kubelet configuration: with SOURCE_DATE_EPOCH
		// empty (the commit's time), every digest must be the same,
		// the Dockerfile's RUN step (under QEMU for arm64) included.
		if firstDigests == nil {
			t.Fatal("emulated-arm64 recorded no digests to compare")
		}
		if !mapsEqual(again, firstDigests) {
			t.Errorf("a rebuild of the same commit is not reproducible:\n first %v\n again %v", firstDigests, again)
		} else {
			t.Logf("reproducible: two builds of commit %s in different pods gave the same digests: index %s, linux/amd64 %s, linux/arm64 %s",
				w.fixture.Commit, again["index"], again["linux/amd64"], again["linux/arm64"])
		}
	})
	t.Run("userns-seccomp-default", func(t *testing.T) {
		if !n.seccompDefault {
			s.restartKubelet(t, n, true)
		}
		// And the pods get hostUsers from the admission policy, as a tkn run's.
		s.testUserns(t, cu, n, w, "userns-seccomp", true)
	})
	t.Run("arch-guard", func(t *testing.T) {
		r, _ := s.runOnRealNode(t, c, n, w, "v3", map[string]string{"ALLOW_EMULATION": "false"})
		tr := s.failedBuild(t, r, "build-arm64")
		// Tekton's condition names the step and its exit code, never the
		// step's output (pkg/pod/status.go); the guard's words are in the
		// step's log, where tkn and the Dashboard show them.
		msg := tr.Status.GetCondition(apis.ConditionSucceeded).Message
		t.Logf("build-arm64: %s", msg)
		if !strings.Contains(msg, `"step-build" exited with code 1`) {
			t.Errorf("build-arm64 failed, but not in its build step: %s", msg)
		}
		log := s.stepLog(t, c.ns(), tr, "step-build")
		t.Logf("build-arm64 step-build log:\n%s", log)
		if !strings.Contains(log, "linux/arm64") || !strings.Contains(log, "ALLOW_EMULATION") {
			t.Errorf("the arch guard's message names neither the platform nor ALLOW_EMULATION:\n%s", log)
		}
	})
	t.Run("missing-seccomp-profile", func(t *testing.T) {
		// A node the loader has not reached: the profile file is not there.
		profile := filepath.Join(c.cfg.Seccomp.KubeletDir, c.cfg.Seccomp.Profile)
		saved, err := os.ReadFile(profile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(profile); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { write(t, profile, saved) })
		r, _ := s.runOnRealNode(t, c, n, w, "v5", nil)
		tr := s.failedBuild(t, r, "build-amd64")
		msg := tr.Status.GetCondition(apis.ConditionSucceeded).Message
		t.Logf("build-amd64: %s", msg)
		if !strings.Contains(msg, `"build"`) || !strings.Contains(msg, profile) || !strings.Contains(msg, "no such file or directory") {
			t.Errorf("the TaskRun's message does not name the build step and the missing profile %s: %s", profile, msg)
		}
	})
	t.Run("loader-without-apparmor", func(t *testing.T) { s.loaderWithoutAppArmor(t) })
	t.Run("wrong-ref", func(t *testing.T) {
		r, _ := s.runOnRealNode(t, c, n, w, "v4", map[string]string{"GIT_REF": "no-such-branch"})
		tr := s.failedBuild(t, r, "build-amd64")
		if msg := tr.Status.GetCondition(apis.ConditionSucceeded).Message; !strings.Contains(msg, `"step-clone" exited with code 1`) {
			t.Errorf("build-amd64 failed, but not in its clone step: %s", msg)
		}
		log := s.stepLog(t, c.ns(), tr, "step-clone")
		if !strings.Contains(log, "git-sync could not clone "+w.fixture.URL+" at no-such-branch") {
			t.Errorf("the clone step's log does not say what failed:\n%s", log)
		}
	})
}

// installNodeProfiles applies the node profile loader, as the README's
// "Prepare the cluster" says, and waits until it has installed the seccomp
// profile on the real node and said, in its log, that this kernel has no
// AppArmor.
func (s *stack) installNodeProfiles(t testing.TB, c catalog) {
	t.Helper()
	dir := "examples/cluster/node-profiles/"
	out, err := s.kubectl(t, c.dir, "apply", "-f", dir)
	t.Logf("$ kubectl apply -f %s\n%s", dir, out)
	if err != nil {
		t.Fatalf("kubectl apply -f %s: %v", dir, err)
	}
	profile := filepath.Join(kubeletRoot, "seccomp", c.cfg.Seccomp.Profile)
	want, err := os.ReadFile(filepath.Join(c.dir, "examples/cluster/seccomp", filepath.Base(c.cfg.Seccomp.Profile)))
	if err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "the seccomp profile on the real node ("+profile+")", 120*time.Second, func(ctx context.Context) (bool, error) {
		got, err := os.ReadFile(profile)
		if err != nil {
			return false, err
		}
		return string(got) == string(want), fmt.Errorf("%s differs from the generated profile", profile)
	})
}

// checkStorageLine checks that each build's log names its storage mode in
// the line build.sh writes (re, a regexp).
func checkStorageLine(t testing.TB, s *stack, r *prRun, re string) {
	t.Helper()
	trs, err := r.taskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(re)
	for _, task := range []string{"build-amd64", "build-arm64"} {
		log := s.stepLog(t, r.c.ns(), trs[task], "step-build")
		line := want.FindString(log)
		if line == "" {
			t.Errorf("%s: no line matching %q in the build log:\n%s", task, re, head(log, 5))
			continue
		}
		t.Logf("%s: %s", task, line)
	}
}

// loaderWithoutAppArmor applies the node-profile loader of a catalog that
// asks for AppArmor (the default apparmor.mode) to this node, whose kernel
// has none: the loader must say so and what to do, install the seccomp
// profile anyway, and keep running rather than crash-loop.
func (s *stack) loaderWithoutAppArmor(t testing.TB) {
	const ns = "node-profiles-apparmor"
	c := generateVariant(t, s.repo, fmt.Sprintf("cluster:\n  namespace: %s\n  nodeProfileLoaderImage: %s\n", ns, s.images.Ref(t, "NODE_PROFILE_LOADER_IMAGE")))
	if out, err := s.kubectl(t, c.dir, "create", "namespace", ns); err != nil {
		t.Fatalf("kubectl create namespace %s: %v\n%s", ns, err, out)
	}
	if out, err := s.kubectl(t, c.dir, "apply", "-f", "examples/cluster/node-profiles/"); err != nil {
		t.Fatalf("kubectl apply -f examples/cluster/node-profiles/: %v\n%s", err, out)
	}
	var pod *corev1.Pod
	s.waitFor(t, "the AppArmor loader's pod Running on the real node", 120*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + realNodeName})
		if err != nil || len(pods.Items) != 1 {
			return false, fmt.Errorf("loader pods on %s: %v", realNodeName, err)
		}
		pod = &pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning, fmt.Errorf("loader pod %s is %s", pod.Name, pod.Status.Phase)
	})
	b, err := s.kube.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "load"}).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	t.Logf("loader log:\n%s", log)
	for _, want := range []string{
		"installed seccomp profile " + c.cfg.Seccomp.Profile,
		"AppArmor profile " + c.cfg.AppArmor.Profile + " not loaded: this node's kernel has no AppArmor",
		"set apparmor.architectures.amd64: none",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the loader's log has no %q", want)
		}
	}
	time.Sleep(3 * time.Second) // a crash loop would restart it by now
	pod, err = s.kube.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if st.RestartCount != 0 {
			t.Errorf("loader container %s restarted %d times", st.Name, st.RestartCount)
		}
	}
	if pod.Status.Phase != corev1.PodRunning {
		t.Errorf("loader pod is %s, want Running", pod.Status.Phase)
	}
}

// runOnRealNode creates the example PipelineRun with the test's params, every
// pod on the real node, and waits for it to end, watching the runtime for
// each step container's real credentials meanwhile.
func (s *stack) runOnRealNode(t testing.TB, c catalog, n *realNode, w *nodeWorld, tag string, params map[string]string) (*prRun, *credWatch) {
	t.Helper()
	r, watch := s.startOnRealNode(t, c, n, w, tag, params, nil)
	s.waitRealRun(t, r, watch)
	return r, watch
}

// waitRealRun waits for a run on the real node to end, then stops its watch.
func (s *stack) waitRealRun(t testing.TB, r *prRun, watch *credWatch) {
	t.Helper()
	var pr *v1.PipelineRun
	s.waitFor(t, "PipelineRun "+r.name+" done on the real node", 8*time.Minute, func(ctx context.Context) (bool, error) {
		var err error
		pr, err = r.get(ctx)
		if err != nil {
			return false, err
		}
		return pr.IsDone(), fmt.Errorf("PipelineRun %s: %s", r.name, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
	})
	watch.stop()
	t.Logf("PipelineRun %s: %s", r.name, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
}

// startOnRealNode creates the example PipelineRun as runOnRealNode does,
// with podTemplate's fields over the run's pod template (which keeps the
// generated one's, hostUsers included; a nil value removes the field), and
// returns at once; the caller stops the watch.
func (s *stack) startOnRealNode(t testing.TB, c catalog, n *realNode, w *nodeWorld, tag string, params map[string]string, podTemplate map[string]any) (*prRun, *credWatch) {
	t.Helper()
	values := map[string]string{
		"GIT_URL": w.fixture.URL, "GIT_REF": "main", "IMAGE": w.image(tag), "TLS_VERIFY": "false",
	}
	for k, v := range params {
		values[k] = v
	}
	file := variantFile(t, c, func(pr map[string]any) {
		spec := pr["spec"].(map[string]any)
		var ps []any
		for _, k := range sortedKeys(values) {
			ps = append(ps, map[string]any{"name": k, "value": values[k]})
		}
		spec["params"] = ps
		// Not the per-architecture taskRunSpecs: both builds and the manifest
		// run on the real node, arm64 under emulation.
		delete(spec, "taskRunSpecs")
		tmpl, _ := spec["taskRunTemplate"].(map[string]any)
		if tmpl == nil {
			tmpl = map[string]any{}
		}
		pt, _ := tmpl["podTemplate"].(map[string]any)
		if pt == nil {
			pt = map[string]any{}
		}
		for k, v := range toMap(t, realNodePodTemplate()) {
			pt[k] = v
		}
		for k, v := range podTemplate {
			if v == nil {
				delete(pt, k)
				continue
			}
			pt[k] = v
		}
		tmpl["podTemplate"] = pt
		spec["taskRunTemplate"] = tmpl
	})
	watch := watchCreds(n.cri, c.ns())
	return s.create(t, c, file), watch
}

// toMap is v as the generic map a YAML document holds.
func toMap(t testing.TB, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkRealRun checks a run that should have succeeded against the
// registry, as the real-build test does: the index lists exactly the two
// platforms with the build TaskRuns' digests, its digest is the manifest
// TaskRun's, each image's config has its architecture, and the RUN step ran
// as its platform (under qemu for arm64).
func (s *stack) checkRealRun(t testing.TB, r *prRun, w *nodeWorld, tag string) map[string]string {
	t.Helper()
	ctx := context.Background()
	pr, trs := s.succeededRealRun(t, r)
	for _, name := range []string{"build-amd64", "build-arm64", "manifest"} {
		tr := trs[name]
		if tr == nil {
			t.Fatalf("no TaskRun for %s", name)
		}
		pod, err := s.kube.CoreV1().Pods(r.c.ns()).Get(ctx, tr.Status.PodName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName != realNodeName {
			t.Errorf("%s ran on %q, not the real node", name, pod.Spec.NodeName)
		}
	}
	raw, err := realbuild.RawManifest(ctx, w.image(tag))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed index %s:\n%s", w.image(tag), raw)
	sum := sha256.Sum256(raw)
	indexDigest := "sha256:" + hex.EncodeToString(sum[:])
	if got := taskRunResults(trs["manifest"])["IMAGE_DIGEST"]; got != indexDigest {
		t.Errorf("manifest IMAGE_DIGEST %s, the registry's index is %s", got, indexDigest)
	}
	index, err := realbuild.ParseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := index.ByPlatform
	if index.Entries != 2 {
		t.Errorf("index has %d entries, want 2", index.Entries)
	}
	want := map[string]string{
		"linux/amd64": taskRunResults(trs["build-amd64"])["IMAGE_DIGEST"],
		"linux/arm64": taskRunResults(trs["build-arm64"])["IMAGE_DIGEST"],
	}
	if !mapsEqual(got, want) {
		t.Errorf("index platforms -> digests %v, want the builds' %v", got, want)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		ref := w.registry + "/multiarch/app@" + want["linux/"+arch]
		cfg, err := realbuild.Config(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != arch {
			t.Errorf("%s: config architecture %q, want %s", ref, cfg.Architecture, arch)
		}
		if prParam(pr, "DOCKERFILE") != "Dockerfile.run" {
			continue
		}
		builtOn, err := realbuild.FileFromImage(ctx, ref, t.TempDir(), "/built-on")
		if err != nil {
			t.Fatal(err)
		}
		machine := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
		if strings.TrimSpace(string(builtOn)) != arch+" "+machine {
			t.Errorf("%s: the RUN step recorded %q, want %q", ref, builtOn, arch+" "+machine)
		}
	}
	want["index"] = indexDigest
	return want
}

// failedBuild waits for the run to fail and returns the TaskRun of task,
// which must have failed; the manifest task must not have run.
func (s *stack) failedBuild(t testing.TB, r *prRun, task string) *v1.TaskRun {
	t.Helper()
	pr, err := r.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !failed(pr.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Fatalf("PipelineRun %s: %s, want it failed", r.name, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
	}
	trs, err := r.taskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := trs["manifest"]; ok {
		t.Errorf("the manifest task ran after a failed build")
	}
	tr := trs[task]
	if tr == nil || !failed(tr.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Fatalf("TaskRun for %s did not fail: %v", task, tr)
	}
	return tr
}

// stepLog is a step container's log, read through the API server from the
// kubelet, as kubectl logs does.
func (s *stack) stepLog(t testing.TB, ns string, tr *v1.TaskRun, ctr string) string {
	t.Helper()
	b, err := s.kube.CoreV1().Pods(ns).GetLogs(tr.Status.PodName, &corev1.PodLogOptions{Container: ctr}).DoRaw(context.Background())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// checkTknLogs runs the real tkn, as a user reads a build: its output must be
// the real build output of every task.
func (s *stack) checkTknLogs(t testing.TB, r *prRun, w *nodeWorld) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+s.nsPath, "--", filepath.Join(s.bin, "tkn"),
		"--kubeconfig", s.pki.kubeconfig, "pipelinerun", "logs", r.name, "-n", r.c.ns())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.work}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tkn pipelinerun logs %s: %v\n%s", r.name, err, out)
	}
	log := string(out)
	t.Logf("$ tkn pipelinerun logs %s -n %s (first lines)\n%s", r.name, r.c.ns(), head(log, 30))
	for _, want := range []string{
		"[build-amd64 : clone] cloning " + w.fixture.URL + " at main",
		"[build-amd64 : clone] cloned commit " + w.fixture.Commit,
		"[build-arm64 : build] STEP 4/5: RUN [\"/app\", \"record\", \"/built-on\"]",
		"[build-amd64 : build] STEP 4/5: RUN [\"/app\", \"record\", \"/built-on\"]",
		// The OCI labels buildah adds as a last step, from the clone.
		"[build-amd64 : build] STEP 5/5: LABEL \"org.opencontainers.image.source\"=\"" + w.fixture.URL +
			"\" \"org.opencontainers.image.revision\"=\"" + w.fixture.Commit + "\"",
		"[manifest : manifest]",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("tkn pipelinerun logs has no line %q", want)
		}
	}
}

func head(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// credWatch records, for each step container of the run's pods, what the
// kernel says of its first process while it runs.
type credWatch struct {
	mu     sync.Mutex
	seen   map[string]procCreds // "<pipeline task>/<container>"
	done   chan struct{}
	exited chan struct{}
}

func watchCreds(c *criClient, ns string) *credWatch {
	w := &credWatch{seen: map[string]procCreds{}, done: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(w.exited)
		for {
			select {
			case <-w.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ctrs, err := c.running(ctx, ns)
			cancel()
			if err != nil {
				continue
			}
			for _, ctr := range ctrs {
				key := ctr.pod + "/" + ctr.name
				w.mu.Lock()
				_, ok := w.seen[key]
				w.mu.Unlock()
				if ok {
					continue
				}
				if pc, err := readProcCreds(ctr.pid); err == nil {
					w.mu.Lock()
					w.seen[key] = pc
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

func (w *credWatch) stop() {
	close(w.done)
	<-w.exited
}

// byStep is what was seen of container ctr in the pods whose names contain
// task (Tekton names a TaskRun's pod <run>-<pipeline task>-pod).
func (w *credWatch) byStep(task, ctr string) (procCreds, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, pc := range w.seen {
		pod, name, _ := strings.Cut(key, "/")
		if name == ctr && strings.Contains(pod, "-"+task+"-pod") {
			return pc, true
		}
	}
	return procCreds{}, false
}

// The runtime's default capability set (containerd's and Docker's): what a
// container gets when its securityContext neither adds nor drops any.
const defaultCaps = 0xa80425fb

// checkStepCreds checks, from the running containers, that the clone step
// ran as git-sync's UID 65533 with no capabilities, and the build step as
// root with exactly the runtime's default capabilities (no CAP_SYS_ADMIN)
// under the catalog's seccomp filter.
func checkStepCreds(t testing.TB, w *credWatch, seccompDefault bool) {
	t.Helper()
	for _, task := range []string{"build-amd64", "build-arm64"} {
		clone, ok := w.byStep(task, "step-clone")
		if !ok {
			t.Errorf("%s: step-clone was never seen running", task)
		} else {
			t.Logf("%s step-clone: Uid %s, CapEff %#x %v, NoNewPrivs %v, Seccomp %s", task, clone.uid, clone.capEff, capSet(clone.capEff), clone.noNewPrivs, clone.seccompMode)
			if clone.uid != "65533 65533 65533 65533" || clone.capEff != 0 || !clone.noNewPrivs {
				t.Errorf("%s step-clone: Uid %s CapEff %#x NoNewPrivs %v, want UID 65533, no capabilities, no new privileges", task, clone.uid, clone.capEff, clone.noNewPrivs)
			}
			if seccompDefault && clone.seccompMode != "2" {
				t.Errorf("%s step-clone: Seccomp %s with the kubelet's seccompDefault, want 2 (filter)", task, clone.seccompMode)
			}
		}
		build, ok := w.byStep(task, "step-build")
		if !ok {
			t.Errorf("%s: step-build was never seen running", task)
			continue
		}
		t.Logf("%s step-build: Uid %s, uid_map %q, CapEff %#x %v, Seccomp %s", task, build.uid, build.uidMap, build.capEff, capSet(build.capEff), build.seccompMode)
		if build.uid != "0 0 0 0" || build.capEff != defaultCaps || build.capBnd != defaultCaps {
			t.Errorf("%s step-build: Uid %s CapEff %#x CapBnd %#x, want root with the runtime's default set %#x", task, build.uid, build.capEff, build.capBnd, uint64(defaultCaps))
		}
		if build.seccompMode != "2" {
			t.Errorf("%s step-build: Seccomp %s, want 2: the catalog's Localhost profile", task, build.seccompMode)
		}
	}
}

// succeededRealRun returns a finished run on the real node and its
// TaskRuns by pipeline task, failing t with every step's log unless it
// succeeded.
func (s *stack) succeededRealRun(t testing.TB, r *prRun) (*v1.PipelineRun, map[string]*v1.TaskRun) {
	t.Helper()
	ctx := context.Background()
	pr, err := r.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trs, err := r.taskRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !succeeded(pr.Status.GetCondition(apis.ConditionSucceeded)) {
		for name, tr := range trs {
			t.Logf("TaskRun %s (%s): %s", name, tr.Name, condition(tr.Status.GetCondition(apis.ConditionSucceeded)))
			for _, st := range tr.Status.Steps {
				t.Logf("  %s: %s", st.Name, s.stepLog(t, r.c.ns(), tr, "step-"+st.Name))
			}
		}
		t.Fatalf("PipelineRun %s did not succeed: %s", r.name, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
	}
	return pr, trs
}
