// Package config holds the generator's configuration: its schema, the embedded
// default, strict decoding and validation. Everything downstream trusts a
// Config that Load returned.
package config

import (
	"bytes"
	_ "embed"
	"time"

	corev1 "k8s.io/api/core/v1"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the commented default configuration, as `generator config` prints it.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole input of the generator.
type Config struct {
	Catalog       Catalog        `json:"catalog"`
	Architectures []Architecture `json:"architectures"`
	Images        Images         `json:"images"`
	Build         Build          `json:"build"`
	AppArmor      AppArmor       `json:"apparmor"`
	Seccomp       Seccomp        `json:"seccomp"`
	Cluster       Cluster        `json:"cluster"`
	Triggers      Triggers       `json:"triggers"`
	Prune         Prune          `json:"prune"`
	NodeLoss      NodeLoss       `json:"nodeLoss"`
	Example       Example        `json:"example"`
	References    References     `json:"references"`
	ArtifactHub   ArtifactHub    `json:"artifactHub"`
}

// Triggers is about building on git push.
type Triggers struct {
	Provider       string   `json:"provider"`
	Repositories   []string `json:"repositories"`
	Branches       []string `json:"branches"`
	Tags           bool     `json:"tags"`
	WebhookSecret  string   `json:"webhookSecret"`
	ServiceAccount string   `json:"serviceAccount"`
	IngressHost    string   `json:"ingressHost"`
	// Pipeline a push runs: PipelineExplicit or PipelineMatrix.
	Pipeline string `json:"pipeline"`
	// PullRequests starts build-only runs of pull requests.
	PullRequests PullRequests `json:"pullRequests"`
}

// The catalog's Pipelines, as triggers.pipeline names them (the pipeline
// package, which imports this one, has the same names).
const (
	PipelineExplicit = "multiarch-build"
	PipelineMatrix   = "multiarch-build-matrix"
)

// Providers.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
)

// Prune is about deleting finished runs of the catalog's Pipelines: a
// CronJob in the build namespace (examples/cluster/prune.yaml).
type Prune struct {
	Enabled bool `json:"enabled"`
	// Schedule is the CronJob's, in its syntax.
	Schedule string `json:"schedule"`
	// KeepSucceeded and KeepFailed are how many finished runs of each
	// outcome stay, per Pipeline and per pull request (branch and tag
	// builds count together).
	KeepSucceeded int `json:"keepSucceeded"`
	KeepFailed    int `json:"keepFailed"`
	// ServiceAccount is the pruner's own identity.
	ServiceAccount string `json:"serviceAccount"`
}

// NodeLoss is about runs whose pods sit on a lost node: a CronJob in the
// build namespace (examples/cluster/node-loss.yaml) fails those pods, so the
// runs end or their builds are retried, instead of waiting for the timeout.
type NodeLoss struct {
	Enabled bool `json:"enabled"`
	// After is how long a node must have been Ready=Unknown before its
	// pods are failed, as a Go duration ("2m").
	After string `json:"after"`
	// ServiceAccount is the watcher's own identity.
	ServiceAccount string `json:"serviceAccount"`
}

// AfterSeconds is After in whole seconds; Load has validated it.
func (n NodeLoss) AfterSeconds() int {
	d, _ := time.ParseDuration(n.After)
	return int(d / time.Second)
}

// Cluster is about the node-level prerequisites.
type Cluster struct {
	Namespace              string              `json:"namespace"`
	FuseDevicePluginImage  string              `json:"fuseDevicePluginImage"`
	FuseCapacity           int                 `json:"fuseCapacity"`
	NodeProfileLoaderImage string              `json:"nodeProfileLoaderImage"`
	Tolerations            []corev1.Toleration `json:"tolerations"`
}

// Catalog is about the published catalog itself.
type Catalog struct {
	Version string `json:"version"`
}

