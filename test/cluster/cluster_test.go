package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	gencatalog "github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

var fuseResource = config.Default().Build.FuseResource

// catalog is one generated tree (the committed one, or one generated from a
// variant configuration) and the configuration it was generated from, which
// is where the test takes its expectations from.
type catalog struct {
	name string
	dir  string
	cfg  *config.Config
	// cfgFile is the configuration file a variant was generated from.
	cfgFile string
}

func (c catalog) ns() string { return c.cfg.Example.Namespace }

// TestCluster runs the catalog through the real API server, scheduler and
// Tekton controller. The subtests share one control plane (about 15 s to
// start) and run in order: later ones need the catalog the first installs.
func TestCluster(t *testing.T) {
	s := startStack(t, kwokNodes{})
	committed := catalog{name: "committed catalog (apparmor.mode field)", dir: s.repo, cfg: config.Default()}
	if committed.cfg.AppArmor.Mode != config.AppArmorField {
		t.Fatalf("the default configuration's apparmor.mode is %q; this test expects field", committed.cfg.AppArmor.Mode)
	}

	t.Run("install", func(t *testing.T) { s.install(t, committed) })
	if !s.installed(committed) {
		t.Fatal("the catalog is not installed where the example runs; nothing else can run")
	}
	t.Run("pipelinerun-succeeds", func(t *testing.T) { s.runToSuccess(t, committed) })
	t.Run("arm64-build-fails", func(t *testing.T) { s.arm64Fails(t, committed) })
	t.Run("typo-rejected-by-api-server", func(t *testing.T) { s.typoAPIServer(t, committed) })
	t.Run("typo-rejected-by-controller", func(t *testing.T) { s.typoController(t, committed) })
	// Before the arch policy: what a run without taskRunSpecs does without it.
	t.Run("without-taskRunSpecs", func(t *testing.T) { s.withoutTaskRunSpecs(t, committed) })
	t.Run("fuse-scheduling", func(t *testing.T) { s.fuseScheduling(t, committed) })
	t.Run("arch-policy", func(t *testing.T) { s.archPolicy(t, committed) })
	t.Run("start", func(t *testing.T) { s.startCommand(t, committed) })
	t.Run("annotation-mode", func(t *testing.T) {
		c := generateVariant(t, s.repo, "apparmor:\n  mode: annotation\nexample:\n  namespace: multiarch-builds-annotation\n")
		if c.cfg.AppArmor.Mode != config.AppArmorAnnotation {
			t.Fatalf("variant config: apparmor.mode %q", c.cfg.AppArmor.Mode)
		}
		t.Run("install", func(t *testing.T) { s.install(t, c) })
		if !s.installed(c) {
			t.Fatal("the variant catalog is not installed where its example runs")
		}
		s.runToSuccess(t, c)
	})
	t.Run("prune", func(t *testing.T) {
		// A namespace of its own: the runs the other subtests left would
		// count in the histories.
		c := generateVariant(t, s.repo, "example:\n  namespace: multiarch-prune\n")
		s.prepareNamespace(t, c)
		s.prune(t, c)
	})
	t.Run("remote-resolution", func(t *testing.T) { s.remoteResolution(t) })
	// Last: the Triggers processes it starts stop when it ends.
	t.Run("triggers", func(t *testing.T) { s.triggers(t, committed) })
}

// install follows the README's "Prepare the cluster" step 4 and the catalog
// step 5, with the real kubectl, from the catalog's directory.
func (s *stack) install(t testing.TB, c catalog) {
	s.prepareNamespace(t, c)
	// The README's install command (catalog.InstallCommand), as it stands.
	install := strings.Fields(gencatalog.InstallCommand(c.cfg))[1:]
	out, err := s.kubectl(t, c.dir, install...)
	t.Logf("$ kubectl %s\n%s", strings.Join(install, " "), out)
	if err != nil {
		t.Fatalf("the README's `kubectl %s` failed: %v", strings.Join(install, " "), err)
	}

	ctx := context.Background()
	var missing []string
	for _, task := range []string{"git-sync", "buildah-build", "buildah-manifest"} {
		if _, err := s.tekton.TektonV1().Tasks(c.ns()).Get(ctx, task, metav1.GetOptions{}); err != nil {
			missing = append(missing, "Task "+task)
		}
	}
	if _, err := s.tekton.TektonV1().Pipelines(c.ns()).Get(ctx, "multiarch-build", metav1.GetOptions{}); err != nil {
		missing = append(missing, "Pipeline multiarch-build")
	}
	if len(missing) > 0 {
		t.Fatalf("after the README's install, %s are not in namespace %q, where examples/pipelinerun.yaml runs", strings.Join(missing, ", "), c.ns())
	}
}

