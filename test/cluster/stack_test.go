package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tekton "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

const (
	// envBin names a directory holding the binaries, instead of asking
	// build-tools.sh where the cache for the current wrapper modules is.
	envBin = "TEKTON_MULTIARCH_CLUSTER_BIN"
	// envSkipCold=1 turns "binaries not built" from a failure into a skip.
	envSkipCold = "TEKTON_MULTIARCH_SKIP_COLD_CLUSTER"
	// envKeep=1 keeps the work directory (logs, etcd data, kubeconfig) even
	// when the test passes.
	envKeep = "TEKTON_MULTIARCH_CLUSTER_KEEP"

	apiServer = "https://127.0.0.1:6443"
)

var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet",
	"fuse-device-plugin", "controller", "resolvers", "kwok", "triggers-controller", "triggers-eventlistenersink", "triggers-interceptors", "tkn"}

// stack is one running control plane. Every process runs inside the
// network namespace ns; the test reaches them through dialers that open
// their sockets inside it.
type stack struct {
	bin    string
	repo   string
	work   string
	logDir string
	nsName string
	nsPath string
	pki    *pki
	kube   kubernetes.Interface
	tekton tekton.Interface
	cfg    *rest.Config // the admin's, inside the namespace
	procs  []*proc
	images *realbuild.NodeImages // the real node's images, Tekton's among them
	// tektonController is the running Tekton controller (faults restart it).
	tektonController *proc
	// owner is the test the stack lives as long as: a component restarted
	// in a subtest must not stop when the subtest ends.
	owner testing.TB
}

// binDir finds the built binaries, failing (or skipping, only when asked
// to and the cache is cold) when any is missing.
func binDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(envBin)
	explicit := dir != ""
	if !explicit {
		cmd := exec.Command("./build-tools.sh", "--dir")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("test/cluster/build-tools.sh --dir: %v\n%s", err, stderr.String())
		}
		dir = strings.TrimSpace(string(out))
	}
	var missing []string
	for _, b := range binaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return dir
	}
	if !explicit && os.Getenv(envSkipCold) == "1" {
		t.Skipf("\n"+
			"##################################################################\n"+
			"## SKIPPED: the cluster end-to-end test did NOT run.\n"+
			"## %s=1 and the cluster binaries are not built\n"+
			"## (%s: missing %s).\n"+
			"## Build them with test/cluster/build-tools.sh (about 10 min cold).\n"+
			"##################################################################",
			envSkipCold, dir, strings.Join(missing, ", "))
	}
	t.Fatalf("cluster binaries missing in %s: %s.\nBuild them with test/cluster/build-tools.sh "+
		"(about 10 min on 2 cores with a cold Go build cache; make e2e-cluster does it), "+
		"or set %s=1 to skip this test while they are not built.", dir, strings.Join(missing, ", "), envSkipCold)
	return ""
}

func requireHost(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the cluster test must run as root: it creates a network namespace")
	}
	for tool, pkg := range map[string]string{"ip": "iproute2", "nsenter": "util-linux"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install -y %s", tool, pkg)
		}
	}
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not at %s: %v", root, err)
	}
	return root
}

// startStack brings up etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and the Tekton controller (with Tekton's config/ applied),
// then each provider's nodes, and registers their shutdown.
func startStack(t testing.TB, nodes ...nodeProvider) *stack {
	t.Helper()
	return startStackWith(t, stackOptions{}, nodes...)
}

// stackOptions are what a test may change of the control plane.
type stackOptions struct {
	// allowPrivileged starts kube-apiserver with --allow-privileged=true,
	// for BenchmarkPhases' privileged reference build only: every other
	// test's API server refuses privileged containers, as the catalog
	// never asks for one.
	allowPrivileged bool
}

