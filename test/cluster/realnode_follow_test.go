package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// followNS is the namespace of the start --follow run on the real node: its
// catalog's Pipeline defaults are changed for this node, so it is not the
// other subtests'.
const followNS = "real-node-follow"

// realNodeHere is a MutatingAdmissionPolicy of the test's own (not the
// catalog's): every pod created in followNS goes to the real node, whatever
// the run pinned. It stands in for a cluster with a node of each
// architecture, which this machine cannot have: start pins each build to
// its architecture with taskRunSpecs, and the only real node is amd64.
const realNodeHere = `apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: cluster-test-real-node-here}
spec:
  matchConstraints:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: %[1]s}}
    resourceRules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
    - patchType: JSONPatch
      jsonPatch:
        expression: >
          [JSONPatch{op: "add", path: "/spec/nodeSelector", value: {"kubernetes.io/hostname": "%[2]s"}}] +
          (has(object.spec.tolerations) ?
            [JSONPatch{op: "add", path: "/spec/tolerations/-", value: Object.spec.tolerations{key: "%[3]s", operator: "Exists", effect: "NoSchedule"}}] :
            [JSONPatch{op: "add", path: "/spec/tolerations", value: [Object.spec.tolerations{key: "%[3]s", operator: "Exists", effect: "NoSchedule"}]}])
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata: {name: cluster-test-real-node-here}
spec: {policyName: cluster-test-real-node-here}
`

// startFollowOnRealNode runs the project's start --follow against the real
// node for linux/amd64 (native) and linux/arm64 (emulated, as
// emulated-arm64), and checks that the builds' own output streams as it
// comes: buildah's STEP lines, prefixed with their platform, before the
// build's own "done", the clone's and the manifest's lines with theirs, and
// the pushed index's digest at the end.
func (s *stack) startFollowOnRealNode(t *testing.T, w *nodeWorld) {
	ctx := context.Background()
	cfgText := realNodeConfig(t, s.images, followNS, "")
	c := generateVariant(t, s.repo, cfgText)
	s.install(t, c)
	// What the run needs of this node, as Pipeline defaults, since start
	// sets no such params: the arm64 build runs here under emulation (a
	// RUN step, as in emulated-arm64), and the registry on the bridge is
	// plain HTTP.
	p, err := s.tekton.TektonV1().Pipelines(followNS).Get(ctx, "multiarch-build", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Spec.Params {
		switch p.Spec.Params[i].Name {
		case "ALLOW_EMULATION", "TLS_VERIFY", "DOCKERFILE":
			p.Spec.Params[i].Default.StringVal = map[string]string{"ALLOW_EMULATION": "true", "TLS_VERIFY": "false", "DOCKERFILE": "Dockerfile.run"}[p.Spec.Params[i].Name]
		}
	}
	if _, err := s.tekton.TektonV1().Pipelines(followNS).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "real-node-here.yaml")
	write(t, policy, fmt.Appendf(nil, realNodeHere, followNS, realNodeName, realNodeTaintKey))
	if out, err := s.kubectl(t, "", "apply", "-f", policy); err != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", policy, err, out)
	}
	t.Cleanup(func() { s.kubectl(t, "", "delete", "-f", policy) })
	s.waitFor(t, "the test's policy to send pods of "+followNS+" to the real node", 30*time.Second, func(ctx context.Context) (bool, error) {
		got, err := s.dryRunPod(ctx, followNS, probePod("linux/arm64", true, nil))
		if err != nil {
			return false, err
		}
		return got.Spec.NodeSelector["kubernetes.io/hostname"] == realNodeName, fmt.Errorf("nodeSelector %v", got.Spec.NodeSelector)
	})

	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	write(t, cfgFile, []byte(cfgText))
	cli := buildCLI(t, s)
	image := w.image("follow")
	r := cli.run(t, "--config", cfgFile, "--git-url", w.fixture.URL, "--ref", "main", "--image", image, "--follow", "--timeout", "8m")
	code := r.wait(t, 9*time.Minute)
	out := r.out.String()
	t.Logf("$ tekton-multiarch start --follow ... (real node)\n%s", out)
	if code != 0 {
		t.Fatalf("start --follow exited %d", code)
	}
	lines := strings.Split(out, "\n")
	index := func(re *regexp.Regexp) int {
		for i, l := range lines {
			if re.MatchString(l) {
				return i
			}
		}
		return -1
	}
	final := index(regexp.MustCompile(`^succeeded: ` + regexp.QuoteMeta(image) + `@sha256:[0-9a-f]{64}$`))
	if final < 0 {
		t.Errorf("no final line succeeded: %s@sha256:...", image)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		platform := "linux/" + arch
		step := index(regexp.MustCompile(`^\[` + platform + `\] STEP 1/\d+: FROM `))
		done := index(regexp.MustCompile(`^\[build-` + arch + `\] build\+push: done$`))
		clone := index(regexp.MustCompile(`^\[` + platform + ` clone\] cloned commit ` + w.fixture.Commit))
		switch {
		case step < 0:
			t.Errorf("%s: no line [%s] STEP 1/N: FROM ...", platform, platform)
		case done < 0:
			t.Errorf("%s: no status line [build-%s] build+push: done", platform, arch)
		case step > done:
			// Streamed while the build ran, not read after it.
			t.Errorf("%s: its first STEP line (line %d) comes after its build+push: done (line %d)", platform, step+1, done+1)
		}
		if clone < 0 || (step >= 0 && clone > step) {
			t.Errorf("%s: the clone step's line [%s clone] cloned commit ... is missing or after the build's (%d, %d)", platform, platform, clone+1, step+1)
		}
	}
	if index(regexp.MustCompile(`^\[manifest\] `)) < 0 {
		t.Errorf("no line of the manifest step, [manifest] ...")
	}
	// Lines of concurrent builds never split each other: every line is a
	// status line, a prefixed step line, or start's own.
	whole := regexp.MustCompile(`^(\[[a-z0-9/ -]+\] .*|pipelinerun/\S+ created in namespace \S+|succeeded: .*|full logs: .*|)$`)
	for i, l := range lines {
		if !whole.MatchString(l) {
			t.Errorf("line %d is not whole or not prefixed: %q", i+1, l)
		}
	}
	if strings.Contains(out, "no step logs") {
		t.Errorf("the real node's logs were not read")
	}
}
