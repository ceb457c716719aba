package cluster

import (
	admissionv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// UsernsPolicyName names the user-namespace MutatingAdmissionPolicy and its
// binding.
const UsernsPolicyName = "multiarch-build-userns"

// UsernsPolicy is, with build.userNamespaces, the MutatingAdmissionPolicy
// that gives every pod of the catalog's Tasks spec.hostUsers: false however
// the run was started (tkn's one --pod-template, the Dashboard, a
// PipelineRun without a pod template), and its binding; nil, nil without.
// A pod that says hostUsers itself is left as it is: true is a run's way
// onto nodes whose runtime has no user namespaces. The arch-pinning policy
// cannot do this: it matches build pods the run has not pinned only.
func UsernsPolicy(cfg *config.Config) (*admissionv1beta1.MutatingAdmissionPolicy, *admissionv1beta1.MutatingAdmissionPolicyBinding) {
	if !cfg.Build.UserNamespaces {
		return nil, nil
	}
	policy := &admissionv1beta1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: ArchPolicyAPIVersion, Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: UsernsPolicyName, Labels: labels(UsernsPolicyName)},
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
				ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: tasks.BuildTaskLabel, Operator: metav1.LabelSelectorOpIn,
					Values: []string{tasks.GitSyncName, tasks.BuildName, tasks.ManifestName},
				}}},
			},
			MatchConditions: []admissionv1beta1.MatchCondition{
				{Name: "host-users-unset", Expression: "!has(object.spec.hostUsers)"},
			},
			Mutations: []admissionv1beta1.Mutation{
				{PatchType: admissionv1beta1.PatchTypeJSONPatch, JSONPatch: &admissionv1beta1.JSONPatch{
					Expression: `[JSONPatch{op: "add", path: "/spec/hostUsers", value: false}]`,
				}},
			},
			FailurePolicy:      ptr(admissionv1beta1.Fail),
			ReinvocationPolicy: admissionv1beta1.NeverReinvocationPolicy,
		},
	}
	binding := &admissionv1beta1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: ArchPolicyAPIVersion, Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: UsernsPolicyName, Labels: labels(UsernsPolicyName)},
		Spec:       admissionv1beta1.MutatingAdmissionPolicyBindingSpec{PolicyName: UsernsPolicyName},
	}
	return policy, binding
}