// Architecture is one native build.
type Architecture struct {
	Name         string              `json:"name"`
	Variant      string              `json:"variant,omitempty"`
	NodeSelector map[string]string   `json:"nodeSelector,omitempty"`
	Tolerations  []corev1.Toleration `json:"tolerations,omitempty"`
	// Resources, if set, overrides build.resources for this architecture's
	// builds, key by key (a Pi's memory limit beside a server's), through
	// the runs' taskRunSpecs[].stepSpecs.
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// Images are the step images; each must be pinned.
type Images struct {
	GitSync string `json:"gitSync"`
	Buildah string `json:"buildah"`
	// Syft and Crane are the build's sbom and sbom-attach steps' images:
	// each needs a shell at /busybox/sh (their public debug images).
	Syft  string `json:"syft"`
	Crane string `json:"crane"`
	// Kubectl is the image of the step that cancels superseded
	// pull-request runs: kubectl and a POSIX shell.
	Kubectl string `json:"kubectl"`
}

// Build holds the knobs of the buildah build.
type Build struct {
	FuseResource string `json:"fuseResource"`
	// Storage is how buildah stores layers: one of the Storage* modes.
	Storage        string `json:"storage"`
	EmptyDirMedium string `json:"emptyDirMedium"`
	PushRetries    int    `json:"pushRetries"`
	// Retries is each build task's retries in both Pipelines: Tekton runs a
	// failed build again in a new pod, on a node of the same architecture.
	Retries int `json:"retries"`
	// Resources are the build step's requests and limits (cpu, memory,
	// ephemeral-storage); the fuse device is added where storage needs it.
	Resources corev1.ResourceRequirements `json:"resources"`
	// Cache is the default of the build's CACHE param: buildah's layer cache
	// in the registry, one repository per architecture.
	Cache bool `json:"cache"`
	// SBOM is the default of the Tasks' and Pipelines' SBOM param: an SPDX
	// SBOM of each pushed image and of the index, attached to them. Off by
	// default: it cost 1.18x to 1.37x of a build (BenchmarkSBOM).
	SBOM bool `json:"sbom"`
	// UserNamespaces runs every pod of the catalog with hostUsers: false
	// (userns.go).
	UserNamespaces bool `json:"userNamespaces"`
}

// AppArmor names the profile the build step runs under and how it is requested.
type AppArmor struct {
	Profile string `json:"profile"`
	Mode    string `json:"mode"`
	// Architectures sets, by architecture ID (arm64, arm-v7), which profile
	// that architecture's builds ask for: one of the AppArmor settings. An
	// architecture not listed gets AppArmorLocalhost, or AppArmorNone in the
	// none mode.
	Architectures map[string]string `json:"architectures,omitempty"`
}

// Seccomp names the Localhost seccomp profile the buildah steps run under
// and where the kubelet looks for it on every node.
type Seccomp struct {
	// Profile is the step's localhostProfile: a path relative to KubeletDir.
	Profile    string `json:"profile"`
	KubeletDir string `json:"kubeletDir"`
}

// Example is what the example PipelineRun and the samples build.
type Example struct {
	Namespace      string `json:"namespace"`
	GitURL         string `json:"gitURL"`
	GitRef         string `json:"gitRef"`
	Image          string `json:"image"`
	RegistrySecret string `json:"registrySecret"`
	ServiceAccount string `json:"serviceAccount"`
}

// AppArmor modes.
const (
	AppArmorField      = "field"
	AppArmorAnnotation = "annotation"
	// AppArmorNone is for nodes whose kernel has no AppArmor: the kubelet
	// refuses every pod that asks for a profile there. It is also the
	// per-architecture setting for such nodes.
	AppArmorNone = "none"
)

// Per-architecture AppArmor settings (apparmor.architectures), besides
// AppArmorNone.
const (
	// AppArmorLocalhost is the generated profile (apparmor.profile), which
	// the node-profile loader loads on every node with AppArmor.
	AppArmorLocalhost = "localhost"
	// AppArmorRuntimeDefault is the container runtime's default profile: it
	// denies mount, which buildah needs for its storage and RUN steps (the
	// seed's finding), so builds with RUN steps fail under it.
	AppArmorRuntimeDefault = "runtime-default"
)

// AppArmorSettings lists the per-architecture settings, as messages name them.
var AppArmorSettings = []string{AppArmorLocalhost, AppArmorRuntimeDefault, AppArmorNone}

// Storage modes (build.storage, the build Task's STORAGE param).
const (
	// StorageAuto is the kernel's overlay where buildah can use it, else
	// fuse-overlayfs where the container has /dev/fuse, else vfs.
	StorageAuto = "auto"
	// StorageOverlay is the kernel's overlay, mounted in the user namespace
	// buildah creates (Linux >= 5.11): no /dev/fuse.
	StorageOverlay = "overlay"
	// StorageFuseOverlayfs is overlay through fuse-overlayfs: needs /dev/fuse,
	// which the Task then requests from the fuse device plugin.
	StorageFuseOverlayfs = "fuse-overlayfs"
	// StorageVFS copies every layer in full: slower, more disk, needs nothing.
	StorageVFS = "vfs"
)

// StorageModes lists the storage modes, as messages name them.
var StorageModes = []string{StorageAuto, StorageOverlay, StorageFuseOverlayfs, StorageVFS}

// NeedsFuse says whether the build needs /dev/fuse from the fuse device
// plugin: only fuse-overlayfs does. auto falls back to vfs where a pod has
// no /dev/fuse, so it must not keep builds off nodes without the plugin.
func (b Build) NeedsFuse() bool { return b.Storage == StorageFuseOverlayfs }

// AppArmorFor is the AppArmor setting of a's builds: apparmor.architectures'
// entry for a, else the mode's default.
func (c *Config) AppArmorFor(a Architecture) string {
	if s, ok := c.AppArmor.Architectures[a.ID()]; ok {
		return s
	}
	if c.AppArmor.Mode == AppArmorNone {
		return AppArmorNone
	}
	return AppArmorLocalhost
}

// AppArmorUniform is the one setting every architecture has, and false where
// they differ: then no Task step can name a profile (it would be every
// architecture's), and each run's pod template names it per architecture
// (PodAppArmor).
func (c *Config) AppArmorUniform() (string, bool) {
	if len(c.Architectures) == 0 {
		return c.AppArmorFor(Architecture{}), true
	}
	first := c.AppArmorFor(c.Architectures[0])
	for _, a := range c.Architectures[1:] {
		if c.AppArmorFor(a) != first {
			return "", false
		}
	}
	return first, true
}

// LoadsAppArmorProfile says whether any architecture's builds ask for the
// generated profile, so that the node-profile loader must load it.
func (c *Config) LoadsAppArmorProfile() bool {
	for _, a := range c.Architectures {
		if c.AppArmorFor(a) == AppArmorLocalhost {
			return true
		}
	}
	return false
}

// appArmorProfile is the securityContext.appArmorProfile of a setting; nil
// for none.
func (c *Config) appArmorProfile(setting string) *corev1.AppArmorProfile {
	switch setting {
	case AppArmorLocalhost:
		p := c.AppArmor.Profile
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: &p}
	case AppArmorRuntimeDefault:
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
	}
	return nil
}

