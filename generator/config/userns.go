package config

// User namespaces (build.userNamespaces): every pod of the catalog's Tasks
// runs with hostUsers: false, so that root in the pod (the build step's
// user) is an unprivileged UID range on the node.

// UserNamespacesRequirements is what a node needs to run a pod with
// hostUsers: false, as messages and the README name it.
const UserNamespacesRequirements = "Kubernetes >= 1.33 (UserNamespacesSupport, beta and on by default), " +
	"containerd >= 2.0 or CRI-O >= 1.25, runc >= 1.2 or crun >= 1.9, Linux >= 6.3 with idmapped mounts on the kubelet's filesystems"

// HostUsers is the pods' spec.hostUsers: false with user namespaces, else
// nil (the field left out, as Kubernetes' default, the node's user
// namespace, is then meant).
func (b Build) HostUsers() *bool {
	if !b.UserNamespaces {
		return nil
	}
	f := false
	return &f
}
