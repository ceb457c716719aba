package cluster

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// nodeProvider brings build nodes into the test's cluster. kwok's simulated
// nodes (kwok_test.go) and the real node below are the two kinds; each
// starts its processes with s.start, so they stop with the test (or subtest)
// that started them.
type nodeProvider interface {
	startNodes(t testing.TB, s *stack)
}

// The real node: a kubelet with containerd v2 and runc 1.3 (build-tools.sh
// builds both: Debian 12's containerd 1.6 and runc 1.1 cannot run
// user-namespaced pods), on a CNI
// bridge, all inside the stack's network namespace. Pods reach the node's
// services (registry, git daemon) at the bridge's address; the API server
// reaches the kubelet there too (logs, exec).
const (
	realNodeName = "real-amd64"
	bridgeName   = "cni0"
	bridgeCIDR   = "10.88.0.0/16"
	bridgeIP     = "10.88.0.1"
	// realNodeTaint keeps the kwok-driven runs, which tolerate nothing, off
	// the real node: only a run that asks for it (realNodePodTemplate)
	// lands there.
	realNodeTaintKey = "cluster-test.tekton-multiarch.dev/real-node"
	// kubeletRoot is the kubelet's default: the device plugin socket
	// directory and the Localhost seccomp directory are fixed below it, and
	// the catalog's profile loader installs into it.
	kubeletRoot = "/var/lib/kubelet"
	// debianRuncHandler is the node's second runtime handler, Debian's runc
	// 1.1.5, for a RuntimeClass without user-namespace support.
	debianRuncHandler = "debian-runc"
)

// realNode is one running real node.
type realNode struct {
	// owner is the test the node lives as long as: a kubelet restarted in a
	// subtest must not stop when the subtest ends.
	owner      testing.TB
	dir        string // containerd root and state, CNI config, kubelet files
	bin        string // the stack's binaries: containerd, ctr, runc, kubelet
	socket     string // containerd's CRI socket
	images     *realbuild.NodeImages
	kubelet    *proc
	starts     int // kubelet starts so far
	containerd *proc
	// containerdStarts counts containerd's starts (a lost node's comes back).
	containerdStarts int
	kubeletCfg       string
	// seccompDefault is the running kubelet's seccompDefault.
	seccompDefault bool
	cri            *criClient
}

// envImages names a directory of images (as build-images.sh makes them)
// instead of asking build-images.sh where the current ones are.
const envImages = "TEKTON_MULTIARCH_NODE_IMAGES"

