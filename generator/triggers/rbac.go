package triggers

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

func serviceAccount(cfg *config.Config) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: objectMeta(cfg, cfg.Triggers.ServiceAccount),
	}
}

func listenerSubjects(cfg *config.Config) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: cfg.Triggers.ServiceAccount, Namespace: cfg.Example.Namespace}}
}

// roleBinding and clusterRoleBinding bind the roles the Triggers installation
// ships for EventListeners to the listener, as its documentation prescribes.
func roleBinding(cfg *config.Config) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: objectMeta(cfg, cfg.Triggers.ServiceAccount+"-eventlistener"),
		Subjects:   listenerSubjects(cfg),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tekton-triggers-eventlistener-roles"},
	}
}

func clusterRoleBinding(cfg *config.Config) *rbacv1.ClusterRoleBinding {
	ns, sa := cfg.Example.Namespace, cfg.Triggers.ServiceAccount
	return &rbacv1.ClusterRoleBinding{
		TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		// Cluster-scoped: the namespace in the name keeps listeners of
		// different namespaces from sharing one binding.
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + sa + "-eventlistener", Labels: labels()},
		Subjects:   listenerSubjects(cfg),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tekton-triggers-eventlistener-clusterroles"},
	}
}
