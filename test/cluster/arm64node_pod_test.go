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
// a real node (arm64node_test.go), beside the real amd64 node, and runs a
// pod on each by its architecture alone: the arm64 pod's containers say
// what they run on (uname -m), under which AppArmor label and seccomp mode,
// and fetch a token from a service on the amd64 node's bridge; the test
// reads what they printed with kubectl logs, which the API server takes
// from the kubelet in the machine. It has a control plane of its own: go
// test -run TestArm64Node ./test/cluster/.
func TestArm64Node(t *testing.T) {
	p := &arm64NodeProvider{
		seccompDefault:  true,
		seccompProfiles: []string{filepath.Join(repoRoot(t), "examples/cluster/seccomp/buildah.json")},
	}
	// The amd64 node first: it makes the bridge its services listen on.
	s := startStack(t, &realNodeProvider{}, p)
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
echo "userns=$(unshare -U true 2>/dev/null && echo ok || echo refused)"
echo "fuse=$(test -c /dev/fuse && echo yes || echo no)"
`, svc.IP, svc.Port)
	ctr := func(image, name string, sc *corev1.SecurityContext) corev1.Container {
		return corev1.Container{Name: name, Image: image, ImagePullPolicy: corev1.PullNever,
			Command: []string{"/bin/sh", "-c", script}, SecurityContext: sc}
	}
	arm64 := n.images.Ref(t, "SHELL_IMAGE")
	withFuse := func(c corev1.Container) corev1.Container {
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceName(fuseResource): mustQuantity("1")}
		return c
	}
	localhost := "buildah.json"
	logs := s.runProbePod(t, "arm64-probe", "arm64",
		// No profile named: the kubelet's seccompDefault and the runtime's
		// default AppArmor profile. /dev/fuse through the device plugin,
		// as the catalog's build step gets it.
		withFuse(ctr(arm64, "default", nil)),
		ctr(arm64, "unconfined", &corev1.SecurityContext{
			SeccompProfile:  &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
			AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
		}),
		// The catalog's profile from the kubelet's Localhost directory.
		ctr(arm64, "localhost", &corev1.SecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &localhost},
		}))
	check := func(pod string, got map[string]map[string]string, want map[string]map[string]string) {
		for c, w := range want {
			for k, v := range w {
				if got[c][k] != v {
					t.Errorf("pod %s, container %s: %s=%q, want %q", pod, c, k, got[c][k], v)
				}
			}
		}
	}
	common := func(arch string, w map[string]string) map[string]string {
		w["arch"], w["service"] = arch, token
		return w
	}
	// The runtime's default seccomp profile refuses a user namespace to a
	// container without CAP_SYS_ADMIN; the catalog's profile (buildah's
	// builds need one) and no profile allow it: which filter is on.
	check("arm64-probe", logs, map[string]map[string]string{
		"default": common("aarch64", map[string]string{"apparmor": "cri-containerd.apparmor.d (enforce)", "apparmor-enabled": "Y",
			"seccomp": "2", "userns": "refused", "fuse": "yes"}),
		"unconfined": common("aarch64", map[string]string{"apparmor": "unconfined", "apparmor-enabled": "Y", "seccomp": "0",
			"userns": "ok", "fuse": "no"}),
		"localhost": common("aarch64", map[string]string{"apparmor": "cri-containerd.apparmor.d (enforce)", "apparmor-enabled": "Y",
			"seccomp": "2", "userns": "ok", "fuse": "no"}),
	})
	// The amd64 node's kubelet runs with seccompDefault off. Its AppArmor
	// is this machine's kernel's (here none: the container's cat fails on
	// both files), so not checked.
	amd64 := s.runProbePod(t, "amd64-probe", "amd64", ctr(s.images.Ref(t, "SHELL_IMAGE"), "default", nil))
	check("amd64-probe", amd64, map[string]map[string]string{"default": common("x86_64", map[string]string{
		"seccomp": "0", "fuse": "no"})})
}

// runProbePod runs a pod of containers on a node of arch (its taint
// tolerated) and returns each container's key=value lines, read with
// kubectl logs once the pod has ended; every container must exit 0.
func (s *stack) runProbePod(t *testing.T, name, arch string, containers ...corev1.Container) map[string]map[string]string {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{"kubernetes.io/arch": arch},
			Tolerations: []corev1.Toleration{{
				Key: realNodeTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
			}},
			Containers: containers,
		},
	}
	t0 := time.Now()
	if _, err := s.kube.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Errorf("creating pod %s: %v", name, err)
		return nil
	}
	var got *corev1.Pod
	var err error
	s.waitFor(t, "pod "+name+" to end", 10*time.Minute, func(ctx context.Context) (bool, error) {
		got, err = s.kube.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if got.Status.Phase == corev1.PodSucceeded || got.Status.Phase == corev1.PodFailed {
			return true, nil
		}
		return false, fmt.Errorf("pod %s: phase %s on %q", name, got.Status.Phase, got.Spec.NodeName)
	})
	t.Logf("pod %s ran on node %s and ended %s %s after its creation", name, got.Spec.NodeName, got.Status.Phase, time.Since(t0).Round(100*time.Millisecond))
	for _, cs := range got.Status.ContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			t.Errorf("pod %s, container %s: %+v, want exit code 0", name, cs.Name, cs.State)
		}
	}
	all := map[string]map[string]string{}
	for _, c := range containers {
		out, err := s.kubectl(t, "", "logs", "-n", "default", name, "-c", c.Name)
		if err != nil {
			t.Errorf("kubectl logs %s -c %s: %v\n%s", name, c.Name, err, out)
			continue
		}
		t.Logf("kubectl logs %s -c %s:\n%s", name, c.Name, out)
		fields := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				fields[k] = v
			}
		}
		all[c.Name] = fields
	}
	return all
}