// prepareNamespace is the README's "Prepare the cluster" step 4: the build
// namespace, its ServiceAccount and the registry Secret, all a run needs
// when its Pipeline and Tasks come from a resolver.
func (s *stack) prepareNamespace(t testing.TB, c catalog) {
	t.Helper()
	out, err := s.kubectl(t, c.dir, "apply", "-f", "examples/cluster/build-identity.yaml")
	if err != nil {
		t.Fatalf("kubectl apply -f examples/cluster/build-identity.yaml: %v\n%s", err, out)
	}
	if c.cfg.Example.RegistrySecret != "" {
		out, err = s.kubectl(t, c.dir, "-n", c.ns(), "create", "secret", "docker-registry", c.cfg.Example.RegistrySecret,
			"--docker-server=registry.example.com", "--docker-username=cluster-test", "--docker-password=not-a-secret")
		if err != nil {
			t.Fatalf("create the registry Secret: %v\n%s", err, out)
		}
	}
}

func (s *stack) installed(c catalog) bool {
	_, err := s.tekton.TektonV1().Pipelines(c.ns()).Get(context.Background(), "multiarch-build", metav1.GetOptions{})
	return err == nil
}

// generateVariant writes a configuration on top of the defaults and
// generates its catalog into a temporary directory with the generator's own
// command.
func generateVariant(t testing.TB, repo, overrides string) catalog {
	t.Helper()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	write(t, cfgFile, []byte(overrides))
	out := filepath.Join(dir, "catalog")
	cmd := exec.Command("go", "run", "./generator", "generate", "--config", cfgFile, "--out", out)
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./generator generate --config %s --out %s: %v\n%s", cfgFile, out, err, b)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	return catalog{name: "variant " + strings.TrimSpace(overrides), dir: out, cfg: cfg, cfgFile: cfgFile}
}

// prRun is one PipelineRun and what the test knows about it.
type prRun struct {
	s    *stack
	c    catalog
	name string
}

var createdRE = regexp.MustCompile(`pipelinerun\.tekton\.dev/(\S+) created`)

// create runs `kubectl create -f file` in the catalog's directory, as the
// README does.
func (s *stack) create(t testing.TB, c catalog, file string) *prRun {
	t.Helper()
	out, err := s.kubectl(t, c.dir, "create", "-f", file)
	if err != nil {
		t.Fatalf("kubectl create -f %s: %v\n%s", file, err, out)
	}
	m := createdRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("kubectl create -f %s: no PipelineRun name in its output:\n%s", file, out)
	}
	t.Logf("$ kubectl create -f %s\n%s", file, out)
	return &prRun{s: s, c: c, name: m[1]}
}

// variantFile writes examples/pipelinerun.yaml, changed by edit, into a
// temporary file and returns its path.
func variantFile(t testing.TB, c catalog, edit func(pr map[string]any)) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.dir, "examples", "pipelinerun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr map[string]any
	if err := yaml.Unmarshal(data, &pr); err != nil {
		t.Fatal(err)
	}
	edit(pr)
	out, err := yaml.Marshal(pr)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "pipelinerun.yaml")
	write(t, f, out)
	return f
}

func (r *prRun) taskRuns(ctx context.Context) (map[string]*v1.TaskRun, error) {
	list, err := r.s.tekton.TektonV1().TaskRuns(r.c.ns()).List(ctx, metav1.ListOptions{
		LabelSelector: pipeline.PipelineRunLabelKey + "=" + r.name,
	})
	if err != nil {
		return nil, err
	}
	m := map[string]*v1.TaskRun{}
	for i := range list.Items {
		tr := &list.Items[i]
		m[tr.Labels[pipeline.PipelineTaskLabelKey]] = tr
	}
	return m, nil
}

// waitTaskRuns waits until the run's TaskRuns are exactly the given
// pipeline tasks.
func (r *prRun) waitTaskRuns(t testing.TB, want ...string) map[string]*v1.TaskRun {
	t.Helper()
	var got map[string]*v1.TaskRun
	sort.Strings(want)
	r.s.waitFor(t, fmt.Sprintf("TaskRuns %v of %s", want, r.name), 60*time.Second, func(ctx context.Context) (bool, error) {
		var err error
		got, err = r.taskRuns(ctx)
		if err != nil {
			return false, err
		}
		names := mapKeys(got)
		if len(names) > len(want) {
			return false, fmt.Errorf("unexpected TaskRuns: got %v, want %v", names, want)
		}
		return slices.Equal(names, want), fmt.Errorf("TaskRuns so far: %v", names)
	})
	return got
}

