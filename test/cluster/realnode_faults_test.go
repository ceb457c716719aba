package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// nodeFrontPort is the registry front's port on the bridge (faults_test.go).
const nodeFrontPort = 5002

// faultRow is one fault test: a two-architecture run on the real node,
// pushing through the registry front, with the fault made while it goes.
type faultRow struct {
	name  string
	fault func(front *registryFront, tag string) fault
	// succeed: the run must still push a complete, verified index.
	succeed bool
	// task whose step log must match log: the step that rode out the
	// fault, or the one that failed ("build": either build).
	task, step string
	log        func(front *registryFront, tag string) *regexp.Regexp
}

// realFaults runs each fault row on the real node and checks what a user
// sees: the run's status, the step's log, the registry's tag before and
// after. A run that fails must leave the tag's previous index as it was: the
// failing rows' tags first get the index a succeeding row pushed.
func (s *stack) realFaults(t *testing.T, c catalog, n *realNode, w *nodeWorld) {
	front := s.startRegistryFront(t, nodeFrontPort, w.registry)
	const repo = "multiarch/app"
	image := func(f *registryFront, tag string) string { return f.addr + "/" + repo + ":" + tag }
	rows := []faultRow{
		{
			name: "registry-restart-during-build-push",
			fault: func(f *registryFront, _ string) fault {
				return &registryOutage{front: f, what: "a build's first layer upload", trigger: blobUpload(repo), outage: 3 * time.Second}
			},
			succeed: true, task: "build", step: "step-build",
			// containers/common's retry, under buildah push --retry.
			log: func(*registryFront, string) *regexp.Regexp { return regexp.MustCompile(`(?i)retrying in 2s`) },
		},
		{
			name: "registry-restart-during-index-push",
			fault: func(f *registryFront, tag string) fault {
				return &registryOutage{front: f, what: "the index's push", trigger: manifestPut(repo, tag), outage: 3 * time.Second}
			},
			succeed: true, task: "manifest", step: "step-manifest",
			log: func(*registryFront, string) *regexp.Regexp {
				return regexp.MustCompile(`push failed, retry 1 of 3 in 2s`)
			},
		},
		{
			name:    "controller-restart",
			fault:   func(*registryFront, string) fault { return &controllerRestart{s: s, down: 10 * time.Second} },
			succeed: true,
		},
		{
			name: "registry-down-from-build-push",
			fault: func(f *registryFront, _ string) fault {
				return &registryOutage{front: f, what: "a build's first layer upload", trigger: blobUpload(repo)}
			},
			task: "build", step: "step-build",
			log: func(f *registryFront, tag string) *regexp.Regexp {
				return regexp.MustCompile(`pushing ` + regexp.QuoteMeta(image(f, tag)) + `-(amd64|arm64) failed after 3 retries: check that the registry is reachable`)
			},
		},
		{
			name: "registry-down-from-index-push",
			fault: func(f *registryFront, tag string) fault {
				return &registryOutage{front: f, what: "the index's push", trigger: manifestPut(repo, tag)}
			},
			task: "manifest", step: "step-manifest",
			log: func(f *registryFront, tag string) *regexp.Regexp {
				return regexp.MustCompile(`pushing the index ` + regexp.QuoteMeta(image(f, tag)) + ` failed after 3 retries`)
			},
		},
	}
	var seed string // a tag holding an index a succeeding row pushed
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			tag := fmt.Sprintf("fault-%d", i+1)
			ctx := context.Background()
			var before string
			if !row.succeed {
				if seed == "" {
					t.Fatal("no succeeding row pushed an index to put under this row's tag")
				}
				before = seedTag(t, w, seed, tag)
			}
			f := row.fault(front, tag)
			r, watch := s.startOnRealNode(t, c, n, w, tag, map[string]string{"ALLOW_EMULATION": "true", "IMAGE": image(front, tag)}, nil)
			func() {
				defer f.heal(t)
				f.arm(t, r)
				s.waitRealRun(t, r, watch)
			}()
			pr, err := r.get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			trs, err := r.taskRuns(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if row.succeed {
				// First: an unexpected failure logs every step's log.
				s.succeededRealRun(t, r)
			}
			broke := f.broke()
			if broke.IsZero() {
				t.Fatalf("the fault never happened: its trigger matched no request of %s", r.name)
			}
			took := pr.Status.CompletionTime.Sub(broke).Round(100 * time.Millisecond)
			if row.succeed {
				digests := s.checkRealRun(t, r, w, tag)
				t.Logf("FAULT %s: run Succeeded, %s after the fault; index %s", row.name, took, digests["index"])
				if seed == "" {
					seed = tag
				}
				s.checkOnePodPerTask(t, r, trs)
			} else {
				cond := pr.Status.GetCondition(apis.ConditionSucceeded)
				if !failed(cond) {
					t.Fatalf("PipelineRun %s: %s, want Failed", r.name, condition(cond))
				}
				if after := indexDigest(t, w.image(tag)); after != before {
					t.Errorf("%s held %s before the failed run and %s after: a failed run must leave the tag's index alone", w.image(tag), before, after)
				}
				t.Logf("FAULT %s: run Failed (%s), %s after the fault; %s still holds %s", row.name, condition(cond), took, w.image(tag), before)
			}
			if row.log != nil {
				s.checkFaultLog(t, r, trs, row.task, row.step, row.log(front, tag), row.succeed)
			}
		})
	}
}

