package cluster

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// ArchPolicyName names the MutatingAdmissionPolicy and its binding.
const ArchPolicyName = "multiarch-build-arch"

// ArchPolicyAPIVersion is the MutatingAdmissionPolicy API this project
// generates: v1beta1, served by Kubernetes 1.34 and 1.35 with the
// MutatingAdmissionPolicy feature gate and
// --runtime-config=admissionregistration.k8s.io/v1beta1=true, and still by
// 1.36, where the API is GA as v1 with the same fields (k8s.io/api v0.35,
// which this module pins, has no v1 types yet).
var ArchPolicyAPIVersion = admissionv1beta1.SchemeGroupVersion.String()

// platformRE is what the policy accepts as PLATFORM; anything else is left
// to the build step, which refuses it with its own message.
const platformRE = `^linux/[a-z0-9]+(/v[0-9]+)?$`

// ArchPolicy is the MutatingAdmissionPolicy that pins every pod of the
// catalog's build Task to a node of the platform that pod builds, whoever
// created the run (tkn, the Dashboard, kubectl without taskRunSpecs), and
// its binding.
//
// Which pods: those labelled tasks.BuildTaskLabel (Tekton copies the Task's
// labels to its TaskRuns and their pods) that have a step-build container
// with a PLATFORM env of the form linux/ARCH[/VARIANT] (Tekton has already
// substituted $(params.PLATFORM) there). Nothing else is touched.
//
// What: the configured platforms get kubernetes.io/arch plus their extra
// node labels and tolerations; an unlisted platform gets kubernetes.io/arch
// only (ARCH of its PLATFORM), so it waits for such a node rather than
// landing on the wrong one. A pod whose nodeSelector already names
// kubernetes.io/arch (taskRunSpecs, start, the Triggers template) is left as
// the run pinned it, and so is a pod with ALLOW_EMULATION "true", which asked
// to run anywhere.
func ArchPolicy(cfg *config.Config) (*admissionv1beta1.MutatingAdmissionPolicy, *admissionv1beta1.MutatingAdmissionPolicyBinding) {
	build := tasks.StepContainer(tasks.BuildStep)
	stepEnv := func(cond string) string {
		return fmt.Sprintf("object.spec.containers.exists(c, c.name == %s && has(c.env) && c.env.exists(e, %s))", quote(build), cond)
	}

	// The node selector: per configured platform, else the platform's ARCH.
	var sel strings.Builder
	for _, a := range cfg.Architectures {
		m := map[string]string{corev1.LabelArchStable: a.Name}
		for k, v := range a.NodeSelector {
			m[k] = v
		}
		fmt.Fprintf(&sel, "variables.platform == %s ? %s :\n", quote(a.Platform()), celMap(m))
	}
	fmt.Fprintf(&sel, "{%s: variables.platform.split(\"/\")[1]}", quote(corev1.LabelArchStable))

	// Tolerations are appended to the pod's own. Object.spec.tolerations
	// literals are only declared in mutation expressions, so the choice per
	// platform is made there, not in a variable.
	var tol strings.Builder
	for _, a := range cfg.Architectures {
		if len(a.Tolerations) == 0 {
			continue
		}
		fmt.Fprintf(&tol, "variables.platform == %s ? %s :\n", quote(a.Platform()), celTolerations(a.Tolerations))
	}
	tol.WriteString("[]")

	policy := podPolicy(ArchPolicyName, &metav1.LabelSelector{MatchLabels: map[string]string{tasks.BuildTaskLabel: tasks.BuildName}})
	policy.Spec.MatchConditions = []admissionv1beta1.MatchCondition{
		{Name: "builds-a-platform", Expression: stepEnv("e.name == \"PLATFORM\" && has(e.value) && e.value.matches(" + quote(platformRE) + ")")},
		{Name: "not-pinned-by-the-run", Expression: "!has(object.spec.nodeSelector) || !(" + quote(corev1.LabelArchStable) + " in object.spec.nodeSelector)"},
		{Name: "not-emulated", Expression: "!" + stepEnv("e.name == \"ALLOW_EMULATION\" && has(e.value) && e.value == \"true\"")},
	}
	policy.Spec.Variables = []admissionv1beta1.Variable{
		{Name: "platform", Expression: fmt.Sprintf("object.spec.containers.filter(c, c.name == %s)[0].env.filter(e, e.name == \"PLATFORM\")[0].value", quote(build))},
		{Name: "nodeSelector", Expression: sel.String()},
	}
	policy.Spec.Mutations = []admissionv1beta1.Mutation{
		// JSON patches, not an apply configuration: a pod's
		// nodeSelector and tolerations are atomic, which the API
		// server refuses to merge ("may not mutate atomic arrays,
		// maps or structs: .spec.nodeSelector, .spec.tolerations").
		{PatchType: admissionv1beta1.PatchTypeJSONPatch, JSONPatch: &admissionv1beta1.JSONPatch{Expression: "has(object.spec.nodeSelector) ?\n" +
			"variables.nodeSelector.map(k, JSONPatch{op: \"add\", path: \"/spec/nodeSelector/\" + jsonpatch.escapeKey(k), value: variables.nodeSelector[k]}) :\n" +
			"[JSONPatch{op: \"add\", path: \"/spec/nodeSelector\", value: variables.nodeSelector}]"}},
	}
	if tol.String() != "[]" {
		policy.Spec.Variables = append(policy.Spec.Variables, admissionv1beta1.Variable{Name: "hasTolerations", Expression: hasTolerations(cfg)})
		policy.Spec.Mutations = append(policy.Spec.Mutations, admissionv1beta1.Mutation{
			PatchType: admissionv1beta1.PatchTypeJSONPatch,
			JSONPatch: &admissionv1beta1.JSONPatch{Expression: "!variables.hasTolerations ? [] :\n" +
				"has(object.spec.tolerations) ?\n(" + tol.String() + ").map(t, JSONPatch{op: \"add\", path: \"/spec/tolerations/-\", value: t}) :\n" +
				"[JSONPatch{op: \"add\", path: \"/spec/tolerations\", value: " + tol.String() + "}]"},
		})
	}
	if m := appArmorMutation(cfg); m != nil {
		policy.Spec.Variables = append(policy.Spec.Variables, admissionv1beta1.Variable{Name: "hasAppArmor", Expression: m.has})
		policy.Spec.Mutations = append(policy.Spec.Mutations, admissionv1beta1.Mutation{
			PatchType: admissionv1beta1.PatchTypeJSONPatch,
			JSONPatch: &admissionv1beta1.JSONPatch{Expression: "!variables.hasAppArmor ? [] :\n" +
				"has(object.spec.securityContext) ?\n" +
				"[JSONPatch{op: \"add\", path: \"/spec/securityContext/appArmorProfile\", value: " + m.profile + "}] :\n" +
				"[JSONPatch{op: \"add\", path: \"/spec/securityContext\", value: Object.spec.securityContext{appArmorProfile: " + m.profile + "}}]"},
		})
	}
	return policy, policyBinding(ArchPolicyName)
}