// waitPod waits for the TaskRun's pod to be scheduled and Running (kwok
// moves it there once it is bound to a node), and returns it.
func (r *prRun) waitPod(t testing.TB, tr *v1.TaskRun) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	r.s.waitFor(t, "the pod of "+tr.Name+" Running on a node", 60*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := r.s.kube.CoreV1().Pods(r.c.ns()).List(ctx, metav1.ListOptions{LabelSelector: pipeline.TaskRunLabelKey + "=" + tr.Name})
		if err != nil {
			return false, err
		}
		if len(pods.Items) != 1 {
			return false, fmt.Errorf("%d pods for %s", len(pods.Items), tr.Name)
		}
		pod = &pods.Items[0]
		if pod.Spec.NodeName == "" {
			return false, fmt.Errorf("pod %s not scheduled: %v", pod.Name, podScheduledMessage(pod))
		}
		return pod.Status.Phase == corev1.PodRunning, fmt.Errorf("pod %s is %s", pod.Name, pod.Status.Phase)
	})
	return pod
}

func podScheduledMessage(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Reason + ": " + c.Message
		}
	}
	return "no PodScheduled condition yet"
}

// finish tells the simulated kubelet how the pod's step containers end.
func (r *prRun) finish(t testing.TB, pod *corev1.Pod, outcomes map[string]stepOutcome) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": finishAnnotations(t, outcomes)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.kube.CoreV1().Pods(pod.Namespace).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotate pod %s: %v", pod.Name, err)
	}
}

func (r *prRun) waitTaskRunDone(t testing.TB, name string) *v1.TaskRun {
	t.Helper()
	var tr *v1.TaskRun
	r.s.waitFor(t, "TaskRun "+name+" done", 60*time.Second, func(ctx context.Context) (bool, error) {
		var err error
		tr, err = r.s.tekton.TektonV1().TaskRuns(r.c.ns()).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return tr.IsDone(), fmt.Errorf("TaskRun %s: %s", name, condition(tr.Status.GetCondition(apis.ConditionSucceeded)))
	})
	return tr
}

func (r *prRun) waitDone(t testing.TB) *v1.PipelineRun {
	t.Helper()
	var pr *v1.PipelineRun
	r.s.waitFor(t, "PipelineRun "+r.name+" done", 60*time.Second, func(ctx context.Context) (bool, error) {
		var err error
		pr, err = r.get(ctx)
		if err != nil {
			return false, err
		}
		return pr.IsDone(), fmt.Errorf("PipelineRun %s: %s", r.name, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
	})
	return pr
}

func (r *prRun) get(ctx context.Context) (*v1.PipelineRun, error) {
	return r.s.tekton.TektonV1().PipelineRuns(r.c.ns()).Get(ctx, r.name, metav1.GetOptions{})
}

func condition(c *apis.Condition) string {
	if c == nil {
		return "no Succeeded condition yet"
	}
	return fmt.Sprintf("Succeeded=%s reason=%s message=%q", c.Status, c.Reason, c.Message)
}

func succeeded(c *apis.Condition) bool { return c != nil && c.Status == corev1.ConditionTrue }
func failed(c *apis.Condition) bool    { return c != nil && c.Status == corev1.ConditionFalse }

// values are the results the test makes each architecture's build report.
type values struct {
	commit     string
	commitTime string // COMMIT_TIME: the commit's committer time
	url        string
	tagged     string // IMAGE_URL: the example's IMAGE plus -<arch>
	digest     string
	ref        string // IMAGE_REF: repository@digest
	buildArch  string // BUILD_ARCH: what uname -m says on a node of arch
}

// manifestOutcomes are how a simulated manifest pod's steps end when the
// index was pushed: every result the Task declares (SBOM off).
func manifestOutcomes(url, digest, images string) map[string]stepOutcome {
	return map[string]stepOutcome{
		"step-manifest":    {results: map[string]string{"IMAGE_URL": url, "IMAGE_DIGEST": digest, "IMAGES": images}},
		"step-sbom-index":  {},
		"step-sbom-attach": {results: map[string]string{"SBOM_IMAGE_URL": "", "SBOM_IMAGE_DIGEST": "", "SBOM_IMAGE_REF": ""}},
	}
}

// fakeCommitTime is the COMMIT_TIME every simulated clone reports.
const fakeCommitTime = "1796427226"

// unameMachine is what uname -m prints on a node of each architecture.
var unameMachine = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "s390x": "s390x", "ppc64le": "ppc64le", "riscv64": "riscv64"}

