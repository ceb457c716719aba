package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gencatalog "github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// archPolicy: examples/cluster/arch-pinning.yaml on the real API server
// (v1.35.4, MutatingAdmissionPolicy on by feature gate and runtime-config),
// with the real Tekton controller making the pods. Runs started without
// taskRunSpecs (kubectl, the real tkn) get every build pod onto its
// architecture's node; pods that are not the catalog's build pods are not
// touched; a broken policy is refused when applied.
func (s *stack) archPolicy(t *testing.T, c catalog) {
	t.Run("typo-refused", func(t *testing.T) { s.policyTypo(t, c) })
	if !t.Run("apply", func(t *testing.T) { s.applyPolicy(t, c) }) {
		return
	}
	t.Run("which-pods", func(t *testing.T) { s.policyDecisions(t, c) })
	t.Run("kubectl-without-taskRunSpecs", func(t *testing.T) {
		r := s.create(t, c, variantFile(t, c, func(pr map[string]any) {
			delete(pr["spec"].(map[string]any), "taskRunSpecs")
		}))
		s.driveToSuccess(t, r)
		r.checkManifestUnpinned(t)
	})
	t.Run("tkn-pipeline-start", func(t *testing.T) {
		s.driveToSuccess(t, s.tknStart(t, c))
	})
	t.Run("third-platform", func(t *testing.T) {
		v := generateVariant(t, s.repo, `architectures:
  - name: amd64
  - name: arm64
  - name: arm
    variant: v7
    nodeSelector:
      `+boardLabel+`: rpi4
    tolerations:
      - key: `+boardLabel+`
        operator: Equal
        value: rpi4
        effect: NoSchedule
example:
  namespace: multiarch-builds-3arch
`)
		t.Run("install", func(t *testing.T) { s.install(t, v) })
		if !s.installed(v) {
			t.Fatal("the three-platform catalog is not installed")
		}
		// One policy per cluster: the variant's (its platforms) replaces the
		// committed one's for this run, and the committed one comes back.
		t.Cleanup(func() { s.applyPolicy(t, c) })
		s.applyPolicy(t, v)
		s.driveToSuccess(t, s.tknStart(t, v))
	})
	t.Run("per-arch-apparmor", func(t *testing.T) { s.perArchAppArmor(t, c) })
	t.Run("no-node-pending", func(t *testing.T) { s.noNodePending(t, c) })
	t.Run("tkn-matrix-pipeline", func(t *testing.T) {
		// The README's command: the configured platforms.
		s.driveMatrix(t, s.tkn(t, c, gencatalog.TknStartMatrixCommand(c.cfg)), "linux/amd64", "linux/arm64")
		// Chosen at run time: exactly those.
		cmd := strings.Replace(gencatalog.TknStartMatrixCommand(c.cfg), "PLATFORMS=linux/amd64,linux/arm64", "PLATFORMS=linux/arm64", 1)
		s.driveMatrix(t, s.tkn(t, c, cmd), "linux/arm64")
	})
	t.Run("tkn-matrix-build-options", func(t *testing.T) { s.matrixBuildOptions(t, c) })
	t.Run("matrix-limits", func(t *testing.T) { s.matrixLimits(t, c) })
}