// checkFaultLog finds re in the step log of task ("build": either build),
// in the TaskRun's last attempt; a failing task must have failed, after
// its retries.
func (s *stack) checkFaultLog(t testing.TB, r *prRun, trs map[string]*v1.TaskRun, task, step string, re *regexp.Regexp, succeed bool) {
	t.Helper()
	var names []string
	if task == "build" {
		names = []string{"build-amd64", "build-arm64"}
	} else {
		names = []string{task}
	}
	found := false
	for _, name := range names {
		tr := trs[name]
		if tr == nil {
			continue
		}
		log := s.stepLog(t, r.c.ns(), tr, step)
		line := re.FindString(log)
		if line == "" {
			continue
		}
		found = true
		cond := tr.Status.GetCondition(apis.ConditionSucceeded)
		t.Logf("%s %s (%d retries): %s; log: %s", name, step, len(tr.Status.RetriesStatus), condition(cond), line)
		if !succeed {
			if !failed(cond) {
				t.Errorf("%s: %s, want Failed", name, condition(cond))
			}
			// build.retries: the build ran again, in a new pod, and failed again.
			if want := r.c.cfg.Build.Retries; strings.HasPrefix(name, "build-") && len(tr.Status.RetriesStatus) != want {
				t.Errorf("%s was retried %d times, want build.retries = %d", name, len(tr.Status.RetriesStatus), want)
			}
		}
	}
	if !found {
		for _, name := range names {
			if tr := trs[name]; tr != nil {
				t.Logf("%s %s log:\n%s", name, step, s.stepLog(t, r.c.ns(), tr, step))
			}
		}
		t.Errorf("no %s %s log has a line matching %q", task, step, re)
	}
}

// checkOnePodPerTask checks that each task of a run that succeeded ran
// once: one pod per TaskRun, none retried.
func (s *stack) checkOnePodPerTask(t testing.TB, r *prRun, trs map[string]*v1.TaskRun) {
	t.Helper()
	pods, err := s.kube.CoreV1().Pods(r.c.ns()).List(context.Background(), metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + r.name})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, p := range pods.Items {
		per[p.Labels["tekton.dev/pipelineTask"]]++
	}
	for name, tr := range trs {
		if per[name] != 1 || len(tr.Status.RetriesStatus) != 0 {
			t.Errorf("%s: %d pods, %d retries; want each task run once", name, per[name], len(tr.Status.RetriesStatus))
		}
	}
	t.Logf("pods per task: %v", per)
}