func startStackWith(t testing.TB, opts stackOptions, nodes ...nodeProvider) *stack {
	t.Helper()
	bin := binDir(t)
	requireHost(t)
	s := &stack{bin: bin, repo: repoRoot(t), images: loadNodeImages(t), owner: t}

	work, err := os.MkdirTemp("", "tekton-multiarch-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	s.work = work
	// Registered first so it runs last, after every process has stopped.
	t.Cleanup(func() {
		if t.Failed() || os.Getenv(envKeep) == "1" {
			t.Logf("kept the work directory (logs in %s)", s.logDir)
			return
		}
		_ = os.RemoveAll(work)
	})
	s.logDir = filepath.Join(work, "logs")
	for _, d := range []string{s.logDir, filepath.Join(work, "pki")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	s.createNetns(t)
	s.pki = newPKI(t, filepath.Join(work, "pki"), apiServer)

	t0 := time.Now()
	s.start(t, "etcd", nil, filepath.Join(bin, "etcd"),
		"--name=cluster-test",
		"--data-dir="+filepath.Join(work, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=cluster-test=http://127.0.0.1:2380",
		"--listen-metrics-urls=http://127.0.0.1:2381",
		// Throwaway data: fsync only slows the test down.
		"--unsafe-no-fsync")

	s.start(t, "kube-apiserver", nil, filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=6443",
		"--tls-cert-file="+s.pki.serverCert,
		"--tls-private-key-file="+s.pki.serverKey,
		"--client-ca-file="+s.pki.caFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+s.pki.saPub,
		"--service-account-signing-key-file="+s.pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		// A loopback address cannot be an Endpoints address: without this the
		// server keeps failing to publish itself as the kubernetes Service.
		"--endpoint-reconciler-type=none",
		// The real node's name resolves nowhere: reach its kubelet (logs,
		// exec) by its address.
		"--kubelet-preferred-address-types=InternalIP",
		// examples/cluster/arch-pinning.yaml: MutatingAdmissionPolicy is
		// beta in 1.34 and 1.35, off unless asked for.
		"--feature-gates=MutatingAdmissionPolicy=true",
		"--runtime-config=admissionregistration.k8s.io/v1beta1=true",
		"--profiling=false",
		fmt.Sprintf("--allow-privileged=%t", opts.allowPrivileged))

	cfg := &rest.Config{
		Host: apiServer,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   s.pki.caPEM,
			CertData: s.pki.adminCertPEM,
			KeyData:  s.pki.adminKeyPEM,
		},
		Dial:  netnsDialer(s.nsPath),
		QPS:   50,
		Burst: 100,
	}
	s.cfg = cfg
	s.kube = kubernetes.NewForConfigOrDie(cfg)
	s.tekton = tekton.NewForConfigOrDie(cfg)
	s.waitFor(t, "kube-apiserver /readyz", 90*time.Second, func(ctx context.Context) (bool, error) {
		_, err := s.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, err
	})
	t.Logf("etcd and kube-apiserver ready in %s", time.Since(t0).Round(time.Millisecond))

	s.start(t, "kube-controller-manager", nil, filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+s.pki.kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=10257",
		"--leader-elect=false",
		"--service-account-private-key-file="+s.pki.saKey,
		"--root-ca-file="+s.pki.caFile,
		"--use-service-account-credentials=false")
	s.start(t, "kube-scheduler", nil, filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+s.pki.kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=10259",
		"--leader-elect=false")

	s.installTekton(t)
	for _, n := range nodes {
		n.startNodes(t, s)
	}

	// The controller-manager's ServiceAccount controller is what makes
	// namespaces usable for pods; wait for its first result.
	s.waitFor(t, "the default ServiceAccount (kube-controller-manager)", 60*time.Second, func(ctx context.Context) (bool, error) {
		_, err := s.kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	t.Logf("control plane up in %s", time.Since(t0).Round(time.Millisecond))
	return s
}

// applyFiles runs kubectl apply on files, server-side when asked (CRDs too
// large for client-side apply's last-applied annotation), failing the test
// with kubectl's output.
func (s *stack) applyFiles(t testing.TB, serverSide bool, files ...string) {
	t.Helper()
	args := []string{"apply"}
	if serverSide {
		args = append(args, "--server-side")
	}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	if out, err := s.kubectl(t, "", args...); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// globAll is filepath.Glob in dir that must match something.
func globAll(t testing.TB, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	return m
}

// installTekton applies Tekton's own config/ from the module cache, in the
// order its release does, without the admission webhook (it would need a
// Service endpoint, and loopback endpoints are refused), then starts the
// controller out of cluster.
func (s *stack) installTekton(t testing.TB) {
	t.Helper()
	cfgDir := tektonConfigDir(t)
	apply := func(serverSide bool, files ...string) { s.applyFiles(t, serverSide, files...) }
	glob := func(pattern string) []string { return globAll(t, cfgDir, pattern) }
	apply(false, filepath.Join(cfgDir, "100-namespace"))
	// The CRDs are too large for client-side apply's last-applied annotation.
	apply(true, filepath.Join(cfgDir, "300-crds"))
	apply(false, append(glob("200-*.yaml"), glob("201-*.yaml")...)...)
	apply(false, glob("config-*.yaml")...)
	if out, err := s.kubectl(t, "", "wait", "--for=condition=established", "--timeout=60s",
		"crd/tasks.tekton.dev", "crd/pipelines.tekton.dev", "crd/taskruns.tekton.dev", "crd/pipelineruns.tekton.dev"); err != nil {
		t.Fatalf("Tekton CRDs not established: %v\n%s", err, out)
	}

	s.tektonController = s.startTektonController("tekton-controller")
}

// startTektonController starts Tekton's controller (again, after a restart,
// under another log name), for as long as the stack lives.
func (s *stack) startTektonController(name string) *proc {
	t := s.owner
	// Tekton's own images, made here (build-images.sh) and imported into the
	// real node's containerd; on kwok nodes the names only end up in pod
	// specs.
	im := s.images
	return s.start(t, name, []string{
		"SYSTEM_NAMESPACE=tekton-pipelines",
		"KUBERNETES_MIN_VERSION=v1.28.0",
		"METRICS_DOMAIN=tekton.dev/pipeline",
		"METRICS_PROMETHEUS_HOST=127.0.0.1",
		"CONFIG_LEADERELECTION_NAME=config-leader-election-controller",
		"CONFIG_LOGGING_NAME=config-logging",
		"CONFIG_OBSERVABILITY_NAME=config-observability",
		"CONFIG_FEATURE_FLAGS_NAME=feature-flags",
		"CONFIG_DEFAULTS_NAME=config-defaults",
	}, filepath.Join(s.bin, "controller"),
		"-kubeconfig="+s.pki.kubeconfig,
		"-disable-ha",
		"-entrypoint-image="+im.Ref(t, "ENTRYPOINT_IMAGE"),
		"-nop-image="+im.Ref(t, "NOP_IMAGE"),
		"-sidecarlogresults-image="+im.Ref(t, "SIDECARLOGRESULTS_IMAGE"),
		"-workingdirinit-image="+im.Ref(t, "WORKINGDIRINIT_IMAGE"),
		"-shell-image="+im.Ref(t, "SHELL_IMAGE"),
		// No Windows node: the name only ends up in Windows pods' specs.
		"-shell-image-win=registry.invalid/tekton-cluster-test/shell-win")
}

// tektonConfigDir is github.com/tektoncd/pipeline's directory in the module
// cache, at the version the controller was built from (the tekton wrapper
// module's), downloaded again if the cache was cleaned.
func tektonConfigDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(moduleDir(t, "tekton", "github.com/tektoncd/pipeline"), "config")
}

// moduleDir is module's directory in the module cache, at the version the
// wrapper module tools/<tool> requires.
func moduleDir(t testing.TB, tool, module string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = filepath.Join("tools", tool)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s (in tools/%s): %v\n%s%s", module, tool, err, out, stderr.String())
	}
	var dir string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, `"Dir": "`); ok {
			dir = strings.TrimSuffix(strings.TrimSuffix(v, ","), `"`)
		}
	}
	if dir == "" {
		t.Fatalf("no Dir in go mod download output:\n%s", out)
	}
	return dir
}

func (s *stack) createNetns(t testing.TB) {
	t.Helper()
	// A namespace whose test binary died before its cleanup ran (a go test
	// -timeout panic) is garbage: its processes died with the binary.
	old, _ := filepath.Glob("/var/run/netns/tekton-multiarch-*")
	for _, ns := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(ns), "tekton-multiarch-"))
		if err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
			if out, err := exec.Command("ip", "netns", "delete", filepath.Base(ns)).CombinedOutput(); err != nil {
				t.Logf("ip netns delete %s: %v %s", filepath.Base(ns), err, out)
			}
		}
	}
	s.nsName = fmt.Sprintf("tekton-multiarch-%d", os.Getpid())
	s.nsPath = "/var/run/netns/" + s.nsName
	if out, err := exec.Command("ip", "netns", "add", s.nsName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", s.nsName, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", s.nsName).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", s.nsName, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", s.nsName, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v\n%s", s.nsName, err, out)
	}
}

