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
	policy := podPolicy(UsernsPolicyName, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: tasks.BuildTaskLabel, Operator: metav1.LabelSelectorOpIn,
		Values: []string{tasks.GitSyncName, tasks.BuildName, tasks.ManifestName},
	}}})
	policy.Spec.MatchConditions = []admissionv1beta1.MatchCondition{
		{Name: "host-users-unset", Expression: "!has(object.spec.hostUsers)"},
	}
	policy.Spec.Mutations = []admissionv1beta1.Mutation{
		{PatchType: admissionv1beta1.PatchTypeJSONPatch, JSONPatch: &admissionv1beta1.JSONPatch{
			Expression: `[JSONPatch{op: "add", path: "/spec/hostUsers", value: false}]`,
		}},
	}
	return policy, policyBinding(UsernsPolicyName)
}