// policyTypo: the API server compiles the policy's CEL when it is applied,
// and a misspelt field name in an expression is refused with the place.
func (s *stack) policyTypo(t testing.TB, c catalog) {
	data, err := os.ReadFile(filepath.Join(c.dir, gencatalog.ArchPolicyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		// An undeclared name is a compile error. (A misspelt field of the
		// pod, object.spec.containrs, is not: measured, v1.35.4 accepts it
		// and only evaluating it fails, which failurePolicy Fail turns into
		// a refused pod, not an unpinned one.)
		{"cel", "object.spec.containers.filter(", "objct.spec.containers.filter(", "undeclared reference to 'objct'"},
		{"field", "matchConditions:", "matchCondition:", `unknown field "spec.matchCondition"`},
	} {
		broken := strings.Replace(string(data), tc.from, tc.to, 1)
		if broken == string(data) {
			t.Fatalf("%s: %q is not in %s; the test is stale", tc.name, tc.from, gencatalog.ArchPolicyFile)
		}
		f := filepath.Join(t.TempDir(), "arch-pinning.yaml")
		write(t, f, []byte(broken))
		out, err := s.kubectl(t, c.dir, "apply", "-f", f)
		t.Logf("$ kubectl apply -f <%s with %s for %s>\n%s", gencatalog.ArchPolicyFile, tc.to, tc.from, out)
		if err == nil {
			t.Errorf("%s: the API server accepted the broken policy", tc.name)
		} else if !strings.Contains(out, tc.want) {
			t.Errorf("%s: refused, but not for %q:\n%s", tc.name, tc.want, out)
		}
	}
	if _, err := s.kube.AdmissionregistrationV1beta1().MutatingAdmissionPolicies().Get(context.Background(), "multiarch-build-arch", metav1.GetOptions{}); err == nil {
		t.Errorf("a MutatingAdmissionPolicy exists after only broken ones were applied")
	}
}

// applyPolicy runs the README's command from the catalog's directory and
// waits until the API server mutates a build pod of each of the catalog's
// platforms (policies take effect asynchronously).
func (s *stack) applyPolicy(t testing.TB, c catalog) {
	t.Helper()
	out, err := s.kubectl(t, c.dir, "apply", "-f", gencatalog.ArchPolicyFile)
	t.Logf("$ kubectl apply -f %s\n%s", gencatalog.ArchPolicyFile, out)
	if err != nil {
		t.Fatalf("kubectl apply -f %s: %v", gencatalog.ArchPolicyFile, err)
	}
	for _, a := range c.cfg.Architectures {
		s.waitFor(t, "the policy to pin a "+a.Platform()+" build pod", 30*time.Second, func(ctx context.Context) (bool, error) {
			got, err := s.dryRunPod(ctx, c.ns(), probePod(a.Platform(), true, nil))
			if err != nil {
				return false, err
			}
			for k, v := range a.NodeSelector {
				if got.Spec.NodeSelector[k] != v {
					return false, fmt.Errorf("nodeSelector %v", got.Spec.NodeSelector)
				}
			}
			return got.Spec.NodeSelector["kubernetes.io/arch"] == a.Name, fmt.Errorf("nodeSelector %v", got.Spec.NodeSelector)
		})
	}
}

// probePod looks like a build pod to the policy when labelled: the build
// Task's label and a step-build container with PLATFORM.
func probePod(platform string, labelled bool, env map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Labels: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: tasks.StepContainer(tasks.BuildStep), Image: "never-pulled.invalid/probe",
			Env: []corev1.EnvVar{{Name: "PLATFORM", Value: platform}, {Name: "ALLOW_EMULATION", Value: "false"}},
		}}},
	}
	if labelled {
		p.Labels[tasks.BuildTaskLabel] = tasks.BuildName
	}
	for k, v := range env {
		for i := range p.Spec.Containers[0].Env {
			if p.Spec.Containers[0].Env[i].Name == k {
				p.Spec.Containers[0].Env[i].Value = v
			}
		}
	}
	return p
}

