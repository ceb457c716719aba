package start

import (
	"fmt"
	"regexp"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The Pipelines' build-option params and workspaces.
const (
	paramTarget      = "TARGET"
	paramLabels      = "LABELS"
	paramAnnotations = "ANNOTATIONS"
	paramPush        = "PUSH"
	// WorkspaceCABundle holds PEM certificates the registry's TLS is checked against.
	WorkspaceCABundle = "ca-bundle"
	// WorkspaceBuildSecrets holds one `buildah build --secret id=KEY` per key.
	WorkspaceBuildSecrets = "build-secrets"
)

// BuildOptions are start's flags for the build itself, beyond what to
// build: each becomes a Pipeline param or workspace, and is left out of
// the run when not given, so the Pipeline's default holds.
type BuildOptions struct {
	Target      string   // --target: the Dockerfile stage
	Labels      []string // --label KEY=VALUE
	Annotations []string // --annotation KEY=VALUE
	NoPush      bool     // --no-push: build and check every architecture, push nothing
	CABundle    string   // --ca-bundle configmap:NAME|secret:NAME
	BuildSecret string   // --build-secret NAME
}

// A Dockerfile stage name, as `FROM image AS name` takes it.
var stageName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]*$`)

// apply checks the flags and adds them to pr, naming the flag on bad input.
func (b BuildOptions) apply(pr *v1.PipelineRun) error {
	fail := func(flag, format string, args ...any) error {
		return &FlagError{flag, fmt.Sprintf(format, args...)}
	}
	str := func(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }
	if b.Target != "" {
		if !stageName.MatchString(b.Target) {
			return fail("target", "%q is not a stage name; give the name of a `FROM ... AS NAME` stage (a letter, then letters, digits, '_', '.', '-')", b.Target)
		}
		pr.Spec.Params = append(pr.Spec.Params, v1.Param{Name: paramTarget, Value: str(b.Target)})
	}
	for _, f := range []struct {
		flag, param string
		kvs         []string
	}{{"label", paramLabels, b.Labels}, {"annotation", paramAnnotations, b.Annotations}} {
		if len(f.kvs) == 0 {
			continue
		}
		seen := map[string]bool{}
		for _, kv := range f.kvs {
			k, v, ok := strings.Cut(kv, "=")
			switch {
			case !ok || k == "":
				return fail(f.flag, "%q is not KEY=VALUE, e.g. --%s org.opencontainers.image.vendor=Example", kv, f.flag)
			case strings.ContainsAny(k, " \t\r\n\"'"):
				return fail(f.flag, "key %q holds a space or a quote; use a key such as org.opencontainers.image.vendor", k)
			case strings.ContainsAny(v, "\r\n"):
				return fail(f.flag, "the value of %s holds a line break; give it on one line", k)
			case seen[k]:
				return fail(f.flag, "%s is given twice; keep one", k)
			}
			seen[k] = true
		}
		pr.Spec.Params = append(pr.Spec.Params, v1.Param{Name: f.param, Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: f.kvs}})
	}
	if b.NoPush {
		pr.Spec.Params = append(pr.Spec.Params, v1.Param{Name: paramPush, Value: str("false")})
	}
	if b.CABundle != "" {
		kind, name, _ := strings.Cut(b.CABundle, ":")
		if kind != "configmap" && kind != "secret" {
			return fail("ca-bundle", "%q is not configmap:NAME or secret:NAME (the ConfigMap or Secret holding the PEM certificates)", b.CABundle)
		}
		if msg := objectName(name); msg != "" {
			return fail("ca-bundle", "%q: the name %s; give configmap:NAME or secret:NAME", b.CABundle, msg)
		}
		w := v1.WorkspaceBinding{Name: WorkspaceCABundle, Secret: &corev1.SecretVolumeSource{SecretName: name}}
		if kind == "configmap" {
			w.Secret, w.ConfigMap = nil, &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}
		}
		pr.Spec.Workspaces = append(pr.Spec.Workspaces, w)
	}
	if b.BuildSecret != "" {
		if msg := objectName(b.BuildSecret); msg != "" {
			return fail("build-secret", "%q %s; give the name of a Secret whose keys become --secret id=KEY", b.BuildSecret, msg)
		}
		pr.Spec.Workspaces = append(pr.Spec.Workspaces, v1.WorkspaceBinding{
			Name:   WorkspaceBuildSecrets,
			Secret: &corev1.SecretVolumeSource{SecretName: b.BuildSecret},
		})
	}
	return nil
}

// objectName says why name cannot name a ConfigMap or Secret, or "".
func objectName(name string) string {
	if name == "" {
		return "is empty"
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return "is not a Kubernetes object name: " + strings.Join(msgs, "; ")
	}
	return ""
}
