package cluster

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gencatalog "github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
)

// matrixBuildOptions starts multiarch-build-matrix with tkn and the build
// options of its README (the ca-bundle and build-secrets workspaces, TARGET,
// the LABELS and ANNOTATIONS arrays, PUSH=false) and checks, on the real
// Tekton controller, that each matrixed build's pod and the manifest's get
// them: the arrays through a matrix as the Pipeline declares them.
func (s *stack) matrixBuildOptions(t *testing.T, c catalog) {
	for _, args := range [][]string{
		{"create", "configmap", "registry-ca", "--from-literal=ca.crt=not checked here"},
		{"create", "secret", "generic", "build-secrets", "--from-literal=token=not-checked-here"},
	} {
		if out, err := s.kubectl(t, c.dir, append(append([]string{}, args...), "-n", c.ns())...); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		_, _ = s.kubectl(t, c.dir, "delete", "-n", c.ns(), "configmap/registry-ca", "secret/build-secrets")
	})
	cmd := strings.Replace(gencatalog.TknStartMatrixCommand(c.cfg), " --use-param-defaults",
		" -w name=ca-bundle,config=registry-ca -w name=build-secrets,secret=build-secrets -p TARGET=runtime"+
			" -p LABELS=com.example.team=payments,org.opencontainers.image.title=app -p ANNOTATIONS=com.example.release=rc1 -p PUSH=false --use-param-defaults", 1)
	r := s.tkn(t, c, cmd)

	var builds []v1.TaskRun
	s.waitFor(t, "2 matrix build TaskRuns", 60*time.Second, func(ctx context.Context) (bool, error) {
		trs, err := r.matrixTaskRuns(ctx)
		builds = slices.DeleteFunc(trs, func(tr v1.TaskRun) bool { return tr.Labels[pipeline.PipelineTaskLabelKey] != "build" })
		return len(builds) == 2, err
	})
	for i := range builds {
		pod := r.waitPod(t, &builds[i])
		checkOptionsPod(t, pod, "step-build", map[string]string{"TARGET": "runtime", "PUSH": "false"},
			[]string{"--labels", "com.example.team=payments", "org.opencontainers.image.title=app"},
			map[string]string{"registry-ca": "configMap", "build-secrets": "secret"})
	}
	s.driveMatrix(t, r, "linux/amd64", "linux/arm64")

	trs, err := r.matrixTaskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		if tr.Labels[pipeline.PipelineTaskLabelKey] != "manifest" {
			continue
		}
		pods, err := s.kube.CoreV1().Pods(c.ns()).List(context.Background(), metav1.ListOptions{LabelSelector: pipeline.TaskRunLabelKey + "=" + tr.Name})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("the manifest's pod: %v (%d pods)", err, len(pods.Items))
		}
		checkOptionsPod(t, &pods.Items[0], "step-manifest", map[string]string{"PUSH": "false", "GIT_URL": c.cfg.Example.GitURL},
			[]string{"--annotations", "com.example.release=rc1"}, map[string]string{"registry-ca": "configMap"})
		return
	}
	t.Error("no manifest TaskRun")
}

// checkOptionsPod checks a step container's env, that its args hold want
// in order, and the pod's volumes from ConfigMaps and Secrets.
func checkOptionsPod(t *testing.T, pod *corev1.Pod, ctr string, env map[string]string, args []string, volumes map[string]string) {
	t.Helper()
	for k, v := range env {
		if got := envOf(pod, ctr, k); got != v {
			t.Errorf("pod %s %s env %s = %q, want %q", pod.Name, ctr, k, got, v)
		}
	}
	c := container(pod, ctr)
	if c == nil {
		t.Fatalf("pod %s has no container %s", pod.Name, ctr)
	}
	all := strings.Join(c.Args, "\x00")
	if !strings.Contains(all, strings.Join(args, "\x00")) {
		t.Errorf("pod %s %s args %q lack %q", pod.Name, ctr, c.Args, args)
	}
	for name, kind := range volumes {
		found := false
		for _, v := range pod.Spec.Volumes {
			switch {
			case kind == "configMap" && v.ConfigMap != nil && v.ConfigMap.Name == name,
				kind == "secret" && v.Secret != nil && v.Secret.SecretName == name:
				found = true
			}
		}
		if !found {
			t.Errorf("pod %s has no %s volume %s", pod.Name, kind, name)
		}
	}
}

// realBuildOnly runs the Pipeline with PUSH=false on the real node: both
// architectures are built in their pods (arm64 under emulation) and
// checked, the registry's repositories and tags are as before, and the
// run's IMAGE_DIGEST is empty.
func (s *stack) realBuildOnly(t *testing.T, c catalog, n *realNode, w *nodeWorld) {
	before := s.registryContents(t, w)
	r, _ := s.runOnRealNode(t, c, n, w, "pr-1", map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": "Dockerfile.run", "PUSH": "false"})
	pr, trs := s.succeededRealRun(t, r)
	for _, arch := range []string{"amd64", "arm64"} {
		tr := trs["build-"+arch]
		if tr == nil {
			t.Fatalf("no TaskRun for build-%s", arch)
		}
		d := taskRunResults(tr)["IMAGE_DIGEST"]
		log := s.stepLog(t, c.ns(), tr, "step-build")
		if want := "@" + d + " (linux/" + arch + "), not pushed (PUSH=false)"; d == "" || !strings.Contains(log, want) {
			t.Errorf("build-%s: IMAGE_DIGEST %q, log lacks %q:\n%s", arch, d, want, log)
		}
	}
	for _, res := range pr.Status.Results {
		if res.Name == "IMAGE_DIGEST" && res.Value.StringVal != "" {
			t.Errorf("the run's IMAGE_DIGEST is %q, want empty: no index was pushed", res.Value.StringVal)
		}
	}
	if after := s.registryContents(t, w); !maps.EqualFunc(before, after, slices.Equal) {
		t.Errorf("the registry changed in a build-only run:\nbefore %v\nafter  %v", before, after)
	}
}

// registryContents lists the node registry's repositories and their tags.
func (s *stack) registryContents(t *testing.T, w *nodeWorld) map[string][]string {
	t.Helper()
	get := func(path string, v any) {
		resp, err := s.nsHTTP(nil).Get("http://" + w.registry + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	get("/v2/_catalog?n=1000", &cat)
	out := map[string][]string{}
	for _, repo := range cat.Repositories {
		var tl struct {
			Tags []string `json:"tags"`
		}
		get("/v2/"+repo+"/tags/list", &tl)
		slices.Sort(tl.Tags)
		out[repo] = tl.Tags
	}
	return out
}
