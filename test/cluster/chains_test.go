package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Tekton Chains as its config/ installs it: its namespace and ServiceAccount.
const (
	chainsNS = "tekton-chains"
	chainsSA = "tekton-chains-controller"
	// Off the pipeline controller's :8080, :9090 and :8008 in the namespace.
	chainsHealthPort = 8107
	// chainsSigned is the annotation Chains sets once it has handled a run:
	// "true" even when it had no key to sign with, so never proof alone.
	chainsSigned = "chains.tekton.dev/signed"
)

// chainsCtl is a running Chains controller and the cosign CLI built beside
// it (test/cluster/tools/chains), with the public key of the pair Chains
// signs with.
type chainsCtl struct {
	s      *stack
	p      *proc
	bin    string
	pubKey string // cosign.pub, as cosign generate-key-pair wrote it
}

// chainsBinDir is build-tools.sh's directory for tools/chains' key.
func chainsBinDir(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("./build-tools.sh", "--chains-dir")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("test/cluster/build-tools.sh --chains-dir: %v\n%s", err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	for _, b := range []string{"chains-controller", "cosign"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			if os.Getenv(envSkipCold) == "1" {
				t.Skipf("SKIPPED: %s=1 and Chains/cosign are not built in %s: build them with test/cluster/build-tools.sh", envSkipCold, dir)
			}
			t.Fatalf("%s missing in %s: build it with test/cluster/build-tools.sh (Chains and cosign: about 10 min cold)", b, dir)
		}
	}
	return dir
}

// startChains installs Chains the way its release does, minus the
// Deployment: config/100-rolebinding.yaml (ServiceAccount, RBAC) and its
// config-*.yaml ConfigMaps from the module cache, the chains-config users get
// from examples/cluster/chains/, and the signing Secret made the way the
// README tells users (cosign generate-key-pair k8s://tekton-chains/signing-secrets).
// The controller then runs out of cluster as its ServiceAccount, limited to
// namespace ns, reading the Secret's files from a directory as its volume
// mount would. Its runs carry Chains' finalizers, so at the end every
// PipelineRun and TaskRun of ns is deleted before Chains is stopped by PID.
func (s *stack) startChains(t testing.TB, ns string) *chainsCtl {
	t.Helper()
	ctx := context.Background()
	c := &chainsCtl{s: s, bin: chainsBinDir(t)}
	dir := filepath.Join(moduleDir(t, "chains", "github.com/tektoncd/chains"), "config")
	if _, err := s.kube.CoreV1().Namespaces().Get(ctx, chainsNS, metav1.GetOptions{}); err != nil {
		if _, err := s.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: chainsNS}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s.applyFiles(t, false, append([]string{filepath.Join(dir, "100-rolebinding.yaml")}, globAll(t, dir, "config-*.yaml")...)...)
	s.applyFiles(t, false, filepath.Join(s.repo, "examples", "cluster", "chains", "chains-config.yaml"))

	work := filepath.Join(s.work, "chains")
	keys := filepath.Join(work, "signing-secrets")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kube.CoreV1().Secrets(chainsNS).Get(ctx, "signing-secrets", metav1.GetOptions{}); err != nil {
		pw := make([]byte, 12)
		if _, err := rand.Read(pw); err != nil {
			t.Fatal(err)
		}
		out, err := c.run(t, work, []string{"COSIGN_PASSWORD=" + hex.EncodeToString(pw), "KUBECONFIG=" + s.pki.kubeconfig},
			"generate-key-pair", "k8s://"+chainsNS+"/signing-secrets")
		if err != nil {
			t.Fatalf("cosign generate-key-pair k8s://%s/signing-secrets: %v\n%s", chainsNS, err, out)
		}
		t.Logf("cosign generate-key-pair k8s://%s/signing-secrets:\n%s", chainsNS, out)
	}
	c.pubKey = filepath.Join(work, "cosign.pub")
	sec, err := s.kube.CoreV1().Secrets(chainsNS).Get(ctx, "signing-secrets", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cosign.key", "cosign.password", "cosign.pub"} {
		if len(sec.Data[f]) == 0 {
			t.Fatalf("Secret %s/signing-secrets has no %s: %v", chainsNS, f, mapKeys(sec.Data))
		}
	}
	write(t, c.pubKey, sec.Data["cosign.pub"])
	for name, data := range sec.Data {
		if err := os.WriteFile(filepath.Join(keys, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t0 := time.Now()
	c.p = s.start(t, "tekton-chains", []string{
		"SYSTEM_NAMESPACE=" + chainsNS,
		"KUBERNETES_MIN_VERSION=v1.28.0",
		"METRICS_DOMAIN=tekton.dev/chains",
		"CONFIG_OBSERVABILITY_NAME=tekton-chains-config-observability",
		"CONFIG_LEADERELECTION_NAME=tekton-chains-config-leader-election",
		"METRICS_PROMETHEUS_HOST=127.0.0.1",
		"METRICS_PROMETHEUS_PORT=9107",
		"PROFILING_PORT=8108",
	}, filepath.Join(c.bin, "chains-controller"),
		"-kubeconfig="+s.tokenKubeconfig(t, chainsNS, chainsSA),
		"-namespace="+ns, "-signing-secrets="+keys, fmt.Sprintf("-health-port=%d", chainsHealthPort))
	t.Cleanup(func() { s.deleteRuns(t, ns) })
	s.waitFor(t, "Chains' readiness probe", 60*time.Second, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/readiness", chainsHealthPort), nil)
		if err != nil {
			return false, err
		}
		resp, err := s.nsHTTP(nil).Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/readiness: %s", resp.Status)
	})
	t.Logf("Chains ready in %s", time.Since(t0).Round(time.Millisecond))
	return c
}

// deleteRuns deletes ns's PipelineRuns and TaskRuns and waits until they
// are gone, Chains removing its finalizers, so that stopping Chains after
// it leaves nothing a finalizer holds.
func (s *stack) deleteRuns(t testing.TB, ns string) {
	ctx := context.Background()
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	if err := s.tekton.TektonV1().PipelineRuns(ns).DeleteCollection(ctx, opts, metav1.ListOptions{}); err != nil {
		t.Errorf("deleting the PipelineRuns of %s: %v", ns, err)
	}
	if err := s.tekton.TektonV1().TaskRuns(ns).DeleteCollection(ctx, opts, metav1.ListOptions{}); err != nil {
		t.Errorf("deleting the TaskRuns of %s: %v", ns, err)
	}
	s.waitFor(t, "the runs of "+ns+" gone before Chains stops", 2*time.Minute, func(ctx context.Context) (bool, error) {
		prs, err := s.tekton.TektonV1().PipelineRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		trs, err := s.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(prs.Items)+len(trs.Items) == 0, fmt.Errorf("%d PipelineRuns and %d TaskRuns left", len(prs.Items), len(trs.Items))
	})
}

// run runs the cosign CLI inside the namespace (where the registry and the
// API server are) in dir, and returns its combined output.
func (c *chainsCtl) run(t testing.TB, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + c.s.nsPath, "--", filepath.Join(c.bin, "cosign")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.s.work}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("running cosign: %v", err)
	}
	return out.String(), err
}