// seedTag copies what tag seed holds (an index a succeeding run pushed) to
// tag, and returns its digest: what a failing run must leave there.
func seedTag(t testing.TB, w *nodeWorld, seed, tag string) string {
	t.Helper()
	if _, err := realbuild.Skopeo(context.Background(), "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
		"docker://"+w.image(seed), "docker://"+w.image(tag)); err != nil {
		t.Fatal(err)
	}
	before := indexDigest(t, w.image(tag))
	t.Logf("%s holds %s before the run", w.image(tag), before)
	return before
}

// indexDigest is the digest of what ref holds, as the registry serves it.
func indexDigest(t testing.TB, ref string) string {
	t.Helper()
	raw, err := realbuild.RawManifest(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// realOOM builds a Dockerfile whose RUN step needs 512 MiB under a 256 MiB
// limit (build.resources): the build must fail saying it ran out of memory,
// at which limit, and where to raise it, not with a bare exit code.
func (s *stack) realOOM(t *testing.T, n *realNode, w *nodeWorld) {
	c := generateVariant(t, s.repo, realNodeConfig(t, s.images, "real-node-oom",
		"build:\n  retries: 0\n  resources:\n    requests:\n      memory: 128Mi\n    limits:\n      memory: 256Mi\n"))
	s.install(t, c)
	r, _ := s.runOnRealNode(t, c, n, w, "oom", map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": "Dockerfile.mem"})
	pr, err := r.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !failed(pr.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Fatalf("PipelineRun %s: %s, want Failed", r.name, condition(pr.Status.GetCondition(apis.ConditionSucceeded)))
	}
	trs, err := r.taskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	said := regexp.MustCompile(`memory limit: 256 MiB; a build that needs more is OOMKilled: raise build.resources.limits.memory`)
	ranOut := regexp.MustCompile(`the build ran out of memory \(a process of it was OOMKilled at this container's memory limit, 256 MiB\): raise build.resources.limits.memory`)
	for _, name := range []string{"build-amd64", "build-arm64"} {
		tr := trs[name]
		if tr == nil {
			t.Fatalf("no TaskRun for %s", name)
		}
		cond := tr.Status.GetCondition(apis.ConditionSucceeded)
		log := s.stepLog(t, c.ns(), tr, "step-build")
		t.Logf("FAULT oom %s: %s", name, condition(cond))
		if !failed(cond) {
			t.Errorf("%s: %s, want Failed", name, condition(cond))
			continue
		}
		if !said.MatchString(log) {
			t.Errorf("%s: the build log does not say its memory limit and where to raise it:\n%s", name, head(log, 30))
		}
		// Where the kernel killed the whole container, Tekton says
		// OOMKilled (reason StepOOM); where it killed the RUN step's
		// process, the step lives on and says so.
		// Whichever, the containerd reports the OOM kill (reason OOMKilled)
		// and Tekton says StepOOM; where the step lived on (exit 1, not
		// 137), its log must say so too.
		killed := regexp.MustCompile(`^"step-build" exited with code (\d+): OOMKilled$`).FindStringSubmatch(cond.Message)
		switch {
		case cond.Reason == string(v1.TaskRunReasonStepOOM) && killed != nil:
			if killed[1] != "137" && !ranOut.MatchString(log) {
				t.Errorf("%s: the build step lived on (exit %s) but its log does not say it ran out of memory:\n%s", name, killed[1], log)
			}
			if line := ranOut.FindString(log); line != "" {
				t.Logf("%s: %s", name, line)
			}
		case cond.Reason == string(v1.TaskRunReasonStepOOM):
			t.Errorf("%s: reason StepOOM, but the message is %q", name, cond.Message)
		case ranOut.MatchString(log):
			t.Logf("%s: %s", name, ranOut.FindString(log))
		default:
			t.Errorf("%s failed (%s), but neither Tekton nor the log says it ran out of memory:\n%s", name, condition(cond), log)
		}
	}
}