// outcomes are how a simulated build pod's steps end when its build
// succeeds: every result the Task declares, as its steps would write them
// (SBOM off: the SBOM steps write their results empty).
func (v values) outcomes(gitURL string) map[string]stepOutcome {
	return map[string]stepOutcome{
		"step-clone":       {results: map[string]string{"COMMIT": v.commit, "URL": gitURL, "COMMIT_TIME": v.commitTime}},
		"step-build":       {results: map[string]string{"IMAGE_URL": v.tagged, "IMAGE_DIGEST": v.digest, "IMAGE_REF": v.ref, "BUILD_ARCH": v.buildArch, "EMULATED": "false"}},
		"step-sbom":        {},
		"step-sbom-attach": {results: map[string]string{"SBOM_IMAGE_URL": "", "SBOM_IMAGE_DIGEST": "", "SBOM_IMAGE_REF": ""}},
	}
}

func buildValues(c catalog, arch string) values {
	repo := repository(c.cfg.Example.Image)
	d := fakeDigest("image " + arch)
	return values{
		commit:     fakeDigest("commit")[len("sha256:"):][:40],
		commitTime: fakeCommitTime,
		url:        c.cfg.Example.GitURL,
		tagged:     c.cfg.Example.Image + "-" + arch,
		digest:     d,
		ref:        repo + "@" + d,
		buildArch:  unameMachine[arch],
	}
}

