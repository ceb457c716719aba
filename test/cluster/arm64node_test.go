package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// The arm64 node: Debian's arm64 kernel, containerd 1.6, runc 1.1 and a
// kubelet v1.35.4 built for arm64 (build-arm64-node.sh), in a machine
// qemu-system-aarch64 emulates in full (TCG), running inside the stack's
// network namespace. The machine's virtio NIC is a tap device on a bridge of
// its own there (arm64Bridge, arm64HostIP/24): the API server reaches the
// kubelet at arm64GuestIP:10250 (logs, exec), and the kubelet reaches the API
// server, which listens on 127.0.0.1 only, through a TCP relay the test runs
// on arm64HostIP:6443. The node's pods have a CNI bridge inside the guest
// (arm64PodCIDR); the namespace routes that subnet to the guest, so pods
// reach the services on the amd64 node's bridge (bridgeIP) with their own
// addresses, and nothing is masqueraded.
//
// The runtime is Debian's arm64 containerd 1.6.20 and runc 1.1.5, not the
// containerd v2 and runc 1.3 the amd64 node builds: measured, the kubelet
// v1.35.4 runs pods on them (CRI v1; containerd 1.6 lacks only the
// RuntimeConfig call, and the kubelet falls back to its cgroupDriver), and
// they apply what this node is for, AppArmor (containerd's default profile,
// loaded with the guest's apparmor_parser) and seccomp, at no build cost;
// v2 and runc would have to be cross-compiled (runc with cgo against arm64
// libseccomp). What Debian's pair cannot do is user-namespaced pods.
const (
	arm64NodeName   = "real-arm64"
	arm64Bridge     = "armbr0"
	arm64Tap        = "armtap0"
	arm64HostIP     = "10.89.0.1"
	arm64GuestIP    = "10.89.0.2"
	arm64PodCIDR    = "10.90.0.0/24"
	arm64PodGateway = "10.90.0.1"

	// envArm64Node names a directory as build-arm64-node.sh makes it
	// instead of asking the script; envArm64Images a directory of image
	// archives (and images.env) for the node instead of the script's own
	// starting set.
	envArm64Node   = "TEKTON_MULTIARCH_ARM64_NODE"
	envArm64Images = "TEKTON_MULTIARCH_ARM64_IMAGES"
)

// arm64NodeProvider boots the arm64 machine once and waits for its node.
type arm64NodeProvider struct {
	// images is a directory of OCI archives (*.tar, any platforms: each is
	// imported with --all-platforms) and an images.env naming at least
	// PAUSE_IMAGE; empty: envArm64Images, else the node directory's images/.
	images string
	// seccompDefault is the kubelet's seccompDefault.
	seccompDefault bool
	// seccompProfiles are copied into the node's /var/lib/kubelet/seccomp
	// (the Localhost profiles' directory).
	seccompProfiles []string
	node            *arm64Node
}

// arm64Node is the running machine.
type arm64Node struct {
	dir    string // build-arm64-node.sh's directory
	work   string
	images *realbuild.NodeImages
	qemu   *proc
	// ready is how long the node took from QEMU's start to Ready.
	ready time.Duration
	logs  map[string]string // containerd, kubelet: the guest's logs, as QEMU writes them
}

func (p *arm64NodeProvider) startNodes(t testing.TB, s *stack) { p.node = s.startArm64Node(t, p) }

// arm64NodeDir finds build-arm64-node.sh's directory for the current
// sources, failing (naming the command) when it is not built.
func arm64NodeDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(envArm64Node)
	if dir == "" {
		out, err := exec.Command("./build-arm64-node.sh", "--dir").Output()
		if err != nil {
			t.Fatalf("test/cluster/build-arm64-node.sh --dir: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, f := range []string{"Image", "initrd.gz", "rootfs.img", "images/images.env"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("the arm64 node is not built (%v): run test/cluster/build-arm64-node.sh", err)
		}
	}
	return dir
}