// loadNodeImages finds the images build-images.sh made for the current
// sources, failing (naming the command) when they are not built.
func loadNodeImages(t testing.TB) *realbuild.NodeImages {
	t.Helper()
	dir := os.Getenv(envImages)
	if dir == "" {
		out, err := exec.Command("./build-images.sh", "--dir").Output()
		if err != nil {
			t.Fatalf("test/cluster/build-images.sh --dir: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	return realbuild.ReadNodeImages(t, dir)
}

// realNodeProvider starts one real node; node is set once it is Ready.
type realNodeProvider struct {
	node *realNode
}

func (p *realNodeProvider) startNodes(t testing.TB, s *stack) { p.node = s.startRealNode(t, s.images) }

// requireRealNodeHost fails, naming the package, when something the real
// node needs is missing, and refuses to run beside a kubelet that is already
// using this machine's kubelet directory.
func requireRealNodeHost(t testing.TB) {
	t.Helper()
	var missing []string
	for _, tool := range []struct{ path, pkg string }{
		{"/usr/sbin/runc", "runc"}, {"/usr/lib/cni/bridge", "containernetworking-plugins"},
		{"/usr/lib/cni/host-local", "containernetworking-plugins"}, {"/usr/lib/cni/loopback", "containernetworking-plugins"},
	} {
		if _, err := os.Stat(tool.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install -y %s)", tool.path, tool.pkg))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the real node needs: %s", strings.Join(missing, ", "))
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("the real node hands out /dev/fuse: %v", err)
	}
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, f := range comms {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == "kubelet" {
			t.Fatalf("a kubelet runs on this machine (pid %s): the real node needs %s to itself", filepath.Base(filepath.Dir(f)), kubeletRoot)
		}
	}
}

// realNodeLock serialises the real node between test processes on this
// machine (TestRealNode, the benchmarks, a second checkout's run): the node
// needs the kubelet's directory to itself, and reapLeftovers would take
// another live run's pods for a killed run's.
const realNodeLock = "/run/tekton-multiarch-real-node.lock"

// lockRealNode waits for the machine's real node lock and holds it until t's
// cleanup. The kernel drops it if the process dies.
func lockRealNode(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(realNodeLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("opening the real node lock: %v", err)
	}
	// One err for both attempts: a failed wait must not pass as the lock.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		t.Logf("another test process has the real node (%s): waiting for it", realNodeLock)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		f.Close()
		t.Fatalf("locking %s: %v", realNodeLock, err)
	}
	t.Cleanup(func() { f.Close() })
}

// startRealNode brings up containerd, the kubelet and the fuse device
// plugin, and waits until the node is Ready with /dev/fuse allocatable.
// Everything is undone in t's cleanup, also on failure: pod sandboxes
// removed through CRI (which stops the shims and tears down the pod
// networks), processes stopped by PID, mounts below the node's directories
// detached, its cgroups removed, the kernel settings the kubelet changes put
// back.
func (s *stack) startRealNode(t testing.TB, images *realbuild.NodeImages) *realNode {
	t.Helper()
	lockRealNode(t)
	requireRealNodeHost(t)
	n := &realNode{owner: t, dir: filepath.Join(s.work, "node"), bin: s.bin, images: images}
	n.socket = filepath.Join(n.dir, "containerd.sock")
	for _, d := range []string{"root", "state", "cni/net.d", "cni/ipam", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// runc sets up a user-namespaced container's rootfs, under containerd's
	// state directory, from inside the pod's user namespace, whose root is
	// nobody to the work directory (os.MkdirTemp's 0700): every such sandbox
	// failed with "remount-private dst=<state>/.../rootfs, flags=MS_PRIVATE:
	// permission denied". Others may pass through, as through /run.
	if err := os.Chmod(s.work, 0o711); err != nil {
		t.Fatal(err)
	}
	reapLeftovers(t)
	kubeletExisted := exists(kubeletRoot)
	sysctls := saveSysctls(t)
	t.Cleanup(func() {
		// Runs last: after every process of the node has stopped.
		for _, d := range []string{kubeletRoot, n.dir} {
			if err := realbuild.UnmountUnder(d); err != nil {
				t.Errorf("unmounting under %s: %v", d, err)
			}
		}
		// The kubelet bind-mounts its root directory onto itself to make it
		// a shared mount.
		if err := syscall.Unmount(kubeletRoot, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("unmounting %s: %v", kubeletRoot, err)
		}
		// The pods' directories are this test's either way.
		gone := filepath.Join(kubeletRoot, "pods")
		if !kubeletExisted {
			gone = kubeletRoot
		}
		if err := os.RemoveAll(gone); err != nil {
			t.Errorf("removing %s: %v", gone, err)
		}
		removePodLogLinks(t, filepath.Join(n.dir, "pod-logs"))
		removeCgroups(t, "kubepods")
		sysctls.restore(t)
	})

	s.bridge(t)
	s.writeContainerdConfig(t, n)
	s.startContainerd(n)
	n.cri = dialCRI(t, n.socket)
	// Registered after containerd's stop, so it runs before it: the
	// kubelet (started below, stopped earlier still) must not recreate
	// what this removes.
	t.Cleanup(func() { n.cri.removeAllSandboxes(t) })
	n.importImages(t)

	n.kubeletCfg = filepath.Join(n.dir, "kubelet.yaml")
	s.writeKubeletConfig(t, n, false)
	s.writeNodeKubeconfig(t, n)
	n.kubelet = s.startKubelet(n)
	s.start(t, "fuse-device-plugin", nil, filepath.Join(s.bin, "fuse-device-plugin"),
		"-resource="+fuseResource, "-count=100")
	s.waitRealNodeReady(t)
	return n
}

// bridge creates the pods' bridge with its address before the first pod
// does, so the node's services can listen on it from the start; the CNI
// bridge plugin takes an existing bridge as it is.
func (s *stack) bridge(t testing.TB) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", bridgeIP + "/16", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", s.nsName}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", s.nsName, strings.Join(args, " "), err, out)
		}
	}
}

