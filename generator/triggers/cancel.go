package triggers

import (
	"fmt"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/cluster"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// Labels of a pull request's runs: its number and the commit they build.
const (
	PullRequestLabel = "tekton-multiarch.dev/pull-request"
	CommitLabel      = "tekton-multiarch.dev/commit"
)

// Cancel is what cancels superseded pull-request runs: the trigger's
// binding and template, and the canceller's identity, Role and policy.
type Cancel struct {
	Binding        *triggersv1.TriggerBinding
	Template       *triggersv1.TriggerTemplate
	ServiceAccount *corev1.ServiceAccount
	Role           *rbacv1.Role
	RoleBinding    *rbacv1.RoleBinding
	Policy         *admissionv1.ValidatingAdmissionPolicy
	PolicyBinding  *admissionv1.ValidatingAdmissionPolicyBinding
}

// CancelName names the canceller's trigger objects, Role and policy.
const CancelName = "multiarch-cancel-superseded"

// keepCommitKey is the CEL overlay of the commit whose runs stay.
const keepCommitKey = "keep_commit"

// CancelTrigger is the EventListener trigger's name for superseding events.
func CancelTrigger(cfg *config.Config) string { return PullRequestTrigger(cfg) + "-superseded" }

// CancelFilter lets through the events that supersede a pull request's
// runs: new commits, a close or a merge, of a configured repository, forks
// included (cancelling builds nothing).
func CancelFilter(cfg *config.Config) string {
	repos := quoteAll(cfg.Triggers.Repositories)
	if cfg.Triggers.Provider == config.ProviderGitLab {
		return "body.object_kind == 'merge_request' && body.project.path_with_namespace in " + repos +
			" && ((body.object_attributes.action == 'update' && has(body.object_attributes.oldrev)) || body.object_attributes.action in ['close', 'merge'])"
	}
	return "body.repository.full_name in " + repos + " && body.action in ['synchronize', 'closed']"
}

// KeepCommit is the CEL of the commit whose runs stay: the new head, or
// none when the pull request closed or merged.
func KeepCommit(cfg *config.Config) string {
	if cfg.Triggers.Provider == config.ProviderGitLab {
		return "body.object_attributes.action in ['close', 'merge'] ? '' : body.object_attributes.last_commit.id"
	}
	return "body.action == 'closed' ? '' : body.pull_request.head.sha"
}

func cancelTrigger(cfg *config.Config) triggersv1.EventListenerTrigger {
	provider := providerInterceptor(cfg)
	for i, p := range provider.Params {
		if p.Name == "eventTypes" {
			provider.Params[i].Value = jsonValue(PullRequestEventTypes(cfg))
		}
	}
	return triggersv1.EventListenerTrigger{
		Name: CancelTrigger(cfg),
		Interceptors: []*triggersv1.EventInterceptor{provider, {
			Name: ptr("only-superseding-events"),
			Ref:  triggersv1.InterceptorRef{Name: "cel", Kind: triggersv1.ClusterInterceptorKind},
			Params: []triggersv1.InterceptorParams{
				{Name: "filter", Value: jsonValue(CancelFilter(cfg) + " && " + DeliveryCheck(cfg))},
				{Name: "overlays", Value: jsonValue([]map[string]string{
					{"key": deliveryKey, "expression": Delivery(cfg)},
					{"key": keepCommitKey, "expression": KeepCommit(cfg)},
				})},
			},
		}},
		Bindings: []*triggersv1.EventListenerBinding{{Ref: CancelName, Kind: triggersv1.NamespacedTriggerBindingKind}},
		Template: &triggersv1.EventListenerTemplate{Ref: ptr(CancelName)},
	}
}

func cancelBinding(cfg *config.Config) *triggersv1.TriggerBinding {
	params := []triggersv1.Param{
		{Name: "repository", Value: "$(body.repository.full_name)"},
		{Name: "pull-request", Value: "$(body.number)"},
	}
	if cfg.Triggers.Provider == config.ProviderGitLab {
		params = []triggersv1.Param{
			{Name: "repository", Value: "$(body.project.path_with_namespace)"},
			{Name: "pull-request", Value: "$(body.object_attributes.iid)"},
		}
	}
	params = append(params,
		triggersv1.Param{Name: "keep-commit", Value: "$(extensions." + keepCommitKey + ")"},
		triggersv1.Param{Name: deliveryParam, Value: "$(extensions." + deliveryKey + ")"})
	return newBinding(cfg, CancelName, params)
}

func cancelTemplate(cfg *config.Config) (*triggersv1.TriggerTemplate, error) {
	return newTemplate(cfg, CancelName, cancelRun(cfg), []triggersv1.ParamSpec{
		{Name: "repository", Description: "The repository the pull request is for."},
		{Name: "pull-request", Description: "The pull request's number."},
		{Name: "keep-commit", Description: "The pull request's new head, whose runs stay; empty when it was closed or merged."},
		deliveryParamSpec,
	})
}

// cancelRun is the TaskRun that cancels: its own ServiceAccount, the only
// one with API access; the build pods keep none.
func cancelRun(cfg *config.Config) *v1.TaskRun {
	str := func(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }
	env := func(name string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: "$(params." + name + ")"} }
	return &v1.TaskRun{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "TaskRun"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   "multiarch-cancel-" + deliveryName,
			Labels: labels(),
		},
		Spec: v1.TaskRunSpec{
			ServiceAccountName: cfg.Triggers.PullRequests.CancelServiceAccount,
			Params: v1.Params{
				{Name: "REPOSITORY", Value: str("$(tt.params.repository)")},
				{Name: "PULL_REQUEST", Value: str("$(tt.params.pull-request)")},
				{Name: "KEEP_COMMIT", Value: str("$(tt.params.keep-commit)")},
			},
			TaskSpec: &v1.TaskSpec{
				Description: "Cancels a pull request's runs in progress that new commits, a close or a merge superseded.",
				Params: v1.ParamSpecs{
					{Name: "REPOSITORY", Type: v1.ParamTypeString},
					{Name: "PULL_REQUEST", Type: v1.ParamTypeString},
					{Name: "KEEP_COMMIT", Type: v1.ParamTypeString},
				},
				Steps: []v1.Step{{
					Name:  "cancel",
					Image: cfg.Images.Kubectl,
					Env: []corev1.EnvVar{
						env("REPOSITORY"), env("PULL_REQUEST"), env("KEEP_COMMIT"),
						{Name: "NAMESPACE", Value: "$(context.taskRun.namespace)"},
						// kubectl's cache; the image's root is not this user's.
						{Name: "HOME", Value: "/tmp"},
					},
					Script: scripts.CancelSuperseded,
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: ptr(false),
						RunAsNonRoot:             ptr(true),
						RunAsUser:                ptr(int64(65532)),
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
				}},
			},
		},
	}
}