// dryRunPod creates pod with dryRun=All: admission runs (the policy
// included), nothing is stored, and the answer is the mutated pod.
func (s *stack) dryRunPod(ctx context.Context, ns string, pod *corev1.Pod) (*corev1.Pod, error) {
	return s.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// policyDecisions: what the policy does to which pod, as the API server
// answers a dry-run create. The catalog's own pods are also checked on the
// runs below.
func (s *stack) policyDecisions(t testing.TB, c catalog) {
	arch := map[string]string{"kubernetes.io/arch": "arm64"}
	for _, tc := range []struct {
		name string
		pod  func() *corev1.Pod
		want map[string]string // the pod's nodeSelector after admission
	}{
		{"build pod, configured platform", func() *corev1.Pod { return probePod("linux/arm64", true, nil) }, arch},
		{"build pod with another node label: merged", func() *corev1.Pod {
			p := probePod("linux/arm64", true, nil)
			p.Spec.NodeSelector = map[string]string{"disktype": "ssd"}
			return p
		}, map[string]string{"kubernetes.io/arch": "arm64", "disktype": "ssd"}},
		{"pinned by the run: left as it is", func() *corev1.Pod {
			p := probePod("linux/arm64", true, nil)
			p.Spec.NodeSelector = map[string]string{"kubernetes.io/arch": "amd64"}
			return p
		}, map[string]string{"kubernetes.io/arch": "amd64"}},
		{"ALLOW_EMULATION true: left to run anywhere", func() *corev1.Pod {
			return probePod("linux/arm64", true, map[string]string{"ALLOW_EMULATION": "true"})
		}, nil},
		{"platform not configured: its arch only", func() *corev1.Pod { return probePod("linux/s390x", true, nil) }, map[string]string{"kubernetes.io/arch": "s390x"}},
		{"malformed PLATFORM: left to the build's own check", func() *corev1.Pod { return probePod("arm64", true, nil) }, nil},
		{"not labelled as the build Task", func() *corev1.Pod { return probePod("linux/arm64", false, nil) }, nil},
		{"labelled, no step-build container", func() *corev1.Pod {
			p := probePod("linux/arm64", true, nil)
			p.Spec.Containers[0].Name = "step-clone"
			return p
		}, nil},
		{"another Task's pod", func() *corev1.Pod {
			p := probePod("linux/arm64", false, nil)
			p.Labels = map[string]string{pipeline.TaskLabelKey: tasks.ManifestName, tasks.BuildTaskLabel: tasks.ManifestName}
			return p
		}, nil},
	} {
		got, err := s.dryRunPod(context.Background(), c.ns(), tc.pod())
		if err != nil {
			t.Errorf("%s: dry-run create: %v", tc.name, err)
			continue
		}
		t.Logf("%s: nodeSelector %v, tolerations %d", tc.name, got.Spec.NodeSelector, len(got.Spec.Tolerations))
		if !mapsEqual(got.Spec.NodeSelector, tc.want) {
			t.Errorf("%s: nodeSelector after admission %v, want %v", tc.name, got.Spec.NodeSelector, tc.want)
		}
	}
}

// checkManifestUnpinned: the manifest pod of a run (not a build pod) has no
// arch selector: the policy touched only the builds.
func (r *prRun) checkManifestUnpinned(t testing.TB) {
	pods, err := r.s.kube.CoreV1().Pods(r.c.ns()).List(context.Background(), metav1.ListOptions{
		LabelSelector: pipeline.PipelineRunLabelKey + "=" + r.name + "," + pipeline.PipelineTaskLabelKey + "=manifest",
	})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("manifest pod of %s: %v (%d pods)", r.name, err, len(pods.Items))
	}
	p := pods.Items[0]
	// Every Task of the catalog labels its pods with its own name (the
	// user-namespace policy matches them all); the arch policy matches
	// only the build Task's value.
	if v := p.Labels[tasks.BuildTaskLabel]; v != tasks.ManifestName {
		t.Errorf("manifest pod %s: label %s=%q, want %q", p.Name, tasks.BuildTaskLabel, v, tasks.ManifestName)
	}
	if sel, ok := p.Spec.NodeSelector["kubernetes.io/arch"]; ok {
		t.Errorf("manifest pod %s got nodeSelector kubernetes.io/arch=%s", p.Name, sel)
	}
}

var tknStartedRE = regexp.MustCompile(`PipelineRun started: (\S+)`)

// tknStart runs the README's tkn command (catalog.TknStartCommand) with
// the real tkn v0.46.0, in the catalog's directory, and returns the run.
func (s *stack) tknStart(t testing.TB, c catalog) *prRun {
	t.Helper()
	return s.tkn(t, c, gencatalog.TknStartCommand(c.cfg))
}

