// Package cluster builds what a cluster needs before its first build: the
// fuse device plugin, the AppArmor profile and two ways to put it on every
// node, and the build identity (namespace, ServiceAccount, RBAC, the shape of
// the registry Secret). All typed k8s.io/api objects.
package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	FusePluginName     = "fuse-device-plugin"
	LoaderName         = "apparmor-loader"
	StarterRole        = "multiarch-build-starter"
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

// Loader is the DaemonSet that writes the profile under /etc/apparmor.d on
// every node and loads it, and the ConfigMap it reads the profile from.
func Loader(cfg *config.Config, profile string) (*corev1.ConfigMap, *appsv1.DaemonSet) {
	name := cfg.AppArmor.Profile
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: LoaderName, Namespace: cfg.Cluster.Namespace, Labels: labels(LoaderName)},
		Data:       map[string]string{name: profile, "load.sh": scripts.LoadAppArmor},
	}
	sum := sha256.Sum256([]byte(profile + scripts.LoadAppArmor))
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
					// A changed profile or script rolls the pods, which reload it.
					Annotations: map[string]string{"tekton-multiarch.dev/profile-sha256": hex.EncodeToString(sum[:])},
				},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{corev1.LabelOSStable: "linux"},
					Tolerations:  cfg.Cluster.Tolerations,
					InitContainers: []corev1.Container{{
						Name:    "load",
						Image:   cfg.Cluster.AppArmorLoaderImage,
						Command: []string{"/bin/sh", "/loader/load.sh"},
						Env: []corev1.EnvVar{
							{Name: "PROFILE_NAME", Value: name},
							{Name: "PROFILE_FILE", Value: "/loader/" + name},
							{Name: "HOST_ROOT", Value: "/host"},
						},
						// The one container in this project with host access, and
						// only the part it needs: load policy (MAC_ADMIN) with the
						// node's parser (SYS_CHROOT), unconfined because the
						// runtime's default profile forbids writing securityfs.
						// Not privileged: no devices, no other capability.
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                ptr(int64(0)),
							AllowPrivilegeEscalation: ptr(false),
							ReadOnlyRootFilesystem:   ptr(true),
							Capabilities: &corev1.Capabilities{
								Drop: []corev1.Capability{"ALL"},
								Add:  []corev1.Capability{"MAC_ADMIN", "SYS_CHROOT"},
							},
							AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "loader", MountPath: "/loader", ReadOnly: true},
							{Name: "host", MountPath: "/host", ReadOnly: true},
							{Name: "apparmor-d", MountPath: "/host/etc/apparmor.d"},
						},
					}},
					// Once loaded, nothing more to do: sleep with no privilege at
					// all, so the DaemonSet stays Ready and reloads on change.
					Containers: []corev1.Container{{
						Name:    "sleep",
						Image:   cfg.Cluster.AppArmorLoaderImage,
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
					Volumes: []corev1.Volume{
						{Name: "loader", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: LoaderName}}}},
						{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: ptr(corev1.HostPathDirectory)}}},
						{Name: "apparmor-d", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/apparmor.d", Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
					},
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