// verify runs cosign verify or verify-attestation offline with the public
// key, as README.md's "Verify an image" shows plus the plain-HTTP flag, and
// returns stdout (the payloads) and stderr (cosign's account of the checks).
func (c *chainsCtl) verify(t testing.TB, sub, ref string, extra ...string) (string, string, error) {
	t.Helper()
	args := append([]string{sub, "--key", c.pubKey, "--insecure-ignore-tlog=true", "--allow-http-registry"}, extra...)
	args = append(args, ref)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + c.s.nsPath, "--", filepath.Join(c.bin, "cosign")}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.s.work}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("running cosign: %v", err)
	}
	t.Logf("$ cosign %s\n%s", strings.Join(args, " "), stderr.String())
	return stdout.String(), stderr.String(), err
}

// errorLines is the end of Chains' log, its errors and warnings only.
func (c *chainsCtl) errorLines() string {
	raw, _ := os.ReadFile(c.p.log)
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if chainsErrorLine.MatchString(l) {
			lines = append(lines, l)
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// chainsErrorLine picks Chains' log lines about signing and storing.
var chainsErrorLine = regexp.MustCompile(`"level":"(error|warn)"`)

// waitSigned waits until Chains has annotated every object signed=true,
// and on timeout shows each one's annotations and Chains' log lines about
// signing, so a Chains that cannot sign says why in the failure.
func (c *chainsCtl) waitSigned(t testing.TB, what string, get func(ctx context.Context) (map[string]map[string]string, error)) {
	t.Helper()
	var last map[string]map[string]string
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		var err error
		last, err = get(ctx)
		if err == nil {
			done := true
			for _, ann := range last {
				if ann[chainsSigned] != "true" {
					done = false
				}
			}
			if done {
				return
			}
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for name, ann := range last {
				fmt.Fprintf(&b, "  %s: %s=%q, chains.tekton.dev/retries=%q\n", name, chainsSigned, ann[chainsSigned], ann["chains.tekton.dev/retries"])
			}
			t.Fatalf("Chains did not sign %s in 3m (last error: %v):\n%sChains' log about signing (%s):\n%s",
				what, err, b.String(), c.p.log, c.errorLines())
		case <-time.After(2 * time.Second):
		}
		c.s.checkAlive(t)
	}
}