// writeContainerdConfig writes containerd's own configuration: everything
// under the node's directory, the test's sandbox image, two runtimes: runc
// (>= 1.2, built by build-tools.sh; the default) and debianRuncHandler
// (Debian's runc 1.1, which has no idmapped mounts: containerd reports that
// handler without user-namespace support), and Debian's CNI plugins.
func (s *stack) writeContainerdConfig(t testing.TB, n *realNode) {
	t.Helper()
	cfg := realbuild.ContainerdConfig(n.dir, n.socket) + fmt.Sprintf(`
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%s]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%s.options]
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, n.images.Ref(t, "PAUSE_IMAGE"), filepath.Join(s.bin, "runc"), debianRuncHandler, debianRuncHandler, filepath.Join(n.dir, "cni/net.d"))
	write(t, filepath.Join(n.dir, "containerd.toml"), []byte(cfg))
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "tekton-multiarch-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridgeName, filepath.Join(n.dir, "cni/ipam"), bridgeCIDR, bridgeIP)
	if err := os.WriteFile(filepath.Join(n.dir, "cni/net.d/10-tekton-multiarch.conflist"), []byte(cni), 0o644); err != nil {
		t.Fatal(err)
	}
}

// importImages loads every image archive into containerd's k8s.io
// namespace, where the kubelet finds them: nothing is ever pulled. Each
// archive holds one reference, an OCI image index of linux/amd64 and
// linux/arm64 (the one reference both architectures' nodes run): ctr
// imports it under that reference, the index as its target, and unpacks the
// node's own platform, as a pull of a multi-arch reference does. The check
// below fails the test if an image's reference is not the index
// build-images.sh recorded.
func (n *realNode) importImages(t testing.TB) {
	t.Helper()
	archives, err := filepath.Glob(filepath.Join(n.images.Dir, "*.tar"))
	if err != nil || len(archives) == 0 {
		t.Fatalf("no image archives in %s (%v): run test/cluster/build-images.sh", n.images.Dir, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range archives {
		for {
			out, err := exec.Command(filepath.Join(n.bin, "ctr"), "--address", n.socket, "-n", "k8s.io", "images", "import", a).CombinedOutput()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ctr images import %s: %v\n%s", a, err, out)
			}
			time.Sleep(250 * time.Millisecond) // containerd still starting
		}
	}
	// A kubelet that pulled an image reports the container's imageID as
	// repo@sha256:<manifest digest>; for an image imported by tag alone,
	// containerd's CRI reports the bare image ID (sha256:...), and Tekton
	// Chains' SLSA provenance refuses that step's material ("expected imageID
	// sha256:... to be separable by @") and attests nothing. So each imported
	// image also gets the digest reference a pull would have given it.
	ctr := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(n.bin, "ctr"), append([]string{"--address", n.socket, "-n", "k8s.io", "images"}, args...)...).CombinedOutput()
		return string(out), err
	}
	list, err := ctr("ls")
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, list)
	}
	imported := map[string]string{} // ref -> its target's digest
	for _, line := range strings.Split(list, "\n")[1:] {
		f := strings.Fields(line)
		// Not the image-ID names (sha256:...) containerd's CRI adds.
		if len(f) < 3 || !strings.Contains(f[0], "/") || strings.Contains(f[0], "@") || !strings.HasPrefix(f[2], "sha256:") {
			continue
		}
		imported[f[0]] = f[2]
		repo := f[0]
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		if out, err := ctr("tag", "--local", "--force", f[0], repo+"@"+f[2]); err != nil {
			t.Fatalf("ctr images tag %s %s@%s: %v\n%s", f[0], repo, f[2], err, out)
		}
	}
	// By reference: NODE_PROFILE_LOADER_IMAGE is SHELL_IMAGE's.
	index := map[string]string{}
	for _, name := range n.images.Images() {
		if d := n.images.Digest(name, ""); d != "" {
			index[n.images.Ref(t, name)] = d
		}
	}
	for _, name := range n.images.Images() {
		ref := n.images.Ref(t, name)
		want, ok := index[ref]
		if !ok {
			t.Fatalf("%s/images.env has no digest of %s (%s): rebuild the images (test/cluster/build-images.sh)", n.images.Dir, name, ref)
		}
		if got := imported[ref]; got != want {
			t.Fatalf("containerd has %s (%s) as %q, want its index %s:\n%s", ref, name, got, want, list)
		}
	}
}

// writeKubeletConfig writes the kubelet's configuration; seccompDefault is
// what hardened clusters turn on: RuntimeDefault for every container that
// names no profile.
func (s *stack) writeKubeletConfig(t testing.TB, n *realNode, seccompDefault bool) {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# Only the API server, inside the test's network namespace, can reach this
# port: the API server's log and exec requests (tkn pipelinerun logs) come
# here without client certificates.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
# This machine has cgroup v1 and no systemd as PID 1.
failCgroupV1: false
failSwapOn: false
podLogsDir: %s
seccompDefault: %t
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Evict nothing: a busy CI disk must not turn into a failed build.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
  nodefs.inodesFree: "0%%"
resolvConf: ""
`, bridgeIP, n.socket, filepath.Join(n.dir, "pod-logs"), seccompDefault)
	write(t, n.kubeletCfg, []byte(cfg))
	n.seccompDefault = seccompDefault
}