// startArm64Node boots the machine and waits until its kubelet reports the
// node Ready with kubernetes.io/arch=arm64 and /dev/fuse allocatable (the
// fuse device plugin runs in the machine). QEMU is stopped by PID, the tap,
// bridge and relay removed, in t's cleanup, also on failure.
func (s *stack) startArm64Node(t testing.TB, p *arm64NodeProvider) *arm64Node {
	t.Helper()
	for tool, pkg := range map[string]string{"qemu-system-aarch64": "qemu-system-arm", "mkfs.ext4": "e2fsprogs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the arm64 node needs %s: apt-get install -y --no-install-recommends %s", tool, pkg)
		}
	}
	n := &arm64Node{dir: arm64NodeDir(t), work: filepath.Join(s.work, "arm64-node"), logs: map[string]string{}}
	imagesDir := p.images
	if imagesDir == "" {
		imagesDir = os.Getenv(envArm64Images)
	}
	if imagesDir == "" {
		imagesDir = filepath.Join(n.dir, "images")
	}
	n.images = realbuild.ReadNodeImages(t, imagesDir)
	cfgDir := filepath.Join(n.work, "config")
	for _, d := range []string{"cni", "seccomp", "images"} {
		if err := os.MkdirAll(filepath.Join(cfgDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.arm64Network(t)
	s.arm64APIRelay(t)
	s.writeArm64Config(t, p, n, cfgDir)
	cfgImg := filepath.Join(n.work, "config.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-O", "^has_journal", "-L", "arm64config", "-d", cfgDir, cfgImg,
		fmt.Sprintf("%dM", dirMB(t, cfgDir)+64)).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 of the arm64 node's config disk: %v\n%s", err, out)
	}

	port := func(name string) []string {
		n.logs[name] = filepath.Join(s.logDir, "arm64-"+name+".log")
		return []string{"-chardev", fmt.Sprintf("file,id=%s,path=%s", name, n.logs[name]),
			"-device", fmt.Sprintf("virtserialport,bus=vs.0,chardev=%s,name=%s", name, name)}
	}
	argv := []string{"qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "2", "-m", "3072",
		"-accel", "tcg,thread=multi", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", filepath.Join(n.dir, "Image"), "-initrd", filepath.Join(n.dir, "initrd.gz"),
		"-append", "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4",
		// snapshot=on: the guest's writes go to a temporary file of QEMU's
		// (in TMPDIR, the node's work directory), never to the cached image.
		"-drive", "file=" + filepath.Join(n.dir, "rootfs.img") + ",if=none,format=raw,id=root,snapshot=on",
		"-device", "virtio-blk-pci,drive=root",
		"-drive", "file=" + cfgImg + ",if=none,format=raw,id=config,readonly=on",
		"-device", "virtio-blk-pci,drive=config",
		"-netdev", "tap,id=n0,ifname=" + arm64Tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:89:00:02,romfile=", // no option ROM: no PXE boot, and no ipxe-qemu package needed
		"-device", "virtio-rng-pci",
		"-device", "virtio-serial-pci,id=vs"}
	argv = append(argv, port("containerd")...)
	argv = append(argv, port("kubelet")...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"containerd", "kubelet"} {
				t.Logf("---- last lines of %s ----\n%s", n.logs[name], tail(n.logs[name], 40))
			}
		}
	})
	t0 := time.Now()
	n.qemu = s.start(t, "arm64-qemu", []string{"TMPDIR=" + n.work}, argv...)
	n.qemu.grace = 5 * time.Second
	s.waitFor(t, "node "+arm64NodeName+" Ready (arm64, emulated) with "+fuseResource, 15*time.Minute, func(ctx context.Context) (bool, error) {
		node, err := s.kube.CoreV1().Nodes().Get(ctx, arm64NodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if a := node.Labels["kubernetes.io/arch"]; a != "arm64" || node.Status.NodeInfo.Architecture != "arm64" {
			t.Fatalf("node %s registered with kubernetes.io/arch=%q, architecture %q: want arm64", arm64NodeName, a, node.Status.NodeInfo.Architecture)
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != corev1.ConditionTrue {
					return false, fmt.Errorf("node %s: Ready=%s: %s", arm64NodeName, c.Status, c.Message)
				}
				return nodeHasFuse(node), fmt.Errorf("node %s has no %s allocatable yet", arm64NodeName, fuseResource)
			}
		}
		return false, fmt.Errorf("node %s has no Ready condition yet", arm64NodeName)
	})
	n.ready = time.Since(t0)
	// The guest's own milestones, each with its uptime, from the console.
	var boot []string
	if b, err := os.ReadFile(n.qemu.log); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "init: ") || strings.HasPrefix(line, "node-init: ") {
				boot = append(boot, "  "+strings.TrimSpace(line))
			}
		}
	}
	t.Logf("arm64 node %s Ready %s after QEMU started; the guest's console:\n%s", arm64NodeName, n.ready.Round(100*time.Millisecond), strings.Join(boot, "\n"))
	return n
}

// arm64Network makes the machine's bridge and tap device in the stack's
// namespace and routes the node's pod subnet to it. They go with the
// namespace too; the cleanup removes them first, so a stack that lives on
// (a provider started in a subtest) keeps nothing of the node.
func (s *stack) arm64Network(t testing.TB) {
	t.Helper()
	ip := func(args ...string) error {
		out, err := exec.Command("ip", append([]string{"-n", s.nsName}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip -n %s %s: %v\n%s", s.nsName, strings.Join(args, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		// Deleting the bridge takes the route with it.
		for _, dev := range []string{arm64Tap, arm64Bridge} {
			if err := ip("link", "delete", dev); err != nil {
				t.Errorf("removing the arm64 node's %s: %v", dev, err)
			}
		}
	})
	for _, args := range [][]string{
		{"link", "add", arm64Bridge, "type", "bridge"},
		{"addr", "add", arm64HostIP + "/24", "dev", arm64Bridge},
		{"link", "set", arm64Bridge, "up"},
		{"tuntap", "add", "dev", arm64Tap, "mode", "tap"},
		{"link", "set", arm64Tap, "master", arm64Bridge},
		{"link", "set", arm64Tap, "up"},
		{"route", "add", arm64PodCIDR, "via", arm64GuestIP, "dev", arm64Bridge},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	// The amd64 node's bridge, where the node's services listen: made here
	// when that node is not part of the stack.
	if err := ip("link", "show", bridgeName); err != nil {
		s.bridge(t)
	}
}

// arm64APIRelay relays arm64HostIP:6443 to the API server on 127.0.0.1:6443
// inside the namespace: the kubelet in the machine cannot reach the
// namespace's loopback.
func (s *stack) arm64APIRelay(t testing.TB) {
	t.Helper()
	ln, err := netnsListen(s.nsPath, "tcp", net.JoinHostPort(arm64HostIP, "6443"))
	if err != nil {
		t.Fatalf("listening for the arm64 node's API server relay: %v", err)
	}
	dial := netnsDialer(s.nsPath)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := dial(context.Background(), "tcp", "127.0.0.1:6443")
			if err != nil {
				in.Close()
				continue
			}
			track(in, true)
			track(out, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				done := make(chan struct{}, 2)
				cp := func(dst, src net.Conn) { _, _ = io.Copy(dst, src); done <- struct{}{} }
				go cp(out, in)
				go cp(in, out)
				<-done
				in.Close()
				out.Close()
				<-done
				track(in, false)
				track(out, false)
			}()
		}
	}()
}
