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
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// startCLI is the project's own command line, built once from the working
// tree, run inside the test's network namespace like kubectl.
type startCLI struct {
	bin string
	s   *stack
}

func buildCLI(t testing.TB, s *stack) *startCLI {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tekton-multiarch")
	cmd := exec.Command("go", "build", "-o", bin, "./generator")
	cmd.Dir = s.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./generator: %v\n%s", err, out)
	}
	return &startCLI{bin: bin, s: s}
}

// lockedBuffer collects a running command's output for the test to poll.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type running struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

func (c *startCLI) run(t testing.TB, args ...string) *running {
	t.Helper()
	argv := append([]string{"--net=" + c.s.nsPath, "--", c.bin, "start", "--kubeconfig=" + c.s.pki.kubeconfig}, args...)
	cmd := exec.Command("nsenter", argv...)
	cmd.Dir = c.s.repo
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + c.s.work}
	r := &running{cmd: cmd, out: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait returns the exit code.
func (r *running) wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case err := <-r.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("start did not exit within %s; output so far:\n%s", within, r.out.String())
		return -1
	}
}

var startCreatedRE = regexp.MustCompile(`pipelinerun/(\S+) created in namespace (\S+)`)

// created waits for start to say which PipelineRun it made.
func (r *running) created(t testing.TB, s *stack, c catalog) *prRun {
	t.Helper()
	var name string
	s.waitFor(t, "start to create a PipelineRun", 30*time.Second, func(context.Context) (bool, error) {
		m := startCreatedRE.FindStringSubmatch(r.out.String())
		if m == nil {
			return false, nil
		}
		if m[2] != c.ns() {
			return false, errors.New("start created the run in namespace " + m[2] + ", not " + c.ns())
		}
		name = m[1]
		return true, nil
	})
	return &prRun{s: s, c: c, name: name}
}