func fakeDigest(s string) string {
	sum := sha256.Sum256([]byte("tekton-multiarch cluster test " + s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// repository is an image reference without its tag.
func repository(image string) string {
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon]
	}
	return image
}

func archs(c catalog) []string {
	var a []string
	for _, arch := range c.cfg.Architectures {
		a = append(a, arch.ID())
	}
	return a
}

func buildTasks(c catalog) []string {
	var names []string
	for _, a := range archs(c) {
		names = append(names, "build-"+a)
	}
	return names
}

// checkBuildNode: a build that needs /dev/fuse (build.storage
// fuse-overlayfs) must be on its architecture's fuse node; any other on a
// node of its architecture (arch as the pipeline task names it: arm-v7).
func checkBuildNode(t testing.TB, c catalog, pod *corev1.Pod, arch string) {
	t.Helper()
	if c.cfg.Build.NeedsFuse() {
		if want := fuseNode(arch); pod.Spec.NodeName != want {
			t.Errorf("build %s pod %s scheduled on %q, want %q (the %s node with %s)", arch, pod.Name, pod.Spec.NodeName, want, arch, fuseResource)
		}
		return
	}
	if !onArch(pod.Spec.NodeName, arch) {
		t.Errorf("build %s pod %s scheduled on %q, want a node of %s", arch, pod.Name, pod.Spec.NodeName, arch)
	}
}

// fuseNode is the one node of arch that advertises /dev/fuse.
func fuseNode(arch string) string {
	for _, n := range buildNodes {
		if n.archID() == arch && n.fuse {
			return n.name
		}
	}
	return ""
}

// runToSuccess: kubectl create -f examples/pipelinerun.yaml, then check the
// build pods the real controller and scheduler made, complete them with
// results, check the manifest TaskRun got them, complete it and check the
// PipelineRun's results.
func (s *stack) runToSuccess(t testing.TB, c catalog) {
	s.driveToSuccess(t, s.create(t, c, "examples/pipelinerun.yaml"))
}

// buildPods waits for the run's build TaskRuns and their pods, by
// pipeline task and by architecture.
func (r *prRun) buildPods(t testing.TB) (map[string]*v1.TaskRun, map[string]*corev1.Pod) {
	t.Helper()
	builds := r.waitTaskRuns(t, buildTasks(r.c)...)
	pods := map[string]*corev1.Pod{}
	for _, arch := range archs(r.c) {
		pods[arch] = r.waitPod(t, builds["build-"+arch])
	}
	return builds, pods
}

// driveToSuccess does the checks of runToSuccess on a PipelineRun however it
// was created (kubectl, or the start command).
func (s *stack) driveToSuccess(t testing.TB, r *prRun) {
	c := r.c
	builds, pods := r.buildPods(t)
	for _, arch := range archs(c) {
		checkBuildPod(t, c, pods[arch], arch)
	}
	// Both builds are running: the manifest must not have started.
	if now, err := r.taskRuns(context.Background()); err != nil {
		t.Fatal(err)
	} else if _, ok := now["manifest"]; ok {
		t.Errorf("the manifest TaskRun exists while the builds are still running")
	}

	for _, arch := range archs(c) {
		v := buildValues(c, arch)
		r.finish(t, pods[arch], v.outcomes(envOf(pods[arch], "step-clone", "GIT_URL")))
	}
	var lastBuild time.Time
	for _, arch := range archs(c) {
		v := buildValues(c, arch)
		tr := r.waitTaskRunDone(t, builds["build-"+arch].Name)
		if cond := tr.Status.GetCondition(apis.ConditionSucceeded); !succeeded(cond) {
			t.Fatalf("TaskRun build-%s: %s", arch, condition(cond))
		}
		wantResults := map[string]string{"COMMIT": v.commit, "URL": v.url, "COMMIT_TIME": v.commitTime, "IMAGE_URL": v.tagged, "IMAGE_DIGEST": v.digest, "IMAGE_REF": v.ref,
			"BUILD_ARCH": v.buildArch, "EMULATED": "false", "SBOM_IMAGE_URL": "", "SBOM_IMAGE_DIGEST": "", "SBOM_IMAGE_REF": ""}
		if got := taskRunResults(tr); !mapsEqual(got, wantResults) {
			t.Errorf("TaskRun build-%s results (read by Tekton from the termination messages):\n got %v\nwant %v", arch, got, wantResults)
		}
		if ct := tr.Status.CompletionTime; ct != nil && ct.After(lastBuild) {
			lastBuild = ct.Time
		}
	}

	all := r.waitTaskRuns(t, append(buildTasks(c), "manifest")...)
	manifest := all["manifest"]
	if manifest.CreationTimestamp.Time.Before(lastBuild.Truncate(time.Second)) {
		t.Errorf("manifest TaskRun created at %s, before the last build finished at %s", manifest.CreationTimestamp, lastBuild)
	}
	var wantImages []string
	var commits []string
	for _, arch := range archs(c) {
		v := buildValues(c, arch)
		wantImages = append(wantImages, v.ref)
		commits = append(commits, v.commit)
	}
	params := map[string]v1.ParamValue{}
	for _, p := range manifest.Spec.Params {
		params[p.Name] = p.Value
	}
	if got := params["IMAGES"].ArrayVal; !slices.Equal(got, wantImages) {
		t.Errorf("manifest TaskRun param IMAGES = %q, want each build's IMAGE_REF %q", got, wantImages)
	}
	if got, want := params["SOURCE_COMMITS"].StringVal, strings.Join(commits, " "); got != want {
		t.Errorf("manifest TaskRun param SOURCE_COMMITS = %q, want %q", got, want)
	}
	if got := params["COMMIT_TIME"].StringVal; got != fakeCommitTime {
		t.Errorf("manifest TaskRun param COMMIT_TIME = %q, want the first build's COMMIT_TIME %q (the index's SOURCE_DATE_EPOCH by default)", got, fakeCommitTime)
	}
	if got := params["IMAGE"].StringVal; got != c.cfg.Example.Image {
		t.Errorf("manifest TaskRun param IMAGE = %q, want %q", got, c.cfg.Example.Image)
	}

	mpod := r.waitPod(t, manifest)
	checkSecurity(t, c, mpod, "step-manifest", appArmorOfManifest(c))
	index := fakeDigest("index")
	imagesResult := strings.Join(wantImages, ",")
	r.finish(t, mpod, manifestOutcomes(c.cfg.Example.Image, index, imagesResult))

	pr := r.waitDone(t)
	if cond := pr.Status.GetCondition(apis.ConditionSucceeded); !succeeded(cond) {
		t.Fatalf("PipelineRun %s: %s", r.name, condition(cond))
	}
	got := map[string]string{}
	for _, res := range pr.Status.Results {
		got[res.Name] = res.Value.StringVal
	}
	v := buildValues(c, archs(c)[0])
	want := map[string]string{
		"IMAGE_URL":         c.cfg.Example.Image,
		"IMAGE_DIGEST":      index,
		"IMAGES":            imagesResult,
		"CHAINS-GIT_URL":    v.url,
		"CHAINS-GIT_COMMIT": v.commit,
		// One empty entry per architecture: SBOM is off.
		"SBOMS":      strings.Repeat(",", len(archs(c))-1),
		"INDEX_SBOM": "",
	}
	if !mapsEqual(got, want) {
		t.Errorf("PipelineRun results:\n got %v\nwant %v", got, want)
	}
	t.Logf("PipelineRun %s: %s; results %v", r.name, condition(pr.Status.GetCondition(apis.ConditionSucceeded)), got)
}

// checkBuildPod is what the issue asks of each build pod: on its
// architecture's node through the real scheduler, the fuse limit, the
// AppArmor profile, nothing privileged, clone and build in one pod, and the
// params where the step scripts read them.
func checkBuildPod(t testing.TB, c catalog, pod *corev1.Pod, arch string) {
	t.Helper()
	a := architecture(t, c, arch)
	checkBuildNode(t, c, pod, arch)
	wantSel := map[string]string{"kubernetes.io/arch": a.Name}
	for k, v := range a.NodeSelector {
		wantSel[k] = v
	}
	for k, v := range wantSel {
		if got := pod.Spec.NodeSelector[k]; got != v {
			t.Errorf("build-%s pod nodeSelector %s = %q, want %q", arch, k, got, v)
		}
	}
	for _, want := range a.Tolerations {
		if !slices.ContainsFunc(pod.Spec.Tolerations, func(got corev1.Toleration) bool { return got.MatchToleration(&want) }) {
			t.Errorf("build-%s pod tolerations %v lack %v", arch, pod.Spec.Tolerations, want)
		}
	}
	var names []string
	for _, ctr := range pod.Spec.Containers {
		names = append(names, ctr.Name)
	}
	if want := []string{"step-clone", "step-build", "step-sbom", "step-sbom-attach"}; !slices.Equal(names, want) {
		t.Errorf("build-%s pod containers %v, want %v (clone, build and the SBOM in one pod)", arch, names, want)
	}
	build := container(pod, "step-build")
	if build == nil {
		return
	}
	// Only fuse-overlayfs needs /dev/fuse, and then it must keep the pod off
	// nodes without it; the other storage modes ask for nothing.
	q, ok := build.Resources.Limits[corev1.ResourceName(c.cfg.Build.FuseResource)]
	if c.cfg.Build.NeedsFuse() && (!ok || q.String() != "1") {
		t.Errorf("build-%s step-build limits %v, want %s: 1", arch, build.Resources.Limits, c.cfg.Build.FuseResource)
	}
	if !c.cfg.Build.NeedsFuse() && ok {
		t.Errorf("build-%s step-build limits %v: %s with build.storage %s", arch, build.Resources.Limits, c.cfg.Build.FuseResource, c.cfg.Build.Storage)
	}
	checkSecurity(t, c, pod, "step-build", c.cfg.AppArmorFor(a))
	if pod.Spec.ServiceAccountName != c.cfg.Example.ServiceAccount {
		t.Errorf("build-%s pod serviceAccountName %q, want %q", arch, pod.Spec.ServiceAccountName, c.cfg.Example.ServiceAccount)
	}
	for _, e := range []struct{ ctr, name, want string }{
		{"step-clone", "GIT_URL", c.cfg.Example.GitURL},
		{"step-clone", "GIT_REF", c.cfg.Example.GitRef},
		{"step-build", "IMAGE", c.cfg.Example.Image},
		{"step-build", "PLATFORM", a.Platform()},
		{"step-build", "TAG_SUFFIX", "-" + arch},
		{"step-build", "ALLOW_EMULATION", "false"},
	} {
		if got := envOf(pod, e.ctr, e.name); got != e.want {
			t.Errorf("build-%s %s env %s = %q, want %q", arch, e.ctr, e.name, got, e.want)
		}
	}
}

// architecture is the configuration's architecture whose ID is id.
func architecture(t testing.TB, c catalog, id string) config.Architecture {
	t.Helper()
	for _, a := range c.cfg.Architectures {
		if a.ID() == id {
			return a
		}
	}
	t.Fatalf("%s: no architecture %s in the configuration", c.name, id)
	return config.Architecture{}
}

// checkSecurity: the catalog's seccomp profile on container, the AppArmor
// profile the setting want asks for (config.AppArmorFor of the pod's
// architecture; the manifest's is appArmorOfManifest), and no privileged
// container in the pod.
func checkSecurity(t testing.TB, c catalog, pod *corev1.Pod, ctrName, want string) {
	t.Helper()
	for _, ctr := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if sc := ctr.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
			t.Errorf("pod %s: container %s is privileged", pod.Name, ctr.Name)
		}
	}
	ctr := container(pod, ctrName)
	if ctr == nil {
		t.Errorf("pod %s has no container %s", pod.Name, ctrName)
		return
	}
	// The pod Tekton made carries the catalog's seccomp profile, which the
	// kubelet resolves below its seccomp directory.
	var seccomp string
	if sc := ctr.SecurityContext; sc != nil && sc.SeccompProfile != nil {
		seccomp = string(sc.SeccompProfile.Type)
		if sc.SeccompProfile.LocalhostProfile != nil {
			seccomp += "/" + *sc.SeccompProfile.LocalhostProfile
		}
	}
	if want := string(corev1.SeccompProfileTypeLocalhost) + "/" + c.cfg.Seccomp.Profile; seccomp != want {
		t.Errorf("pod %s %s: securityContext.seccompProfile %q, want %q", pod.Name, ctrName, seccomp, want)
	}
	checkAppArmor(t, c, pod, ctrName, want)
}

