// Package cluster builds what a cluster needs before its first build: the
// fuse device plugin, the build steps' seccomp and AppArmor profiles and the
// ways to put them on every node, and the build identity (namespace,
// ServiceAccount, RBAC, the shape of the registry Secret). All typed
// k8s.io/api objects.
package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// Names of the generated objects.
const (
	FusePluginName = "fuse-device-plugin"
	LoaderName     = "node-profile-loader"
	StarterRole    = "multiarch-build-starter"
	// PolicyReaderRole lets a starter see the arch-pinning policy, which
	// is cluster-scoped: no namespace's Role can grant that.
	PolicyReaderRole   = "multiarch-build-arch-policy-reader"
	partOf             = "tekton-multiarch"
	kubeletPluginsPath = "/var/lib/kubelet/device-plugins"
)

func labels(name string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": partOf}
}

func ptr[T any](v T) *T { return &v }

func dropAll() *corev1.Capabilities {
	return &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
}

// FuseDevicePlugin advertises /dev/fuse on every node as the configured
// extended resource, so build pods get the device through a resource limit
// instead of a privileged container or a host path.
func FuseDevicePlugin(cfg *config.Config) (*appsv1.DaemonSet, error) {
	domain, name, ok := strings.Cut(cfg.Build.FuseResource, "/")
	if !ok {
		return nil, fmt.Errorf("build.fuseResource %q has no domain", cfg.Build.FuseResource)
	}
	device, err := json.Marshal(map[string]any{
		"name": name,
		"groups": []any{map[string]any{
			"count": cfg.Cluster.FuseCapacity,
			"paths": []any{map[string]string{"path": "/dev/fuse"}},
		}},
	})
	if err != nil {
		return nil, err
	}
	l := labels(FusePluginName)
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: FusePluginName, Namespace: cfg.Cluster.Namespace, Labels: l},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": FusePluginName}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: l},
				Spec: corev1.PodSpec{
					PriorityClassName: "system-node-critical",
					NodeSelector:      map[string]string{corev1.LabelOSStable: "linux"},
					Tolerations:       cfg.Cluster.Tolerations,
					Containers: []corev1.Container{{
						Name:  FusePluginName,
						Image: cfg.Cluster.FuseDevicePluginImage,
						Args:  []string{"--domain=" + domain, "--device=" + string(device)},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("20Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")},
						},
						// Root only to own its socket in the kubelet's plugin
						// directory; no capability, no privilege escalation.
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                ptr(int64(0)),
							AllowPrivilegeEscalation: ptr(false),
							ReadOnlyRootFilesystem:   ptr(true),
							Capabilities:             dropAll(),
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "device-plugins", MountPath: kubeletPluginsPath},
							// Only to see that the node has the device; the kubelet hands
							// it to build pods.
							{Name: "dev-fuse", MountPath: "/dev/fuse", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "device-plugins", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: kubeletPluginsPath, Type: ptr(corev1.HostPathDirectory)}}},
						{Name: "dev-fuse", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/fuse", Type: ptr(corev1.HostPathCharDev)}}},
					},
				},
			},
		},
	}, nil
}

// The node-profile loader's ConfigMap keys and mount points.
const (
	loaderScriptKey  = "load.sh"
	loaderSeccompKey = "seccomp.json" // ConfigMap keys cannot hold the profile's '/'
	loaderMount      = "/loader"
	seccompMount     = "/kubelet-seccomp"
	hostMount        = "/host"
)

