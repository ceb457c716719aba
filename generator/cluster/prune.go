package cluster

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// PruneName names the pruner's CronJob, Role and policy.
const PruneName = "multiarch-prune"

// Pruner is what deletes finished runs: a CronJob running prune.sh as its
// own ServiceAccount, a Role to list and delete PipelineRuns in the build
// namespace, and a policy that lets it delete only finished runs of this
// catalog's Pipelines.
type Pruner struct {
	ServiceAccount *corev1.ServiceAccount
	Role           *rbacv1.Role
	RoleBinding    *rbacv1.RoleBinding
	Policy         *admissionv1.ValidatingAdmissionPolicy
	PolicyBinding  *admissionv1.ValidatingAdmissionPolicyBinding
	CronJob        *batchv1.CronJob
}

// Pipelines are the catalog's Pipelines, whose runs the pruner deletes and
// whose pods the node-loss watcher fails.
var Pipelines = []string{config.PipelineExplicit, config.PipelineMatrix}

// quotedPipelines is Pipelines as the items of a CEL list.
func quotedPipelines() string {
	q := make([]string, len(Pipelines))
	for i, p := range Pipelines {
		q[i] = "'" + p + "'"
	}
	return strings.Join(q, ", ")
}

// PrunePolicyName is the (cluster-scoped) policy's name, namespaced by name.
func PrunePolicyName(cfg *config.Config) string { return PruneName + "-" + cfg.Example.Namespace }

// NewPruner builds the pruner for cfg; nil unless prune.enabled.
func NewPruner(cfg *config.Config) *Pruner {
	if !cfg.Prune.Enabled {
		return nil
	}
	ns, sa := cfg.Example.Namespace, cfg.Prune.ServiceAccount
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": partOf}}
	}
	p := &Pruner{
		ServiceAccount: &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(sa)},
		Role: &rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: meta(PruneName),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelineruns"}, Verbs: []string{"get", "list", "delete"}}},
		},
		RoleBinding: &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(PruneName),
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: PruneName},
		},
	}
	p.Policy, p.PolicyBinding = PipelineRunPolicy(PrunePolicyName(cfg), ns, sa, "the-pruner", admissionv1.Delete, []admissionv1.Validation{
		{
			Expression: "has(oldObject.metadata.labels) && 'tekton.dev/pipeline' in oldObject.metadata.labels && oldObject.metadata.labels['tekton.dev/pipeline'] in [" + quotedPipelines() + "]",
			Message:    "the pruner may delete only runs of " + strings.Join(Pipelines, " and "),
		},
		{
			Expression: "has(oldObject.status) && has(oldObject.status.conditions) && oldObject.status.conditions.exists(c, c.type == 'Succeeded' && c.status != 'Unknown')",
			Message:    "the pruner may delete only finished runs",
		},
	})
	p.CronJob = ScriptCronJob(cfg, PruneName, sa, cfg.Prune.Schedule, "prune", scripts.Prune, []corev1.EnvVar{
		{Name: "PIPELINES", Value: strings.Join(Pipelines, " ")},
		{Name: "KEEP_SUCCEEDED", Value: fmt.Sprint(cfg.Prune.KeepSucceeded)},
		{Name: "KEEP_FAILED", Value: fmt.Sprint(cfg.Prune.KeepFailed)},
	})
	return p
}

// ScriptCronJob is a CronJob of the build namespace named name that runs
// script, in images.kubectl as ServiceAccount sa, in a container named
// container, with env and NAMESPACE (the build namespace): non-root, no
// capabilities, RuntimeDefault seccomp. A run still going when the next is
// due is replaced: a pod stuck on a lost node must not hold up the next.
func ScriptCronJob(cfg *config.Config, name, sa, schedule, container, script string, env []corev1.EnvVar) *batchv1.CronJob {
	labels := map[string]string{"app.kubernetes.io/part-of": partOf}
	env = append([]corev1.EnvVar{
		{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	}, env...)
	// kubectl's cache; the image's root is not this user's.
	env = append(env, corev1.EnvVar{Name: "HOME", Value: "/tmp"})
	return &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.Example.Namespace, Labels: labels},
		Spec: batchv1.CronJobSpec{
			Schedule:                   schedule,
			ConcurrencyPolicy:          batchv1.ReplaceConcurrent,
			SuccessfulJobsHistoryLimit: ptr(int32(1)),
			FailedJobsHistoryLimit:     ptr(int32(1)),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				BackoffLimit: ptr(int32(1)),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": partOf}},
					Spec: corev1.PodSpec{
						ServiceAccountName: sa,
						RestartPolicy:      corev1.RestartPolicyNever,
						SecurityContext: &corev1.PodSecurityContext{
							RunAsNonRoot:   ptr(true),
							RunAsUser:      ptr(int64(65532)),
							SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						Containers: []corev1.Container{{
							Name:    container,
							Image:   cfg.Images.Kubectl,
							Command: []string{"/bin/sh", "-c", script},
							Env:     env,
							SecurityContext: &corev1.SecurityContext{
								AllowPrivilegeEscalation: ptr(false),
								ReadOnlyRootFilesystem:   ptr(false),
								Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							},
						}},
					},
				},
			}},
		},
	}
}