// checkAppArmor: container's AppArmor profile is the one the setting want
// asks for, as the pod the API server stored has it: the container's own
// field in the field mode, the pod's where the architectures' settings
// differ (the run's taskRunSpec or the arch-pinning policy put it there),
// the annotation, synced to the field by the API server, in the annotation
// mode; none: no AppArmor anywhere.
func checkAppArmor(t testing.TB, c catalog, pod *corev1.Pod, ctrName, want string) {
	t.Helper()
	ctr := container(pod, ctrName)
	if ctr == nil {
		t.Errorf("pod %s has no container %s", pod.Name, ctrName)
		return
	}
	show := func(p *corev1.AppArmorProfile) string {
		if p == nil {
			return ""
		}
		s := string(p.Type)
		if p.LocalhostProfile != nil {
			s += "/" + *p.LocalhostProfile
		}
		return s
	}
	var field, podField string
	if sc := ctr.SecurityContext; sc != nil {
		field = show(sc.AppArmorProfile)
	}
	if pod.Spec.SecurityContext != nil {
		podField = show(pod.Spec.SecurityContext.AppArmorProfile)
	}
	annKey := corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix + ctrName
	ann := pod.Annotations[annKey]
	wantField := map[string]string{
		config.AppArmorLocalhost:      string(corev1.AppArmorProfileTypeLocalhost) + "/" + c.cfg.AppArmor.Profile,
		config.AppArmorRuntimeDefault: string(corev1.AppArmorProfileTypeRuntimeDefault),
	}[want]
	_, uniform := c.cfg.AppArmorUniform()
	switch {
	case want == config.AppArmorNone:
		if field != "" || podField != "" || ann != "" {
			t.Errorf("pod %s %s: AppArmor field %q, pod field %q, annotation %q, want none", pod.Name, ctrName, field, podField, ann)
		}
	case !uniform:
		if podField != wantField || field != "" {
			t.Errorf("pod %s %s: pod securityContext.appArmorProfile %q and the container's %q, want the pod's %q (per-architecture AppArmor)", pod.Name, ctrName, podField, field, wantField)
		}
	case c.cfg.AppArmor.Mode == config.AppArmorField:
		if field != wantField {
			t.Errorf("pod %s %s: securityContext.appArmorProfile %q, want %q", pod.Name, ctrName, field, wantField)
		}
		if ann != "" {
			t.Errorf("pod %s: annotation %s=%q in field mode", pod.Name, annKey, ann)
		}
	case c.cfg.AppArmor.Mode == config.AppArmorAnnotation:
		if want := c.cfg.AppArmorAnnotationValue(); ann != want {
			t.Errorf("pod %s: annotation %s = %q, want %q", pod.Name, annKey, ann, want)
		}
		// The API server copies a container's annotation to its field, so
		// this also shows the annotation names a container the pod has.
		if field != wantField {
			t.Errorf("pod %s %s: securityContext.appArmorProfile %q after the API server's annotation sync, want %q", pod.Name, ctrName, field, wantField)
		}
	}
}