// writeNodeKubeconfig gives the kubelet the credentials of a node
// (system:node:<name> in system:nodes), which the API server's Node
// authorizer limits to its own node and pods, as on a real cluster.
func (s *stack) writeNodeKubeconfig(t testing.TB, n *realNode) {
	t.Helper()
	crt, key := s.pki.sign(20, pkix.Name{CommonName: "system:node:" + realNodeName, Organization: []string{"system:nodes"}},
		x509.ExtKeyUsageClientAuth, nil, nil)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster-test"] = &clientcmdapi.Cluster{Server: apiServer, CertificateAuthorityData: s.pki.caPEM}
	kc.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	kc.Contexts["node"] = &clientcmdapi.Context{Cluster: "cluster-test", AuthInfo: "node"}
	kc.CurrentContext = "node"
	if err := clientcmd.WriteToFile(*kc, filepath.Join(n.dir, "kubelet.kubeconfig")); err != nil {
		t.Fatal(err)
	}
}

// startContainerd starts the node's containerd; each start logs to a file
// of its own (containerd.log, containerd-2.log, ...).
func (s *stack) startContainerd(n *realNode) {
	n.containerdStarts++
	name := "containerd"
	if n.containerdStarts > 1 {
		name = fmt.Sprintf("containerd-%d", n.containerdStarts)
	}
	// containerd finds its shim, containerd-shim-runc-v2, on its PATH.
	n.containerd = s.start(n.owner, name, []string{"PATH=" + s.bin + ":" + os.Getenv("PATH")},
		filepath.Join(s.bin, "containerd"), "--config", filepath.Join(n.dir, "containerd.toml"))
}

