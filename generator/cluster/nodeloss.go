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

// NodeLossName names the lost-node watcher's CronJob, Roles and policy.
const NodeLossName = "multiarch-node-loss"

// NodeLossReason is the reason the watcher gives the pods it fails, the
// one Kubernetes' node controller once gave pods of unresponsive nodes.
const NodeLossReason = "NodeLost"

// NodeLossSchedule is the watcher's CronJob schedule: every minute, the
// finest a CronJob has; nodeLoss.after is the knob that matters.
const NodeLossSchedule = "* * * * *"

// NodeLossWatcher is what ends runs whose pods sit on a lost node: a
// CronJob running node-loss.sh as its own ServiceAccount, which may get the
// nodes its pods are on (a ClusterRole; not list them), list pods and patch their status in the build
// namespace (a Role), and a policy that lets it only mark pods of this
// catalog's Pipelines, still going on a node, Failed for NodeLost.
type NodeLossWatcher struct {
	ServiceAccount     *corev1.ServiceAccount
	ClusterRole        *rbacv1.ClusterRole
	ClusterRoleBinding *rbacv1.ClusterRoleBinding
	Role               *rbacv1.Role
	RoleBinding        *rbacv1.RoleBinding
	Policy             *admissionv1.ValidatingAdmissionPolicy
	PolicyBinding      *admissionv1.ValidatingAdmissionPolicyBinding
	CronJob            *batchv1.CronJob
}

// NodeLossClusterName is the cluster-scoped objects' name, namespaced by name.
func NodeLossClusterName(cfg *config.Config) string {
	return NodeLossName + "-" + cfg.Example.Namespace
}

// NewNodeLossWatcher builds the watcher for cfg; nil unless nodeLoss.enabled.
func NewNodeLossWatcher(cfg *config.Config) *NodeLossWatcher {
	if !cfg.NodeLoss.Enabled {
		return nil
	}
	ns, sa := cfg.Example.Namespace, cfg.NodeLoss.ServiceAccount
	labels := map[string]string{"app.kubernetes.io/part-of": partOf}
	meta := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}}
	clusterName := NodeLossClusterName(cfg)
	w := &NodeLossWatcher{
		ServiceAccount: &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(sa, ns)},
		ClusterRole: &rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: meta(clusterName, ""),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}},
		},
		ClusterRoleBinding: &rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: meta(clusterName, ""),
			Subjects:   subjects,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterName},
		},
		Role: &rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: meta(NodeLossName, ns),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"get", "patch"}},
			},
		},
		RoleBinding: &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(NodeLossName, ns),
			Subjects:   subjects,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: NodeLossName},
		},
	}
	// A patch of pods/status is an UPDATE of the subresource. What RBAC
	// cannot say: only this catalog's pods, only bound ones still going,
	// only to Failed for NodeLost. That the node is lost it cannot check
	// either; the worst a stolen token does is fail builds of this catalog.
	w.Policy, w.PolicyBinding = ServiceAccountPolicy(clusterName, ns, sa, "the-node-loss-watcher", admissionv1.RuleWithOperations{
		Operations: []admissionv1.OperationType{admissionv1.Update},
		Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/status"}},
	}, []admissionv1.Validation{
		{
			Expression: "has(oldObject.metadata.labels) && 'tekton.dev/pipeline' in oldObject.metadata.labels && oldObject.metadata.labels['tekton.dev/pipeline'] in [" + quotedPipelines() + "]",
			Message:    "the node-loss watcher may fail only pods of " + strings.Join(Pipelines, " and "),
		},
		{
			Expression: "has(oldObject.spec.nodeName) && oldObject.status.phase in ['Pending', 'Running']",
			Message:    "the node-loss watcher may fail only pods on a node that have not finished",
		},
		{
			Expression: fmt.Sprintf("object.status.phase == 'Failed' && has(object.status.reason) && object.status.reason == '%s'", NodeLossReason),
			Message:    "the node-loss watcher may only mark pods Failed with reason " + NodeLossReason,
		},
	})
	w.CronJob = ScriptCronJob(cfg, NodeLossName, sa, NodeLossSchedule, "node-loss", scripts.NodeLoss, []corev1.EnvVar{
		{Name: "PIPELINES", Value: strings.Join(Pipelines, " ")},
		{Name: "AFTER", Value: fmt.Sprint(cfg.NodeLoss.AfterSeconds())},
	})
	return w
}