// Loader is the DaemonSet that installs the node profiles on every node, and
// the ConfigMap it reads them from: the build steps' seccomp profile, into the
// kubelet's seccomp directory, and, unless apparmor.mode is none, the
// AppArmor profile, written under /etc/apparmor.d and loaded with the node's
// own apparmor_parser. apparmor is the AppArmor profile text, "" for none.
func Loader(cfg *config.Config, seccompJSON []byte, apparmor string) (*corev1.ConfigMap, *appsv1.DaemonSet) {
	withAppArmor := cfg.LoadsAppArmorProfile()
	data := map[string]string{loaderScriptKey: scripts.LoadNodeProfiles, loaderSeccompKey: string(seccompJSON)}
	env := []corev1.EnvVar{
		{Name: "SECCOMP_PROFILE", Value: cfg.Seccomp.Profile},
		{Name: "SECCOMP_FILE", Value: loaderMount + "/" + loaderSeccompKey},
		{Name: "SECCOMP_DIR", Value: seccompMount},
		{Name: "SECCOMP_NODE_DIR", Value: cfg.Seccomp.KubeletDir},
	}
	mounts := []corev1.VolumeMount{
		{Name: "loader", MountPath: loaderMount, ReadOnly: true},
		{Name: "kubelet-seccomp", MountPath: seccompMount},
	}
	volumes := []corev1.Volume{
		{Name: "loader", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: LoaderName}}}},
		{Name: "kubelet-seccomp", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: cfg.Seccomp.KubeletDir, Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
	}
	// Root, to write the root-owned kubelet directory it owns; no capability.
	sc := &corev1.SecurityContext{
		RunAsUser:                ptr(int64(0)),
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		Capabilities:             dropAll(),
	}
	if withAppArmor {
		name := cfg.AppArmor.Profile
		data[name] = apparmor
		env = append(env,
			corev1.EnvVar{Name: "APPARMOR_PROFILE", Value: name},
			corev1.EnvVar{Name: "APPARMOR_FILE", Value: loaderMount + "/" + name},
			corev1.EnvVar{Name: "HOST_ROOT", Value: hostMount},
		)
		mounts = append(mounts,
			corev1.VolumeMount{Name: "host", MountPath: hostMount, ReadOnly: true},
			corev1.VolumeMount{Name: "apparmor-d", MountPath: hostMount + "/etc/apparmor.d"},
		)
		volumes = append(volumes,
			corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: ptr(corev1.HostPathDirectory)}}},
			corev1.Volume{Name: "apparmor-d", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/apparmor.d", Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
		)
		// Loading policy takes MAC_ADMIN, the node's parser SYS_CHROOT, and
		// writing securityfs no AppArmor confinement (the runtime's default
		// profile forbids it). Still not privileged: no devices, no other
		// capability.
		sc.Capabilities.Add = []corev1.Capability{"MAC_ADMIN", "SYS_CHROOT"}
		sc.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: LoaderName, Namespace: cfg.Cluster.Namespace, Labels: labels(LoaderName)},
		Data:       data,
	}
	sum := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(sum, "%s\x00%s\x00", k, data[k])
	}
	l := labels(LoaderName)
	ds := &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: LoaderName, Namespace: cfg.Cluster.Namespace, Labels: l},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": LoaderName}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromString("100%"))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: l,
					// A changed profile or script rolls the pods, which reinstall them.
					Annotations: map[string]string{"tekton-multiarch.dev/profiles-sha256": hex.EncodeToString(sum.Sum(nil))},
				},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{corev1.LabelOSStable: "linux"},
					Tolerations:  cfg.Cluster.Tolerations,
					// The one container in this project with host access, and
					// only the part it needs.
					InitContainers: []corev1.Container{{
						Name:            "load",
						Image:           cfg.Cluster.NodeProfileLoaderImage,
						Command:         []string{"/bin/sh", loaderMount + "/" + loaderScriptKey},
						Env:             env,
						SecurityContext: sc,
						VolumeMounts:    mounts,
					}},
					// Once installed, nothing more to do: sleep with no privilege
					// at all, so the DaemonSet stays Ready and reinstalls on change.
					Containers: []corev1.Container{{
						Name:    "sleep",
						Image:   cfg.Cluster.NodeProfileLoaderImage,
						Command: []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("4Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                ptr(int64(65534)),
							RunAsNonRoot:             ptr(true),
							AllowPrivilegeEscalation: ptr(false),
							ReadOnlyRootFilesystem:   ptr(true),
							Capabilities:             dropAll(),
						},
					}},
					Volumes: volumes,
				},
			},
		},
	}
	return cm, ds
}