// startCommand: the project's start command against the real API server
// and Tekton controller. The runs it creates are driven by kwok like the
// kubectl-created ones, and pass the same checks (per-architecture pods on
// their nodes, results, manifest after the builds).
func (s *stack) startCommand(t *testing.T, c catalog) {
	cli := buildCLI(t, s)
	common := []string{"--git-url", c.cfg.Example.GitURL, "--ref", c.cfg.Example.GitRef, "--image", c.cfg.Example.Image}

	t.Run("missing-pipeline", func(t *testing.T) {
		if out, err := s.kubectl(t, "", "create", "namespace", "no-catalog"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		r := cli.run(t, append(common, "--namespace", "no-catalog")...)
		code := r.wait(t, 30*time.Second)
		out := r.out.String()
		want := "Pipeline multiarch-build is not in namespace no-catalog; run `kubectl apply -n no-catalog -R -f tasks/ -f pipelines/`"
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output:\n%s\nwant exit 1 and %q", code, out, want)
		}
		t.Logf("$ tekton-multiarch start --namespace no-catalog ...\n%s", out)
	})

	t.Run("build-options", func(t *testing.T) { s.startBuildOptions(t, c, cli) })

	t.Run("follow-success", func(t *testing.T) {
		r := cli.run(t, append(common, "--follow", "--timeout", "2m")...)
		pr := r.created(t, s, c)
		s.driveToSuccess(t, pr)
		code := r.wait(t, 30*time.Second)
		out := r.out.String()
		t.Logf("$ tekton-multiarch start --follow ...\n%s", out)
		if code != 0 {
			t.Fatalf("start --follow exited %d for a successful run", code)
		}
		want := []string{"[manifest] manifest: done", "succeeded: " + c.cfg.Example.Image + "@" + fakeDigest("index"), "tkn pipelinerun logs " + pr.name + " -f -n " + c.ns()}
		for _, arch := range archs(c) {
			want = append(want, "[build-"+arch+"] clone: done", "[build-"+arch+"] build+push: done",
				"[build-"+arch+"] succeeded: "+buildValues(c, arch).ref)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("start --follow output lacks %q", w)
			}
		}
		if strings.Contains(out, "pending: Pending") {
			t.Errorf("start --follow printed Tekton's bare Pending as a reason")
		}
		// Each progress line is said once: no repeats, no spinner.
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.Count(out, line+"\n") > 1 {
				t.Errorf("line %q printed more than once", line)
			}
			if strings.ContainsAny(line, "\r\x1b") {
				t.Errorf("terminal control characters in %q", line)
			}
		}
	})

	t.Run("follow-failure", func(t *testing.T) {
		r := cli.run(t, append(common, "--follow", "--timeout", "2m")...)
		pr := r.created(t, s, c)
		s.driveArm64Failure(t, pr)
		code := r.wait(t, 30*time.Second)
		out := r.out.String()
		t.Logf("$ tekton-multiarch start --follow ... (arm64 fails)\n%s", out)
		if code != 1 {
			t.Errorf("start --follow exited %d for a failed run, want 1", code)
		}
		for _, w := range []string{"[build-arm64] build+push: failed (exit 1)", pr.name + " failed:", "full logs: tkn pipelinerun logs " + pr.name} {
			if !strings.Contains(out, w) {
				t.Errorf("start --follow output lacks %q", w)
			}
		}
	})

	t.Run("ctrl-c", func(t *testing.T) {
		r := cli.run(t, append(common, "--follow", "--timeout", "2m")...)
		pr := r.created(t, s, c)
		// nsenter execs the command, so this is the CLI itself.
		if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		code := r.wait(t, 30*time.Second)
		out := r.out.String()
		want := "stopped following; " + pr.name + " goes on. Cancel it with: tkn pipelinerun cancel " + pr.name + " -n " + c.ns()
		if code != 130 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output:\n%s\nwant exit 130 and %q", code, out, want)
		}
		got, err := pr.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got.IsDone() || got.Spec.Status != "" {
			t.Errorf("PipelineRun %s was stopped (status %q) by Ctrl-C on start", pr.name, got.Spec.Status)
		}
	})

	// The Pipeline that takes its platforms at run time: only arm64 this time.
	t.Run("matrix-pipeline", func(t *testing.T) {
		r := cli.run(t, append(common, "--pipeline", "multiarch-build-matrix", "--arch", "arm64", "--follow", "--timeout", "2m")...)
		code, out := s.followedMatrixArm64(t, c, r)
		t.Logf("$ tekton-multiarch start --pipeline multiarch-build-matrix --arch arm64 --follow ...\n%s", out)
		if code != 0 {
			t.Errorf("start exited %d", code)
		}
		for _, w := range []string{"[build linux/arm64] build+push: done", "[manifest] manifest: done", "succeeded: "} {
			if !strings.Contains(out, w) {
				t.Errorf("start --follow output lacks %q", w)
			}
		}
		if strings.Contains(out, "linux/amd64") {
			t.Errorf("an amd64 build in a run of --arch arm64")
		}
	})

	// Without the policy a matrix cannot pin its builds: start says so and
	// runs the explicit Pipeline with taskRunSpecs.
	t.Run("matrix-without-policy-falls-back", func(t *testing.T) {
		if out, err := s.kubectl(t, c.dir, "delete", "mutatingadmissionpolicybinding", "multiarch-build-arch"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Cleanup(func() { s.applyPolicy(t, c) })
		r := cli.run(t, append(common, "--pipeline", "multiarch-build-matrix", "--follow", "--timeout", "2m")...)
		pr := r.created(t, s, c)
		got, err := pr.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.PipelineRef.Name != "multiarch-build" || len(got.Spec.TaskRunSpecs) != len(archs(c)) {
			t.Errorf("fallback run of %s with %d taskRunSpecs, want multiarch-build with one per architecture", got.Spec.PipelineRef.Name, len(got.Spec.TaskRunSpecs))
		}
		s.driveToSuccess(t, pr)
		code := r.wait(t, 30*time.Second)
		out := r.out.String()
		t.Logf("$ tekton-multiarch start --pipeline multiarch-build-matrix --follow ... (no policy binding)\n%s", out)
		want := "the arch-pinning MutatingAdmissionPolicyBinding multiarch-build-arch is not in the cluster (kubectl apply -f examples/cluster/arch-pinning.yaml): multiarch-build-matrix cannot pin its builds; running multiarch-build with a taskRunSpec per architecture instead"
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d; want exit 0 and %q", code, want)
		}
	})

	// Whoever starts builds with only the generated starter Role cannot read
	// the cluster-scoped policy: start says so, names the ClusterRole that
	// lets it, and runs the explicit Pipeline, which is pinned without the
	// policy. With the ClusterRole bound, as the README says, the matrix runs.
	t.Run("starter-rbac", func(t *testing.T) {
		const sa = "build-starter"
		for _, args := range [][]string{
			{"-n", c.ns(), "create", "serviceaccount", sa},
			{"-n", c.ns(), "create", "rolebinding", sa + "-starts-builds", "--role=multiarch-build-starter", "--serviceaccount=" + c.ns() + ":" + sa},
		} {
			if out, err := s.kubectl(t, c.dir, args...); err != nil {
				t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		kubeconfig := s.tokenKubeconfig(t, c.ns(), sa)
		matrix := append(common, "--kubeconfig="+kubeconfig, "--pipeline", "multiarch-build-matrix", "--follow", "--timeout", "2m")

		t.Run("forbidden-falls-back", func(t *testing.T) {
			r := cli.run(t, matrix...)
			pr := r.created(t, s, c)
			got, err := pr.get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got.Spec.PipelineRef.Name != "multiarch-build" || len(got.Spec.TaskRunSpecs) != len(archs(c)) {
				t.Errorf("run of %s with %d taskRunSpecs, want multiarch-build with one per architecture", got.Spec.PipelineRef.Name, len(got.Spec.TaskRunSpecs))
			}
			s.driveToSuccess(t, pr)
			code := r.wait(t, 30*time.Second)
			out := r.out.String()
			t.Logf("$ tekton-multiarch start --pipeline multiarch-build-matrix --follow ... (as %s, starter Role only)\n%s", sa, out)
			want := "cannot read the arch-pinning MutatingAdmissionPolicy multiarch-build-arch (forbidden: bind the ClusterRole multiarch-build-arch-policy-reader of examples/cluster/build-identity.yaml to whoever starts builds): multiarch-build-matrix cannot pin its builds; running multiarch-build with a taskRunSpec per architecture instead"
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("exit %d; want exit 0 and %q", code, want)
			}
			if !strings.Contains(out, "succeeded: ") {
				t.Errorf("start --follow as the starter did not follow the run to its end")
			}
		})
		t.Run("policy-reader-runs-the-matrix", func(t *testing.T) {
			args := []string{"create", "clusterrolebinding", sa + "-sees-arch-policy", "--clusterrole=multiarch-build-arch-policy-reader", "--serviceaccount=" + c.ns() + ":" + sa}
			if out, err := s.kubectl(t, c.dir, args...); err != nil {
				t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			t.Cleanup(func() { s.kubectl(t, c.dir, "delete", "clusterrolebinding", sa+"-sees-arch-policy") })
			r := cli.run(t, append(matrix, "--arch", "arm64")...)
			code, out := s.followedMatrixArm64(t, c, r)
			t.Logf("$ tekton-multiarch start --pipeline multiarch-build-matrix --arch arm64 --follow ... (as %s, with the policy reader)\n%s", sa, out)
			if code != 0 || strings.Contains(out, "cannot read the arch-pinning") {
				t.Errorf("exit %d, or start could not read the policy with %s bound", code, "multiarch-build-arch-policy-reader")
			}
		})
	})

	// A build no node can take: start --follow says why it waits, with the
	// scheduler's reason, instead of waiting silently.
	t.Run("follow-pending", func(t *testing.T) {
		ctx := context.Background()
		arm := fuseNode("arm64")
		s.cordon(t, arm)
		r := cli.run(t, append(common, "--follow", "--timeout", "2m")...)
		pr := r.created(t, s, c)
		t.Cleanup(func() {
			patch := []byte(`{"spec":{"status":"Cancelled"}}`)
			if _, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Patch(ctx, pr.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Errorf("cancel %s: %v", pr.name, err)
			}
		})
		want := regexp.MustCompile(`\[build-arm64\] pending: .*0/\d+ nodes are available: .*unschedulable`)
		s.waitFor(t, "start --follow to say why build-arm64 waits", 60*time.Second, func(context.Context) (bool, error) {
			return want.MatchString(r.out.String()), fmt.Errorf("output so far:\n%s", r.out.String())
		})
		if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		r.wait(t, 30*time.Second)
		t.Logf("$ tekton-multiarch start --follow ... (%s cordoned)\n%s", arm, r.out.String())
	})

	t.Run("follow-timeout", func(t *testing.T) {
		r := cli.run(t, append(common, "--follow", "--timeout", "2s")...)
		pr := r.created(t, s, c)
		code := r.wait(t, 30*time.Second)
		out := r.out.String()
		if code != 1 || !strings.Contains(out, pr.name+" did not finish within --timeout 2s; it goes on") {
			t.Errorf("exit %d, output:\n%s\nwant exit 1 and the timeout message", code, out)
		}
		// The run goes on after start gives up.
		got, err := pr.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got.IsDone() {
			t.Errorf("PipelineRun %s ended when start timed out", pr.name)
		}
	})
}

// followedMatrixArm64 drives the matrix run a `start --pipeline
// multiarch-build-matrix --arch arm64 --follow` made (no taskRunSpecs: the
// policy pins it) to success on the kwok nodes, and returns start's exit
// code and output.
func (s *stack) followedMatrixArm64(t *testing.T, c catalog, r *running) (int, string) {
	t.Helper()
	pr := r.created(t, s, c)
	got, err := pr.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.PipelineRef.Name != "multiarch-build-matrix" || len(got.Spec.TaskRunSpecs) != 0 {
		t.Errorf("run of %s with %d taskRunSpecs, want multiarch-build-matrix without", got.Spec.PipelineRef.Name, len(got.Spec.TaskRunSpecs))
	}
	s.driveMatrix(t, pr, "linux/arm64")
	code := r.wait(t, 30*time.Second)
	return code, r.out.String()
}