// appArmorOfManifest is the manifest pod's AppArmor setting: every
// architecture's where they agree, else none (it may land on any node).
func appArmorOfManifest(c catalog) string {
	if s, uniform := c.cfg.AppArmorUniform(); uniform {
		return s
	}
	return config.AppArmorNone
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func envOf(pod *corev1.Pod, ctrName, name string) string {
	if ctr := container(pod, ctrName); ctr != nil {
		for _, e := range ctr.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

func taskRunResults(tr *v1.TaskRun) map[string]string {
	m := map[string]string{}
	for _, r := range tr.Status.Results {
		m[r.Name] = r.Value.StringVal
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// withoutTaskRunSpecs documents what the per-arch taskRunSpecs are for.
// With the arm64 build node unavailable (cordoned), the example run's
// build-arm64 waits, unschedulable; the same run without taskRunSpecs has no
// arch constraint, and the scheduler puts build-arm64 on the amd64 node,
// where the build's arch guard would refuse to build (the real-build test
// checks that guard).
func (s *stack) withoutTaskRunSpecs(t testing.TB, c catalog) {
	ctx := context.Background()
	arm := fuseNode("arm64")
	s.cordon(t, arm)

	pinned := s.create(t, c, "examples/pipelinerun.yaml")
	free := s.create(t, c, variantFile(t, c, func(pr map[string]any) {
		delete(pr["spec"].(map[string]any), "taskRunSpecs")
	}))
	defer func() {
		for _, r := range []*prRun{pinned, free} {
			if err := s.cancelRun(ctx, c.ns(), r.name); err != nil {
				t.Error(err)
			}
		}
	}()

	pinnedTRs := pinned.waitTaskRuns(t, buildTasks(c)...)
	s.waitFor(t, "the pinned build-arm64 pod to be found unschedulable", 60*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := s.kube.CoreV1().Pods(c.ns()).List(ctx, metav1.ListOptions{LabelSelector: pipeline.TaskRunLabelKey + "=" + pinnedTRs["build-arm64"].Name})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		p := &pods.Items[0]
		if p.Spec.NodeName != "" {
			return false, fmt.Errorf("pinned build-arm64 pod bound to %s although %s is cordoned", p.Spec.NodeName, arm)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				t.Logf("with taskRunSpecs, %s cordoned: build-arm64 pod %s stays Pending: %s", arm, p.Name, cond.Message)
				return true, nil
			}
		}
		return false, fmt.Errorf("pod %s: %s", p.Name, podScheduledMessage(p))
	})

	freeTRs := free.waitTaskRuns(t, buildTasks(c)...)
	for _, arch := range archs(c) {
		pod := free.waitPod(t, freeTRs["build-"+arch])
		if sel, ok := pod.Spec.NodeSelector["kubernetes.io/arch"]; ok {
			t.Errorf("without taskRunSpecs, build-%s pod still has nodeSelector kubernetes.io/arch=%s", arch, sel)
		}
		node, err := s.kube.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("without taskRunSpecs: build-%s (PLATFORM=%s) scheduled on %s (kubernetes.io/arch=%s)",
			arch, envOf(pod, "step-build", "PLATFORM"), node.Name, node.Labels["kubernetes.io/arch"])
		if arch == "arm64" && node.Labels["kubernetes.io/arch"] != "amd64" {
			t.Errorf("without taskRunSpecs and the arm64 node cordoned, build-arm64 landed on %s (%s); want an amd64 node",
				node.Name, node.Labels["kubernetes.io/arch"])
		}
	}
}

// fuseScheduling: only a build that needs /dev/fuse (build.storage
// fuse-overlayfs) is kept off nodes without it. With amd64-fuse cordoned,
// such a catalog's build-amd64 waits, Pending for want of the resource,
// while the committed catalog's (build.storage auto, no fuse limit) lands on
// amd64-nofuse.
func (s *stack) fuseScheduling(t testing.TB, committed catalog) {
	ctx := context.Background()
	fuse := generateVariant(t, s.repo, "build:\n  storage: fuse-overlayfs\nexample:\n  namespace: multiarch-builds-fuse\n")
	if !fuse.cfg.Build.NeedsFuse() || committed.cfg.Build.NeedsFuse() {
		t.Fatalf("want the variant to need /dev/fuse and the committed catalog not to")
	}
	s.install(t, fuse)
	node := fuseNode("amd64")
	s.cordon(t, node)
	needs := s.create(t, fuse, "examples/pipelinerun.yaml")
	free := s.create(t, committed, "examples/pipelinerun.yaml")
	t.Cleanup(func() {
		for _, r := range []*prRun{needs, free} {
			if err := s.cancelRun(ctx, r.c.ns(), r.name); err != nil {
				t.Error(err)
			}
		}
	})
	trs := needs.waitTaskRuns(t, buildTasks(fuse)...)
	s.waitFor(t, "the fuse-overlayfs build-amd64 pod Pending for "+fuseResource, 60*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := s.kube.CoreV1().Pods(fuse.ns()).List(ctx, metav1.ListOptions{LabelSelector: pipeline.TaskRunLabelKey + "=" + trs["build-amd64"].Name})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		p := &pods.Items[0]
		if p.Spec.NodeName != "" {
			return false, fmt.Errorf("the fuse-overlayfs build-amd64 pod was bound to %s with %s cordoned", p.Spec.NodeName, node)
		}
		msg := podScheduledMessage(p)
		if strings.Contains(msg, "Insufficient "+fuseResource) {
			t.Logf("fuse-overlayfs, %s cordoned: build-amd64 stays Pending: %s", node, msg)
			return true, nil
		}
		return false, fmt.Errorf("pod %s: %s", p.Name, msg)
	})
	pod := free.waitPod(t, free.waitTaskRuns(t, buildTasks(committed)...)["build-amd64"])
	if pod.Spec.NodeName != "amd64-nofuse" {
		t.Errorf("build.storage %s, %s cordoned: build-amd64 on %q, want amd64-nofuse", committed.cfg.Build.Storage, node, pod.Spec.NodeName)
	}
	t.Logf("build.storage %s, %s cordoned: build-amd64 runs on %s", committed.cfg.Build.Storage, node, pod.Spec.NodeName)
}

// cordon makes node unschedulable until the end of t.
func (s *stack) cordon(t testing.TB, node string) {
	t.Helper()
	set := func(on bool) {
		patch := fmt.Sprintf(`{"spec":{"unschedulable":%v}}`, on)
		if _, err := s.kube.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("cordon=%v %s: %v", on, node, err)
		}
	}
	set(true)
	t.Cleanup(func() { set(false) })
}