// appArmorPatch is the policy's AppArmor mutation: has, whether the pod's
// platform gets a profile; profile, which (a CEL expression choosing by
// platform, read only where has is true).
type appArmorPatch struct{ has, profile string }

// appArmorMutation is the pod-level AppArmor profile of each configured
// platform, where the catalog's differ per architecture (the build steps
// then name none, and a run pinned by this policy would get none); nil
// where they do not. A platform whose setting is none gets nothing.
func appArmorMutation(cfg *config.Config) *appArmorPatch {
	var platforms, profiles []string
	for _, a := range cfg.Architectures {
		p := cfg.PodAppArmor(a)
		if p == nil {
			continue
		}
		platforms = append(platforms, quote(a.Platform()))
		f := []string{"type: " + quote(string(p.Type))}
		if p.LocalhostProfile != nil {
			f = append(f, "localhostProfile: "+quote(*p.LocalhostProfile))
		}
		profiles = append(profiles, "Object.spec.securityContext.appArmorProfile{"+strings.Join(f, ", ")+"}")
	}
	if len(platforms) == 0 {
		return nil
	}
	// The last platform's profile is the chain's else: has already said
	// the platform is one of these.
	var choice strings.Builder
	for i := range platforms[:len(platforms)-1] {
		fmt.Fprintf(&choice, "variables.platform == %s ? %s : ", platforms[i], profiles[i])
	}
	choice.WriteString(profiles[len(profiles)-1])
	return &appArmorPatch{
		has:     "variables.platform in [" + strings.Join(platforms, ", ") + "]",
		profile: "(" + choice.String() + ")",
	}
}

// podPolicy is a MutatingAdmissionPolicy of pods being created whose labels
// match selector, failing closed and run once; the caller adds its
// conditions, variables and mutations.
func podPolicy(name string, selector *metav1.LabelSelector) *admissionv1beta1.MutatingAdmissionPolicy {
	return &admissionv1beta1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: ArchPolicyAPIVersion, Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels(name)},
		Spec: admissionv1beta1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionv1beta1.MatchResources{
				ResourceRules: []admissionv1beta1.NamedRuleWithOperations{{
					RuleWithOperations: admissionv1beta1.RuleWithOperations{
						Operations: []admissionv1beta1.OperationType{admissionv1beta1.Create},
						Rule: admissionv1beta1.Rule{
							APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
						},
					},
				}},
				ObjectSelector: selector,
			},
			FailurePolicy:      ptr(admissionv1beta1.Fail),
			ReinvocationPolicy: admissionv1beta1.NeverReinvocationPolicy,
		},
	}
}

// policyBinding binds the policy of that name cluster-wide.
func policyBinding(name string) *admissionv1beta1.MutatingAdmissionPolicyBinding {
	return &admissionv1beta1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: ArchPolicyAPIVersion, Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels(name)},
		Spec:       admissionv1beta1.MutatingAdmissionPolicyBindingSpec{PolicyName: name},
	}
}

// hasTolerations is true for the platforms that have tolerations.
func hasTolerations(cfg *config.Config) string {
	var ps []string
	for _, a := range cfg.Architectures {
		if len(a.Tolerations) > 0 {
			ps = append(ps, quote(a.Platform()))
		}
	}
	return "variables.platform in [" + strings.Join(ps, ", ") + "]"
}

// quote is a CEL string literal; CEL's escapes are a superset of Go's.
func quote(s string) string { return strconv.Quote(s) }

func celMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, quote(k)+": "+quote(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func celTolerations(ts []corev1.Toleration) string {
	var items []string
	for _, t := range ts {
		var f []string
		if t.Key != "" {
			f = append(f, "key: "+quote(t.Key))
		}
		if t.Operator != "" {
			f = append(f, "operator: "+quote(string(t.Operator)))
		}
		if t.Value != "" {
			f = append(f, "value: "+quote(t.Value))
		}
		if t.Effect != "" {
			f = append(f, "effect: "+quote(string(t.Effect)))
		}
		if t.TolerationSeconds != nil {
			f = append(f, "tolerationSeconds: "+strconv.FormatInt(*t.TolerationSeconds, 10))
		}
		items = append(items, "Object.spec.tolerations{"+strings.Join(f, ", ")+"}")
	}
	return "[" + strings.Join(items, ", ") + "]"
}
