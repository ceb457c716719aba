package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// runForPod stands in for the kubelet of a pod on a kwok node, where
// nothing runs: it runs script (the container's own) with the container's
// environment, as the pod's ServiceAccount (a TokenRequest token, so RBAC and
// admission policies are the API server's), then ends the container with
// the script's exit code (kwok's pod-finish stage) and returns its output and
// that exit code.
func (s *stack) runForPod(t testing.TB, pod *corev1.Pod, ctr *corev1.Container, script string) (string, int) {
	t.Helper()
	out, err := s.runAs(t, pod.Namespace, s.tokenKubeconfig(t, pod.Namespace, pod.Spec.ServiceAccountName), ctr, script)
	code := 0
	if err != nil {
		code = 1
		t.Errorf("pod %s, container %s: %v\n%s", pod.Name, ctr.Name, err, out)
	}
	t.Logf("pod %s, container %s:\n%s", pod.Name, ctr.Name, out)
	(&prRun{s: s}).finish(t, pod, map[string]stepOutcome{ctr.Name: {exitCode: code}})
	return out, code
}

// runAs runs script with container ctr's environment (of a pod in namespace
// ns) and kubeconfig (a ServiceAccount's, from tokenKubeconfig), returning
// its output.
func (s *stack) runAs(t testing.TB, ns, kubeconfig string, ctr *corev1.Container, script string) (string, error) {
	t.Helper()
	env := []string{
		"PATH=" + s.bin + ":" + os.Getenv("PATH"),
		"KUBECONFIG=" + kubeconfig,
		"HOME=" + t.TempDir(),
	}
	for _, e := range ctr.Env {
		switch {
		case e.Name == "HOME":
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+ns)
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		default:
			return "", fmt.Errorf("env %s: a source the test cannot stand in for", e.Name)
		}
	}
	cmd := exec.Command("nsenter", "--net="+s.nsPath, "--", "sh", "-c", script)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kubectlAs runs kubectl in namespace ns with kubeconfig (a ServiceAccount's,
// from tokenKubeconfig), returning its output.
func (s *stack) kubectlAs(kubeconfig, ns string, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + s.nsPath, "--", filepath.Join(s.bin, "kubectl"), "--kubeconfig=" + kubeconfig, "-n", ns}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