// StepAppArmor is the buildah steps' own securityContext.appArmorProfile: in
// the field mode, where every architecture has the same setting; else nil.
func (c *Config) StepAppArmor() *corev1.AppArmorProfile {
	s, uniform := c.AppArmorUniform()
	if c.AppArmor.Mode != AppArmorField || !uniform {
		return nil
	}
	return c.appArmorProfile(s)
}

// AppArmorAnnotationValue is the pre-1.30 annotation's value for the buildah
// steps in the annotation mode ("localhost/<profile>" or "runtime/default");
// "" where none is asked for.
func (c *Config) AppArmorAnnotationValue() string {
	s, uniform := c.AppArmorUniform()
	if c.AppArmor.Mode != AppArmorAnnotation || !uniform {
		return ""
	}
	switch s {
	case AppArmorLocalhost:
		return "localhost/" + c.AppArmor.Profile
	case AppArmorRuntimeDefault:
		return "runtime/default"
	}
	return ""
}

// PodAppArmor is the pod-level securityContext.appArmorProfile of a's build
// pods, where the settings differ per architecture (the steps then name
// none, and the run's taskRunSpec or the arch-pinning policy names a's);
// nil where they do not, or a's is none.
func (c *Config) PodAppArmor(a Architecture) *corev1.AppArmorProfile {
	if _, uniform := c.AppArmorUniform(); uniform {
		return nil
	}
	return c.appArmorProfile(c.AppArmorFor(a))
}

// Platform is the OCI platform string buildah takes, e.g. linux/arm/v7.
func (a Architecture) Platform() string {
	if a.Variant != "" {
		return "linux/" + a.Name + "/" + a.Variant
	}
	return "linux/" + a.Name
}

// BuildResources is the build step's requests and limits for a: the
// architecture's resources over build.resources, key by key, as Tekton merges
// a stepSpec over the Task's step.
func (c *Config) BuildResources(a Architecture) corev1.ResourceRequirements {
	r := *c.Build.Resources.DeepCopy()
	if a.Resources == nil {
		return r
	}
	over := func(base *corev1.ResourceList, o corev1.ResourceList) {
		if len(o) == 0 {
			return
		}
		if *base == nil {
			*base = corev1.ResourceList{}
		}
		for k, v := range o {
			(*base)[k] = v
		}
	}
	over(&r.Requests, a.Resources.Requests)
	over(&r.Limits, a.Resources.Limits)
	return r
}

// ID is the architecture as it appears in task names and tags: arm64, arm-v7.
func (a Architecture) ID() string {
	if a.Variant != "" {
		return a.Name + "-" + a.Variant
	}
	return a.Name
}