// Identity is the namespace builds run in (Pod Security "baseline"
// enforced: the builds need no privilege), their ServiceAccount (no API
// access, no token) and a Role for whoever starts builds.
type Identity struct {
	Namespace      *corev1.Namespace // nil for "default", which is not ours to label
	ServiceAccount *corev1.ServiceAccount
	StarterRole    *rbacv1.Role
	// PolicyReader lets whoever starts builds read the arch-pinning
	// policy and its binding, by name and nothing else: start checks
	// that they are there before it runs the matrix Pipeline.
	PolicyReader   *rbacv1.ClusterRole
	RegistrySecret *corev1.Secret // a shape to fill in, never applied as is
}

// NewIdentity builds the identity objects for cfg.Example.
func NewIdentity(cfg *config.Config) Identity {
	ns := cfg.Example.Namespace
	var id Identity
	if ns != "default" {
		id.Namespace = &corev1.Namespace{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
				"app.kubernetes.io/part-of":                  partOf,
				"pod-security.kubernetes.io/enforce":         "baseline",
				"pod-security.kubernetes.io/enforce-version": "latest",
				"pod-security.kubernetes.io/warn":            "baseline",
			}},
		}
	}
	if cfg.Example.ServiceAccount != "" {
		id.ServiceAccount = &corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Name: cfg.Example.ServiceAccount, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": partOf}},
			// Build steps never call the API: Tekton reads results from
			// termination messages.
			AutomountServiceAccountToken: ptr(false),
		}
	}
	id.StarterRole = &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{Name: StarterRole, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": partOf}},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelineruns"}, Verbs: []string{"create", "get", "list", "watch", "patch", "delete"}},
			{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelines", "tasks", "taskruns"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	id.PolicyReader = &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: PolicyReaderRole, Labels: map[string]string{"app.kubernetes.io/part-of": partOf}},
		Rules: []rbacv1.PolicyRule{{
			APIGroups:     []string{"admissionregistration.k8s.io"},
			Resources:     []string{"mutatingadmissionpolicies", "mutatingadmissionpolicybindings"},
			ResourceNames: []string{ArchPolicyName},
			Verbs:         []string{"get"},
		}},
	}
	if cfg.Example.RegistrySecret != "" {
		id.RegistrySecret = &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: cfg.Example.RegistrySecret, Namespace: ns},
			Type:       corev1.SecretTypeDockerConfigJson,
			StringData: map[string]string{
				corev1.DockerConfigJsonKey: fmt.Sprintf(`{"auths":{%q:{"auth":"<base64 of USER:TOKEN>"}}}`, RegistryHost(cfg.Example.Image)),
			},
		}
	}
	return id
}

// RegistryHost is the registry part of an image reference, as docker config
// files key it.
func RegistryHost(image string) string {
	first, _, ok := strings.Cut(image, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "https://index.docker.io/v1/"
}

// SPOAPIVersion is the security-profiles-operator API that carries raw policies.
const SPOAPIVersion = "security-profiles-operator.x-k8s.io/v1alpha1"

// AppArmorProfile is the security-profiles-operator object this project
// writes. The operator's Go module pins Kubernetes libraries of its own, so
// the few fields are declared here.
type AppArmorProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AppArmorProfileSpec `json:"spec"`
}

// AppArmorProfileSpec holds the raw policy.
type AppArmorProfileSpec struct {
	Policy string `json:"policy"`
}

// SPONamespace is where the security-profiles-operator's namespaced
// AppArmorProfiles live by default.
const SPONamespace = "security-profiles-operator"

// OperatorProfile has the security-profiles-operator install the profile on
// every node. Only its releases up to v0.8.4 take a raw spec.policy (a
// namespaced object, loaded under metadata.name on every node); from v0.9.0
// the object is cluster-scoped with structured allow-lists that have no mount
// rule, so they cannot carry this profile.
func OperatorProfile(cfg *config.Config, profile string) *AppArmorProfile {
	return &AppArmorProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: SPOAPIVersion, Kind: "AppArmorProfile"},
		ObjectMeta: metav1.ObjectMeta{Name: cfg.AppArmor.Profile, Namespace: SPONamespace, Labels: map[string]string{"app.kubernetes.io/part-of": partOf}},
		Spec:       AppArmorProfileSpec{Policy: profile},
	}
}