// inNetns runs f on a thread that has joined the network namespace at
// nsPath: a socket f opens stays in that namespace, whichever thread uses it
// afterwards.
func inNetns(nsPath string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread is in the other namespace now, so the
		// runtime must destroy it when this goroutine ends rather than
		// reuse it.
		runtime.LockOSThread()
		ns, err := os.Open(nsPath)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// netnsDialer opens each connection's socket inside the network namespace
// at nsPath.
func netnsDialer(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(nsPath, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// netnsListen opens a listening socket inside the network namespace at
// nsPath.
func netnsListen(nsPath, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(nsPath, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// proc is one long-running component.
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     string
	exited  chan struct{}
	waitErr error
	// grace is how long stop waits after SIGTERM before SIGKILL; 15 s when
	// zero.
	grace time.Duration
	// stopped: stopped on purpose before the end of the test (a restart).
	stopped bool
}

var (
	spawnOnce sync.Once
	spawnReqs chan func()
)

// spawn runs start on one OS thread that lives as long as the test binary.
// Pdeathsig fires when the thread that forked a child exits, not the
// process: forking every child from that thread means they are all killed
// if the test binary dies (a go test -timeout panic skips t.Cleanup), and
// never earlier.
func spawn(start func() error) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan func())
		go func() {
			runtime.LockOSThread()
			for f := range spawnReqs {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- func() { errc <- start() }
	return <-errc
}

// start runs argv inside the namespace with its output in logs/<name>.log,
// and registers its shutdown (SIGTERM to its PID, SIGKILL after 15 s).
// t.Cleanup runs last-in first-out, so components stop in reverse order of
// starting: etcd last.
func (s *stack) start(t testing.TB, name string, env []string, argv ...string) *proc {
	t.Helper()
	logPath := filepath.Join(s.logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + s.nsPath, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.work}, env...)
	cmd.Dir = s.work
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd.Start); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	s.procs = append(s.procs, p)
	t.Cleanup(func() { s.stop(t, p) })
	return p
}

func (s *stack) stop(t testing.TB, p *proc) {
	if p.stopped {
		return
	}
	p.stopped = true
	s.terminate(t, p)
}

// stopNow stops p before the end of the test, e.g. to restart it; its
// cleanup then has nothing left to do.
func (s *stack) stopNow(t testing.TB, p *proc) {
	p.stopped = true
	s.terminate(t, p)
}

func (s *stack) terminate(t testing.TB, p *proc) {
	select {
	case <-p.exited:
		t.Errorf("%s (pid %d) had exited before the end of the test: %v", p.name, p.cmd.Process.Pid, p.waitErr)
		return
	default:
	}
	grace := 15 * time.Second
	if p.grace > 0 {
		grace = p.grace
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		t.Logf("%s (pid %d) ignored SIGTERM for %s; killing it", p.name, p.cmd.Process.Pid, grace)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// checkAlive fails the test as soon as a component has died, instead of
// letting a wait time out on a dead control plane.
func (s *stack) checkAlive(t testing.TB) {
	t.Helper()
	for _, p := range s.procs {
		if p.stopped {
			continue
		}
		select {
		case <-p.exited:
			s.dumpLogs(t)
			t.Fatalf("%s exited: %v", p.name, p.waitErr)
		default:
		}
	}
}

// dumpLogs shows the end of every component's log, for failures that may
// be the control plane's rather than the catalog's.
func (s *stack) dumpLogs(t testing.TB) {
	t.Helper()
	for _, p := range s.procs {
		t.Logf("---- last lines of %s ----\n%s", p.log, tail(p.log, 25))
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it reports true, failing the test after timeout
// with cond's last error.
func (s *stack) waitFor(t testing.TB, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := cond(ctx)
		cancel()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		s.checkAlive(t)
		if time.Now().After(deadline) {
			s.dumpLogs(t)
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// kubectl runs the real kubectl inside the namespace against the test's
// kubeconfig, in dir (the repository root when empty), and returns its
// stdout and stderr together, as a user would see them.
func (s *stack) kubectl(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	if dir == "" {
		dir = s.repo
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append([]string{"--net=" + s.nsPath, "--", filepath.Join(s.bin, "kubectl"), "--kubeconfig=" + s.pki.kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.work}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("running kubectl: %v", err)
	}
	return out.String(), err
}

// node is one fake node kwok manages.
type node struct {
	name string
	arch string // kubernetes.io/arch
	id   string // the architecture's ID in a configuration (arm-v7), if not arch
	fuse bool
	// Extra labels and taints: a board a build must ask for and tolerate.
	labels map[string]string
	taints []corev1.Taint
}

func (n node) archID() string {
	if n.id != "" {
		return n.id
	}
	return n.arch
}

// buildNodes: one node per architecture advertising /dev/fuse, as the fuse
// device plugin would, and a second amd64 node without it, so a build pod
// only lands on a fuse node if its fuse limit is honoured.
var buildNodes = []node{
	{name: "amd64-fuse", arch: "amd64", fuse: true},
	{name: "arm64-fuse", arch: "arm64", fuse: true},
	{name: "amd64-nofuse", arch: "amd64", fuse: false},
	// A 32-bit board only a build asking for its label and tolerating its
	// taint may use (the third platform of the arch-policy test).
	{name: "arm-v7-rpi4", arch: "arm", id: "arm-v7", fuse: true,
		labels: map[string]string{boardLabel: "rpi4"},
		taints: []corev1.Taint{{Key: boardLabel, Value: "rpi4", Effect: corev1.TaintEffectNoSchedule}}},
}

const boardLabel = "example.com/board"

// startKwok starts kwok and creates nodes, each Ready before it returns.
func (s *stack) startKwok(t testing.TB, nodes []node) {
	t.Helper()
	stages := filepath.Join(s.work, "kwok-stages.yaml")
	write(t, stages, []byte(kwokStages))
	s.start(t, "kwok", nil, filepath.Join(s.bin, "kwok"),
		"--kubeconfig="+s.pki.kubeconfig,
		"--config="+stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--server-address=127.0.0.1:10247",
		"--cidr=10.244.0.1/24",
		"--node-ip=10.244.0.1",
		"--node-lease-duration-seconds=40")

	ctx := context.Background()
	for _, n := range nodes {
		res := corev1.ResourceList{
			corev1.ResourceCPU:    mustQuantity("16"),
			corev1.ResourceMemory: mustQuantity("64Gi"),
			corev1.ResourcePods:   mustQuantity("110"),
		}
		if n.fuse {
			res[corev1.ResourceName(fuseResource)] = mustQuantity("10")
		}
		obj := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: n.name,
				Labels: map[string]string{
					"kubernetes.io/arch":     n.arch,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/hostname": n.name,
					"type":                   "kwok",
				},
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			},
			Spec: corev1.NodeSpec{Taints: n.taints},
			Status: corev1.NodeStatus{
				Capacity:    res,
				Allocatable: res,
				NodeInfo:    corev1.NodeSystemInfo{Architecture: n.arch, OperatingSystem: "linux"},
			},
		}
		for k, v := range n.labels {
			obj.Labels[k] = v
		}
		if _, err := s.kube.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create node %s: %v", n.name, err)
		}
	}
	for _, n := range nodes {
		s.waitFor(t, "node "+n.name+" Ready (kwok)", 60*time.Second, func(ctx context.Context) (bool, error) {
			got, err := s.kube.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					_, hasFuse := got.Status.Allocatable[corev1.ResourceName(fuseResource)]
					if hasFuse != n.fuse {
						return false, fmt.Errorf("node %s: allocatable %s present=%v, want %v", n.name, fuseResource, hasFuse, n.fuse)
					}
					return true, nil
				}
			}
			return false, fmt.Errorf("node %s not Ready yet", n.name)
		})
	}
}
