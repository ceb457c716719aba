package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startBuildOptions: start's build flags make a run the real controller
// accepts (the params and workspaces the Pipeline declares) and hands on
// to every build TaskRun; driven to success on the kwok nodes.
func (s *stack) startBuildOptions(t *testing.T, c catalog, cli *startCLI) {
	ctx := context.Background()
	if _, err := s.kube.CoreV1().ConfigMaps(c.ns()).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "corp-ca"},
		Data:       map[string]string{"ca.crt": string(s.pki.caPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kube.CoreV1().Secrets(c.ns()).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "npm-token"},
		StringData: map[string]string{"npm": "not-a-real-token"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := cli.run(t, "--git-url", c.cfg.Example.GitURL, "--ref", c.cfg.Example.GitRef, "--image", c.cfg.Example.Image,
		"--no-push", "--target", "runtime", "--label", "team=builds", "--label", "org.opencontainers.image.vendor=Example, Inc.",
		"--annotation", "note=cluster test", "--ca-bundle", "configmap:corp-ca", "--build-secret", "npm-token")
	pr := r.created(t, s, c)
	if code := r.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("start exited %d:\n%s", code, r.out.String())
	}
	builds := pr.waitTaskRuns(t, buildTasks(c)...)
	for name, tr := range builds {
		params := map[string]string{}
		var labels []string
		for _, p := range tr.Spec.Params {
			params[p.Name] = p.Value.StringVal
			if p.Name == "LABELS" {
				labels = p.Value.ArrayVal
			}
		}
		if params["PUSH"] != "false" || params["TARGET"] != "runtime" {
			t.Errorf("TaskRun %s: PUSH %q, TARGET %q; want \"false\", \"runtime\"", name, params["PUSH"], params["TARGET"])
		}
		for _, l := range []string{"team=builds", "org.opencontainers.image.vendor=Example, Inc."} {
			if !slices.Contains(labels, l) {
				t.Errorf("TaskRun %s: LABELS %q lacks %q", name, labels, l)
			}
		}
		bound := map[string]string{}
		for _, w := range tr.Spec.Workspaces {
			switch {
			case w.ConfigMap != nil:
				bound[w.Name] = "configmap:" + w.ConfigMap.Name
			case w.Secret != nil:
				bound[w.Name] = "secret:" + w.Secret.SecretName
			}
		}
		if bound["ca-bundle"] != "configmap:corp-ca" || bound["build-secrets"] != "secret:npm-token" {
			t.Errorf("TaskRun %s workspaces %v; want ca-bundle configmap:corp-ca, build-secrets secret:npm-token", name, bound)
		}
	}
	if t.Failed() {
		return
	}
	s.driveToSuccess(t, pr)
	if out := r.out.String(); strings.Contains(out, "not-a-real-token") {
		t.Errorf("start printed the build secret's value")
	}
}