// tkn runs a tkn pipeline start command line with the real tkn.
func (s *stack) tkn(t testing.TB, c catalog, command string) *prRun {
	t.Helper()
	args := strings.Fields(command)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append([]string{"--net=" + s.nsPath, "--", filepath.Join(s.bin, "tkn"), "--kubeconfig=" + s.pki.kubeconfig}, args[1:]...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.work}
	cmd.Stdin = strings.NewReader("") // a prompt would read EOF and fail, not hang
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("$ %s\n%s", strings.Join(args, " "), out.String())
	if err != nil {
		t.Fatalf("tkn pipeline start: %v", err)
	}
	m := tknStartedRE.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("tkn pipeline start: no PipelineRun name in its output")
	}
	r := &prRun{s: s, c: c, name: m[1]}
	pr, err := r.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Spec.TaskRunSpecs) != 0 {
		t.Fatalf("tkn made a run with taskRunSpecs %v: this test is about runs without", pr.Spec.TaskRunSpecs)
	}
	return r
}

// noNodePending: a build whose platform no node has stays Pending with the
// scheduler's reason, instead of running on another architecture.
func (s *stack) noNodePending(t testing.TB, c catalog) {
	ctx := context.Background()
	tr := fmt.Sprintf(`apiVersion: tekton.dev/v1
kind: TaskRun
metadata:
  generateName: build-s390x-
  namespace: %s
spec:
  taskRef:
    name: %s
  serviceAccountName: %s
  params:
    - {name: IMAGE, value: %s}
    - {name: TAG_SUFFIX, value: -s390x}
    - {name: PLATFORM, value: linux/s390x}
    - {name: GIT_URL, value: %s}
`, c.ns(), tasks.BuildName, c.cfg.Example.ServiceAccount, c.cfg.Example.Image, c.cfg.Example.GitURL)
	f := filepath.Join(t.TempDir(), "taskrun.yaml")
	write(t, f, []byte(tr))
	out, err := s.kubectl(t, c.dir, "create", "-f", f)
	if err != nil {
		t.Fatalf("kubectl create a linux/s390x build TaskRun: %v\n%s", err, out)
	}
	name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(out), "taskrun.tekton.dev/"), " created")
	t.Cleanup(func() {
		if err := s.tekton.TektonV1().TaskRuns(c.ns()).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete TaskRun %s: %v", name, err)
		}
	})
	s.waitFor(t, "the linux/s390x build pod to be found unschedulable", 60*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := s.kube.CoreV1().Pods(c.ns()).List(ctx, metav1.ListOptions{LabelSelector: pipeline.TaskRunLabelKey + "=" + name})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		p := &pods.Items[0]
		if p.Spec.NodeName != "" {
			return false, fmt.Errorf("the linux/s390x build pod was bound to %s", p.Spec.NodeName)
		}
		if got := p.Spec.NodeSelector["kubernetes.io/arch"]; got != "s390x" {
			return false, fmt.Errorf("pod %s nodeSelector %v, want kubernetes.io/arch=s390x", p.Name, p.Spec.NodeSelector)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				t.Logf("linux/s390x, no such node: pod %s Pending: %s", p.Name, cond.Message)
				if !strings.Contains(cond.Message, "didn't match Pod's node affinity/selector") {
					return false, errors.New("unschedulable, but not for its node selector: " + cond.Message)
				}
				return true, nil
			}
		}
		return false, fmt.Errorf("pod %s: %s", p.Name, podScheduledMessage(p))
	})
	// Tekton reports it on the TaskRun, where start --follow reads it.
	s.waitFor(t, "the TaskRun to say why it waits", 30*time.Second, func(ctx context.Context) (bool, error) {
		got, err := s.tekton.TektonV1().TaskRuns(c.ns()).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range got.Status.Conditions {
			if strings.Contains(cond.Message, "node affinity/selector") {
				t.Logf("TaskRun %s: %s: %s", name, cond.Reason, cond.Message)
				return true, nil
			}
		}
		return false, fmt.Errorf("TaskRun conditions %v", got.Status.Conditions)
	})
}