func cancelServiceAccount(cfg *config.Config) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: objectMeta(cfg, cfg.Triggers.PullRequests.CancelServiceAccount),
	}
}

// cancelRole is what cancelling needs: list the runs, patch one. RBAC
// cannot narrow it to this catalog's pull-request runs; cancelPolicy does.
func cancelRole(cfg *config.Config) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: objectMeta(cfg, CancelName),
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"tekton.dev"},
			Resources: []string{"pipelineruns"},
			Verbs:     []string{"get", "list", "patch"},
		}},
	}
}

func cancelRoleBinding(cfg *config.Config) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: objectMeta(cfg, CancelName),
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: cfg.Triggers.PullRequests.CancelServiceAccount, Namespace: cfg.Example.Namespace}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: CancelName},
	}
}

// CancelPolicyName is the admission policy's (cluster-scoped) name: the
// namespace in it keeps catalogs of different namespaces apart.
func CancelPolicyName(cfg *config.Config) string { return CancelName + "-" + cfg.Example.Namespace }

// cancelPolicy narrows the canceller's patch to what cancelling is: a
// pull-request run of this catalog, whose spec.status becomes Cancelled and
// nothing else changes; and binds it to the build namespace.
func cancelPolicy(cfg *config.Config) (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	unchanged := func(field string, keys ...string) string {
		var parts []string
		for _, k := range keys {
			// has(), not in: the CRD's schema may make spec an object type.
			parts = append(parts, fmt.Sprintf("has(object.%[1]s.%[2]s) == has(oldObject.%[1]s.%[2]s) && (!has(object.%[1]s.%[2]s) || object.%[1]s.%[2]s == oldObject.%[1]s.%[2]s)", field, k))
		}
		return strings.Join(parts, " && ")
	}
	return cluster.PipelineRunPolicy(CancelPolicyName(cfg), cfg.Example.Namespace, cfg.Triggers.PullRequests.CancelServiceAccount, "the-canceller", admissionv1.Update,
		[]admissionv1.Validation{
			{
				Expression: "has(oldObject.metadata.labels) && '" + PullRequestLabel + "' in oldObject.metadata.labels",
				Message:    "the canceller may cancel only pull-request runs of tekton-multiarch (label " + PullRequestLabel + "), never a branch or tag build",
			},
			{
				Expression: "has(object.spec.status) && object.spec.status == 'Cancelled' && " +
					unchanged("spec", "params", "pipelineRef", "pipelineSpec", "taskRunSpecs", "taskRunTemplate", "workspaces", "timeouts") +
					" && object.metadata.labels == oldObject.metadata.labels",
				Message: "the canceller may only set spec.status to Cancelled",
			},
		})
}
