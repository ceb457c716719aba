package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestArm64Node brings an emulated arm64 machine into the control plane as
// a real node (arm64node_test.go) and runs a pod on it by its architecture:
// its containers say what they run on (uname -m), under which AppArmor
// label and seccomp mode, and fetch a token from a service on the amd64
// node's bridge; the test reads what they printed with kubectl logs, which
// the API server takes from the kubelet in the machine. It has a control
// plane of its own: go test -run TestArm64Node ./test/cluster/.
func TestArm64Node(t *testing.T) {
	p := &arm64NodeProvider{
		seccompDefault:  true,
		seccompProfiles: []string{filepath.Join(repoRoot(t), "examples/cluster/seccomp/buildah.json")},
	}
	s := startStack(t, p)
	n := p.node

	// A service where the amd64 node's services listen (bridgeIP): a pod
	// that reaches it crossed the machine's pod bridge, its eth0 and the
	// namespace's route back.
	buf := make([]byte, 8)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(buf)
	ln, err := netnsListen(s.nsPath, "tcp", net.JoinHostPort(bridgeIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, token)
			c.Close()
		}
	}()
	svc := ln.Addr().(*net.TCPAddr)

	script := fmt.Sprintf(`echo "arch=$(uname -m)"
echo "apparmor=$(cat /proc/self/attr/current)"
echo "apparmor-enabled=$(cat /sys/module/apparmor/parameters/enabled)"
echo "seccomp=$(sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status)"
echo "service=$(nc %s %d </dev/null)"
`, svc.IP, svc.Port)
	image := n.images.Ref(t, "SHELL_IMAGE")
	ctr := func(name string, sc *corev1.SecurityContext) corev1.Container {
		return corev1.Container{Name: name, Image: image, ImagePullPolicy: corev1.PullNever,
			Command: []string{"/bin/sh", "-c", script}, SecurityContext: sc}
	}
	localhost := "buildah.json"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "arm64-probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{"kubernetes.io/arch": "arm64"},
			Tolerations: []corev1.Toleration{{
				Key: realNodeTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
			}},
			Containers: []corev1.Container{
				// No profile named: the kubelet's seccompDefault and the
				// runtime's default AppArmor profile.
				ctr("default", nil),
				ctr("unconfined", &corev1.SecurityContext{
					SeccompProfile:  &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
					AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
				}),
				// The catalog's profile from the kubelet's Localhost directory.
				ctr("localhost", &corev1.SecurityContext{
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &localhost},
				}),
			},
		},
	}
	t0 := time.Now()
	if _, err := s.kube.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	s.waitFor(t, "pod arm64-probe to finish", 10*time.Minute, func(ctx context.Context) (bool, error) {
		got, err = s.kube.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if got.Status.Phase == corev1.PodSucceeded || got.Status.Phase == corev1.PodFailed {
			return true, nil
		}
		return false, fmt.Errorf("pod %s: phase %s on %q", pod.Name, got.Status.Phase, got.Spec.NodeName)
	})
	t.Logf("pod %s ran on %s and ended %s in %s", pod.Name, got.Spec.NodeName, got.Status.Phase, time.Since(t0).Round(100*time.Millisecond))
	if got.Spec.NodeName != arm64NodeName {
		t.Errorf("pod ran on %q, want %s", got.Spec.NodeName, arm64NodeName)
	}

	want := map[string]map[string]string{
		"default":    {"apparmor": "cri-containerd.apparmor.d (enforce)", "seccomp": "2"},
		"unconfined": {"apparmor": "unconfined", "seccomp": "0"},
		"localhost":  {"apparmor": "cri-containerd.apparmor.d (enforce)", "seccomp": "2"},
	}
	for _, c := range pod.Spec.Containers {
		out, err := s.kubectl(t, "", "logs", "-n", "default", pod.Name, "-c", c.Name)
		if err != nil {
			t.Errorf("kubectl logs %s -c %s: %v\n%s", pod.Name, c.Name, err, out)
			continue
		}
		t.Logf("kubectl logs %s -c %s:\n%s", pod.Name, c.Name, out)
		fields := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				fields[k] = v
			}
		}
		w := map[string]string{"arch": "aarch64", "apparmor-enabled": "Y", "service": token}
		for k, v := range want[c.Name] {
			w[k] = v
		}
		for k, v := range w {
			if fields[k] != v {
				t.Errorf("container %s: %s=%q, want %q", c.Name, k, fields[k], v)
			}
		}
	}
	for _, cs := range got.Status.ContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			t.Errorf("container %s: %+v, want exit code 0", cs.Name, cs.State)
		}
	}
}