// startKubelet starts the node's kubelet; each start logs to a file of its
// own (kubelet.log, kubelet-2.log, ...).
func (s *stack) startKubelet(n *realNode) *proc {
	n.starts++
	name := "kubelet"
	if n.starts > 1 {
		name = fmt.Sprintf("kubelet-%d", n.starts)
	}
	return s.start(n.owner, name, nil, filepath.Join(s.bin, "kubelet"),
		"--config="+n.kubeletCfg,
		"--kubeconfig="+filepath.Join(n.dir, "kubelet.kubeconfig"),
		"--root-dir="+kubeletRoot,
		"--hostname-override="+realNodeName,
		"--node-ip="+bridgeIP,
		"--node-labels=type=real",
		"--register-with-taints="+realNodeTaintKey+"=true:NoSchedule",
		"--v=2")
}

// restartKubelet stops the kubelet and starts it again with seccompDefault
// as given; pods already finished stay as they are.
func (s *stack) restartKubelet(t testing.TB, n *realNode, seccompDefault bool) {
	t.Helper()
	s.stopNow(t, n.kubelet)
	s.writeKubeletConfig(t, n, seccompDefault)
	since := time.Now()
	n.kubelet = s.startKubelet(n)
	s.waitKubeletBack(t, since)
}

// waitKubeletBack waits for a kubelet started at since to report the node
// Ready: a Ready condition from before says nothing.
func (s *stack) waitKubeletBack(t testing.TB, since time.Time) {
	t.Helper()
	s.waitFor(t, "node "+realNodeName+" Ready after the kubelet restart", 90*time.Second, func(ctx context.Context) (bool, error) {
		node, err := s.kube.CoreV1().Nodes().Get(ctx, realNodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && c.LastHeartbeatTime.After(since) {
				return nodeHasFuse(node), fmt.Errorf("node %s has no %s allocatable yet", realNodeName, fuseResource)
			}
		}
		return false, fmt.Errorf("node %s not Ready since the restart", realNodeName)
	})
}

func nodeHasFuse(node *corev1.Node) bool {
	q, ok := node.Status.Allocatable[corev1.ResourceName(fuseResource)]
	return ok && !q.IsZero()
}

func (s *stack) waitRealNodeReady(t testing.TB) {
	t.Helper()
	s.waitFor(t, "node "+realNodeName+" Ready with "+fuseResource, 120*time.Second, func(ctx context.Context) (bool, error) {
		node, err := s.kube.CoreV1().Nodes().Get(ctx, realNodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != corev1.ConditionTrue {
					return false, fmt.Errorf("node %s: Ready=%s: %s", realNodeName, c.Status, c.Message)
				}
				return nodeHasFuse(node), fmt.Errorf("node %s has no %s allocatable yet", realNodeName, fuseResource)
			}
		}
		return false, fmt.Errorf("node %s has no Ready condition yet", realNodeName)
	})
}

// realNodePodTemplate puts every pod of a run on the real node: the amd64
// and the arm64 build (under emulation) and the manifest.
func realNodePodTemplate() *pod.PodTemplate {
	return &pod.PodTemplate{
		NodeSelector: map[string]string{"kubernetes.io/hostname": realNodeName},
		Tolerations: []corev1.Toleration{{
			Key: realNodeTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
		}},
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// sysctlSnapshot holds the kernel settings the kubelet sets at start
// (vm.overcommit_memory, kernel.panic, ...), to put them back.
type sysctlSnapshot map[string]string

var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

func saveSysctls(t testing.TB) sysctlSnapshot {
	t.Helper()
	snap := sysctlSnapshot{}
	for _, k := range kubeletSysctls {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			t.Fatal(err)
		}
		snap[k] = strings.TrimSpace(string(b))
	}
	return snap
}

func (snap sysctlSnapshot) restore(t testing.TB) {
	for k, v := range snap {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			t.Errorf("restoring %s=%s: %v", k, v, err)
		}
	}
}

// reapLeftovers undoes what a real node of an earlier run left behind when
// its test binary was killed before its cleanup could run (a go test
// -timeout panic): container runtime shims survive their containerd by
// design, and with them the containers, their mounts and pod network
// namespaces. It kills the processes of the kubelet's pod cgroups and the
// shims of a test containerd, detaches the mounts under the kubelet's
// directory, and deletes pod network namespaces no process is in.
func reapLeftovers(t testing.TB) {
	t.Helper()
	var reaped []string
	// Every process of a pod is in the pids hierarchy's kubepods tree.
	_ = filepath.WalkDir("/sys/fs/cgroup/pids/kubepods", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, pid := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(pid); err == nil && syscall.Kill(n, syscall.SIGKILL) == nil {
				reaped = append(reaped, "pid "+pid)
			}
		}
		return nil
	})
	shims, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range shims {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && strings.Contains(string(b), "/tekton-multiarch-cluster-") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				reaped = append(reaped, fmt.Sprintf("shim %d", pid))
			}
		}
	}
	if len(reaped) > 0 {
		time.Sleep(time.Second) // let the kernel take the killed processes' mounts down
	}
	if exists(kubeletRoot) {
		if err := realbuild.UnmountUnder(kubeletRoot); err != nil {
			t.Errorf("unmounting under %s: %v", kubeletRoot, err)
		}
		if syscall.Unmount(kubeletRoot, syscall.MNT_DETACH) == nil {
			reaped = append(reaped, "mount "+kubeletRoot)
		}
	}
	works, _ := filepath.Glob(filepath.Join(os.TempDir(), "tekton-multiarch-cluster-*", "node"))
	for _, d := range works {
		if err := realbuild.UnmountUnder(d); err != nil {
			t.Errorf("unmounting under %s: %v", d, err)
		}
	}
	netns, _ := filepath.Glob("/var/run/netns/cni-*")
	for _, ns := range netns {
		name := filepath.Base(ns)
		if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil && len(strings.TrimSpace(string(out))) == 0 {
			if exec.Command("ip", "netns", "delete", name).Run() == nil {
				reaped = append(reaped, "netns "+name)
			}
		}
	}
	// No kubelet runs (requireRealNodeHost): pods in its directory are a
	// killed run's.
	if entries, _ := os.ReadDir(filepath.Join(kubeletRoot, "pods")); len(entries) > 0 {
		if err := os.RemoveAll(filepath.Join(kubeletRoot, "pods")); err != nil {
			t.Errorf("removing %s/pods: %v", kubeletRoot, err)
		}
		reaped = append(reaped, fmt.Sprintf("%d pod directories", len(entries)))
	}
	removeCgroups(t, "kubepods")
	if len(reaped) > 0 {
		t.Logf("reaped what an earlier, killed run left behind: %s", strings.Join(reaped, ", "))
	}
}

// removePodLogLinks removes the links the kubelet made in
// /var/log/containers (a fixed directory) to logs under podLogs.
func removePodLogLinks(t testing.TB, podLogs string) {
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		p := filepath.Join("/var/log/containers", e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, podLogs) {
			if err := os.Remove(p); err != nil {
				t.Errorf("removing %s: %v", p, err)
			}
		}
	}
}

// removeCgroups removes the cgroup tree name (the kubelet's kubepods) from
// every cgroup v1 hierarchy, deepest first; the processes in it are gone by
// then.
func removeCgroups(t testing.TB, name string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range append(hierarchies, "/sys/fs/cgroup/unified") {
		root := filepath.Join(h, name)
		if !exists(root) {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				t.Errorf("removing cgroup %s: %v", dirs[i], err)
			}
		}
	}
}

// listenAddr is host:port on the node's bridge address, where pods reach
// the test's registry and git daemon.
func listenAddr(port int) string { return net.JoinHostPort(bridgeIP, fmt.Sprint(port)) }
