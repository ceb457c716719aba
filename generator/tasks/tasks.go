// Package tasks builds the catalog's Tekton Tasks as typed v1 objects: the
// git-sync clone, the per-architecture buildah build and the manifest fan-in.
package tasks

import (
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// Task names, as they are installed and referenced.
const (
	GitSyncName  = "git-sync"
	BuildName    = "buildah-build"
	ManifestName = "buildah-manifest"
)

// BuildTaskLabel, with the value BuildName, marks the build Task (and with
// its own name every other Task of the catalog). Tekton copies a Task's
// labels to its TaskRuns and their pods, which is how the cluster's
// admission policies tell this catalog's pods (the user-namespace policy)
// and its build pods (arch pinning) from every other pod, whatever started
// the run.
const BuildTaskLabel = "tekton-multiarch.dev/task"

// Step names. Tekton names a step's container step-<name>, which the
// pre-1.30 AppArmor annotation must spell out.
const (
	CloneStep    = "clone"
	BuildStep    = "build"
	ManifestStep = "manifest"
)

// Workspace names.
const (
	WorkspaceOutput         = "output"
	WorkspaceDockerConfig   = "dockerconfig"
	WorkspaceGitCredentials = "git-credentials"
)

const (
	sourceVolume     = "source"
	sourceMount      = "/source"
	sourceRoot       = sourceMount + "/repo"
	containersVolume = "containers"
	containersMount  = "/var/lib/containers"
	// SourceLink is the link git-sync points at the checked-out commit.
	SourceLink = "checkout"
)

// AppArmorAnnotationPrefix is the pre-Kubernetes-1.30 way to name a
// container's AppArmor profile; the key ends in the container's name.
const AppArmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/"

// MinPipelinesVersion is the oldest Tekton Pipelines release that runs what
// we generate for cfg. The annotation and none modes need the tekton.dev/v1
// API with taskRunSpecs pod templates, Task volumes and step
// computeResources (first served in v0.43.0; optional-workspace variables
// date from v0.17.0; securityContext.seccompProfile is in k8s.io/api since
// v0.19, older than any of these). The
// securityContext.appArmorProfile field needs a release built against
// k8s.io/api >= 0.30, or Tekton does not know the field: v0.61 to v0.68 pin
// k8s.io/api v0.29, v0.69.0 is the first to pin v0.31.
func MinPipelinesVersion(cfg *config.Config) string {
	if cfg.AppArmor.Mode == config.AppArmorField {
		return minVersionAppArmorField
	}
	return minVersionV1
}

var (
	minVersionV1            = "0.43.0"
	minVersionAppArmorField = "0.69.0"
)

// Platforms is the tekton.dev/platforms annotation: the configured platforms.
func Platforms(cfg *config.Config) string {
	ps := make([]string, 0, len(cfg.Architectures))
	for _, a := range cfg.Architectures {
		ps = append(ps, a.Platform())
	}
	return strings.Join(ps, ",")
}

func meta(cfg *config.Config, name, displayName, tags string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			"app.kubernetes.io/version": cfg.Catalog.Version,
			BuildTaskLabel:              name,
		},
		Annotations: map[string]string{
			"tekton.dev/pipelines.minVersion": MinPipelinesVersion(cfg),
			"tekton.dev/platforms":            Platforms(cfg),
			"tekton.dev/categories":           "Image Build",
			"tekton.dev/tags":                 tags,
			"tekton.dev/displayName":          displayName,
		},
	}
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: kind}
}

func env(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func param(name string) string { return "$(params." + name + ")" }

// StringParam declares a string param; def nil makes it required. The
// Pipeline declares its params with it too.
func StringParam(name, description string, def *string) v1.ParamSpec {
	p := v1.ParamSpec{Name: name, Type: v1.ParamTypeString, Description: description}
	if def != nil {
		p.Default = v1.NewStructuredValues(*def)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func result(name, description string) v1.TaskResult {
	return v1.TaskResult{Name: name, Type: v1.ResultsTypeString, Description: description}
}

func resultPath(name string) string { return "$(results." + name + ".path)" }

func optionalWorkspace(name, description string) v1.WorkspaceDeclaration {
	return v1.WorkspaceDeclaration{Name: name, Description: description, Optional: true, ReadOnly: true}
}

func workspaceEnv(prefix, workspace string) []corev1.EnvVar {
	return []corev1.EnvVar{
		env(prefix+"_BOUND", "$(workspaces."+workspace+".bound)"),
		env(prefix+"_PATH", "$(workspaces."+workspace+".path)"),
	}
}

// The step that never needs privileges: git-sync runs as its image's non-root user.
func hardened() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		RunAsNonRoot:             ptr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// buildahSecurity is the buildah steps' security context: not privileged,
// default capabilities, under the Localhost seccomp profile (the runtime's
// default plus what buildah's user namespace needs; RuntimeDefault, which a
// kubelet with seccompDefault gives every container that names none, lets
// no container without CAP_SYS_ADMIN create one) and, in the field mode,
// the Localhost AppArmor profile that allows mount.
func buildahSecurity(cfg *config.Config) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		SeccompProfile: &corev1.SeccompProfile{
			Type:             corev1.SeccompProfileTypeLocalhost,
			LocalhostProfile: ptr(cfg.Seccomp.Profile),
		},
	}
	if cfg.AppArmor.Mode == config.AppArmorField {
		sc.AppArmorProfile = &corev1.AppArmorProfile{
			Type:             corev1.AppArmorProfileTypeLocalhost,
			LocalhostProfile: ptr(cfg.AppArmor.Profile),
		}
	}
	return sc
}

// appArmorAnnotations names the profile of each buildah step in the
// annotation mode; Tekton copies a Task's annotations to its pods.
func appArmorAnnotations(cfg *config.Config, t *v1.Task, steps ...string) {
	if cfg.AppArmor.Mode != config.AppArmorAnnotation {
		return
	}
	for _, s := range steps {
		t.Annotations[AppArmorAnnotationPrefix+StepContainer(s)] = "localhost/" + cfg.AppArmor.Profile
	}
}

// cloneStep is the one git-sync step both the git-sync Task and the build
// Task run. root is git-sync's --root; urlResult also records the URL.
func cloneStep(cfg *config.Config, root string, mounts []corev1.VolumeMount) v1.Step {
	e := []corev1.EnvVar{
		env("GIT_URL", param("GIT_URL")),
		env("GIT_REF", param("GIT_REF")),
		env("SOURCE_ROOT", root),
		env("SOURCE_LINK", SourceLink),
		env("RESULT_COMMIT", resultPath("COMMIT")),
		env("RESULT_URL", resultPath("URL")),
	}
	e = append(e, workspaceEnv("GIT_CREDENTIALS", WorkspaceGitCredentials)...)
	return v1.Step{
		Name:            CloneStep,
		Image:           cfg.Images.GitSync,
		Env:             e,
		VolumeMounts:    mounts,
		SecurityContext: hardened(),
		Script:          scripts.Clone,
	}
}

func gitParams(defaultRef string) []v1.ParamSpec {
	return []v1.ParamSpec{
		StringParam("GIT_URL", "Repository to clone (https://, ssh:// or git://).", nil),
		StringParam("GIT_REF", "Branch, tag or full 40-character commit SHA to build.", ptr(defaultRef)),
	}
}

func gitResults() []v1.TaskResult {
	return []v1.TaskResult{
		result("COMMIT", "Full SHA of the commit that was cloned."),
		result("URL", "The repository URL that was cloned."),
	}
}

func gitCredentialsWorkspace() v1.WorkspaceDeclaration {
	return optionalWorkspace(WorkspaceGitCredentials,
		"Credentials for a private repository: a kubernetes.io/basic-auth Secret (username, password) or a kubernetes.io/ssh-auth Secret (ssh-privatekey) with a known_hosts key.")
}

func dockerConfigWorkspace() v1.WorkspaceDeclaration {
	return optionalWorkspace(WorkspaceDockerConfig,
		"Registry credentials: a kubernetes.io/dockerconfigjson Secret (.dockerconfigjson) or a config.json.")
}

// GitSync is the standalone clone Task: git-sync once, at depth 1, into a workspace.
func GitSync(cfg *config.Config) *v1.Task {
	root := "$(workspaces." + WorkspaceOutput + ".path)/$(params.SUBDIRECTORY)"
	t := &v1.Task{
		TypeMeta:   typeMeta("Task"),
		ObjectMeta: meta(cfg, GitSyncName, "git-sync clone", "git, git-sync"),
		Spec: v1.TaskSpec{
			Description: "Clones one commit of a git repository with git-sync v4 (one-time, depth 1) into a workspace.\n" +
				"The checkout is the target of the link <output>/<SUBDIRECTORY>/" + SourceLink + "; enter it through readlink.",
			Params: append(gitParams("main"),
				StringParam("SUBDIRECTORY", "Directory of the output workspace that becomes git-sync's --root.", ptr("source"))),
			Workspaces: []v1.WorkspaceDeclaration{
				{Name: WorkspaceOutput, Description: "Where the repository is cloned. git-sync runs as UID 65533: the volume must be writable by it (fsGroup 65533, or an emptyDir)."},
				gitCredentialsWorkspace(),
			},
			Results: gitResults(),
			Steps:   []v1.Step{cloneStep(cfg, root, nil)},
		},
	}
	return t
}

// Build is the per-architecture Task: clone and build in one pod, so the
// checkout is an emptyDir on the very node that builds and no volume is
// shared across nodes.
func Build(cfg *config.Config) *v1.Task {
	retries := strconv.Itoa(cfg.Build.PushRetries)
	t := &v1.Task{
		TypeMeta:   typeMeta("Task"),
		ObjectMeta: meta(cfg, BuildName, "buildah build (one architecture)", "image-build, buildah, multi-arch, git-sync"),
		Spec: v1.TaskSpec{
			Description: "Clones a repository with git-sync and builds and pushes one architecture of an image with buildah, natively on the node it runs on.\n" +
				"Run it on a node of the target architecture (kubernetes.io/arch nodeSelector): it refuses to build under emulation unless ALLOW_EMULATION is true.",
			Params: append(append([]v1.ParamSpec{
				StringParam("IMAGE", "Image to push, with a tag: registry.example.com/me/app:v1.", nil),
				StringParam("TAG_SUFFIX", "Appended to IMAGE's tag, e.g. -arm64; IMAGE must then carry a tag.", ptr("")),
				StringParam("PLATFORM_TAG_SUFFIX", "\"true\": TAG_SUFFIX is -ARCH[-VARIANT] of PLATFORM (-arm64, -arm-v7), for a matrix over PLATFORM, which cannot give each platform its own TAG_SUFFIX.", ptr("false")),
				StringParam("PLATFORM", "Platform to build: linux/ARCH[/VARIANT], e.g. linux/arm64 or linux/arm/v7.", nil),
				StringParam("ALLOW_EMULATION", "\"true\" lets the build run on a node of another architecture (under QEMU emulation).", ptr("false")),
				StringParam("DOCKERFILE", "Path of the Dockerfile, relative to the repository root.", ptr("./Dockerfile")),
				StringParam("CONTEXT", "Build context, relative to the repository root.", ptr(".")),
				{
					Name: "BUILD_ARGS", Type: v1.ParamTypeArray,
					Description: "Build arguments, each KEY=VALUE.",
					Default:     &v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{}},
				},
				StringParam("TLS_VERIFY", "\"false\" allows plain-HTTP or self-signed registries.", ptr("true")),
			}, gitParams("main")...),
				StringParam("STORAGE", "How buildah stores layers: auto (the kernel's overlay where buildah can use it, else fuse-overlayfs where the container has /dev/fuse, else vfs; "+
					"the log says which and why), overlay (the kernel's: Linux >= 5.11, buildah >= 1.35), fuse-overlayfs (needs /dev/fuse: "+
					"only a catalog generated with build.storage: fuse-overlayfs asks for it) or vfs.", ptr(cfg.Build.Storage)),
				// Tekton ignores params a Task does not declare: declared, an old
				// run's STORAGE_DRIVER fails the step naming its replacement
				// instead of silently building another way.
				StringParam("STORAGE_DRIVER", "Removed: renamed STORAGE, and its overlay (through fuse-overlayfs) is now STORAGE=fuse-overlayfs. "+
					"Any value fails the build, naming the STORAGE to pass instead.", ptr("")),
				StringParam("PUSH_RETRIES", "How many times a failed push is retried.", ptr(retries)),
				StringParam("SOURCE_DATE_EPOCH", "Seconds since 1970-01-01 UTC, e.g. the commit's time (git log -1 --format=%ct): the image's creation time and every file's time in its layers "+
					"(buildah bud --timestamp), so the same source builds the same digest, whatever the storage. Empty: the time of the build.", ptr("")),
				StringParam("CACHE", "\"true\": build with a layer cache in the registry (buildah bud --layers --cache-from/--cache-to CACHE_REPO), so unchanged Dockerfile steps are not run again. "+
					"A cache that cannot be reached or written is warned about and the build goes on without it.", ptr(strconv.FormatBool(cfg.Build.Cache))),
				StringParam("CACHE_REPO", "Repository of the layer cache, without tag; TAG_SUFFIX is appended, so each architecture has its own. "+
					"Empty: IMAGE's repository + -cache, e.g. registry.example.com/me/app-cache-arm64.", ptr("")),
			),
			Workspaces: []v1.WorkspaceDeclaration{dockerConfigWorkspace(), gitCredentialsWorkspace()},
			Results: append([]v1.TaskResult{
				result("IMAGE_URL", "The tag that was pushed."),
				result("IMAGE_DIGEST", "Digest of the pushed image."),
				result("IMAGE_REF", "The pushed image by digest: repository@sha256:..."),
			}, gitResults()...),
			Volumes: []corev1.Volume{
				{Name: sourceVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMedium(cfg.Build.EmptyDirMedium)}}},
				{Name: containersVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			Steps: []v1.Step{
				cloneStep(cfg, sourceRoot, []corev1.VolumeMount{{Name: sourceVolume, MountPath: sourceMount}}),
				buildStep(cfg),
			},
		},
	}
	appArmorAnnotations(cfg, t, BuildStep)
	return t
}

func buildStep(cfg *config.Config) v1.Step {
	e := []corev1.EnvVar{
		env("IMAGE", param("IMAGE")),
		env("TAG_SUFFIX", param("TAG_SUFFIX")),
		env("PLATFORM_TAG_SUFFIX", param("PLATFORM_TAG_SUFFIX")),
		env("PLATFORM", param("PLATFORM")),
		env("ALLOW_EMULATION", param("ALLOW_EMULATION")),
		env("DOCKERFILE", param("DOCKERFILE")),
		env("CONTEXT", param("CONTEXT")),
		env("TLS_VERIFY", param("TLS_VERIFY")),
		env("STORAGE", param("STORAGE")),
		env("STORAGE_DRIVER", param("STORAGE_DRIVER")),
		env("PUSH_RETRIES", param("PUSH_RETRIES")),
		env("SOURCE_DATE_EPOCH", param("SOURCE_DATE_EPOCH")),
		env("CACHE", param("CACHE")),
		env("CACHE_REPO", param("CACHE_REPO")),
		env("SOURCE_ROOT", sourceRoot),
		env("SOURCE_LINK", SourceLink),
		env("RESULT_IMAGE_URL", resultPath("IMAGE_URL")),
		env("RESULT_IMAGE_DIGEST", resultPath("IMAGE_DIGEST")),
		env("RESULT_IMAGE_REF", resultPath("IMAGE_REF")),
		// chroot isolation: RUN steps need no nested container runtime.
		env("BUILDAH_ISOLATION", "chroot"),
	}
	e = append(e, workspaceEnv("DOCKERCONFIG", WorkspaceDockerConfig)...)
	s := v1.Step{
		Name:  BuildStep,
		Image: cfg.Images.Buildah,
		Args:  []string{"$(params.BUILD_ARGS[*])"},
		Env:   e,
		VolumeMounts: []corev1.VolumeMount{
			{Name: sourceVolume, MountPath: sourceMount},
			{Name: containersVolume, MountPath: containersMount},
		},
		SecurityContext: buildahSecurity(cfg),
		Script:          scripts.Build,
	}
	// Only fuse-overlayfs needs /dev/fuse. The limit is also what keeps
	// such a build off nodes without the fuse device plugin: the scheduler
	// places it only where the resource is allocatable. auto asks for none
	// and uses no fuse in a pod (overlay, else vfs), so it runs anywhere.
	if cfg.Build.NeedsFuse() {
		s.ComputeResources = corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceName(cfg.Build.FuseResource): mustQuantity("1")},
		}
	}
	return s
}

// Manifest is the fan-in Task: one index from the per-architecture images.
func Manifest(cfg *config.Config) *v1.Task {
	t := &v1.Task{
		TypeMeta:   typeMeta("Task"),
		ObjectMeta: meta(cfg, ManifestName, "buildah multi-arch manifest", "image-build, buildah, multi-arch, manifest"),
		Spec: v1.TaskSpec{
			Description: "Assembles per-architecture images, by digest, into one multi-arch image index, pushes it with buildah manifest push --all, " +
				"then reads the pushed index back and fails unless it holds exactly the expected platforms and digests.",
			Params: []v1.ParamSpec{
				StringParam("IMAGE", "Tag to push the index to: registry.example.com/me/app:v1.", nil),
				{Name: "IMAGES", Type: v1.ParamTypeArray, Description: "Each architecture's image by digest (repository@sha256:...), e.g. the build tasks' IMAGE_REF results."},
				StringParam("PLATFORMS", "The platforms the index must hold, comma-separated: linux/amd64,linux/arm64. Empty: PLATFORM_LIST.", ptr("")),
				StringParam("SOURCE_COMMITS", "Space-separated commits the images were built from; the task fails unless all are equal. Empty: SOURCE_COMMIT_LIST; both empty: not checked.", ptr("")),
				{
					Name: "PLATFORM_LIST", Type: v1.ParamTypeArray,
					Description: "PLATFORMS as an array, for a matrix's platforms (Tekton cannot pass an array as a string); used when PLATFORMS is empty.",
					Default:     &v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{}},
				},
				{
					Name: "SOURCE_COMMIT_LIST", Type: v1.ParamTypeArray,
					Description: "SOURCE_COMMITS as an array, e.g. a matrixed build's COMMIT results; used when SOURCE_COMMITS is empty.",
					Default:     &v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{}},
				},
				StringParam("TLS_VERIFY", "\"false\" allows plain-HTTP or self-signed registries.", ptr("true")),
				StringParam("PUSH_RETRIES", "How many times a failed push is retried.", ptr(strconv.Itoa(cfg.Build.PushRetries))),
			},
			Workspaces: []v1.WorkspaceDeclaration{dockerConfigWorkspace()},
			Results: []v1.TaskResult{
				result("IMAGE_URL", "The tag the index was pushed to."),
				result("IMAGE_DIGEST", "Digest of the pushed index."),
				result("IMAGES", "The index and each architecture's image, by digest, comma-separated."),
			},
			Volumes: []corev1.Volume{
				{Name: containersVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			Steps: []v1.Step{{
				Name:  ManifestStep,
				Image: cfg.Images.Buildah,
				// The array forms after markers: the script splits them off.
				Args: []string{"$(params.IMAGES[*])", "--platforms", "$(params.PLATFORM_LIST[*])", "--commits", "$(params.SOURCE_COMMIT_LIST[*])"},
				Env: append([]corev1.EnvVar{
					env("IMAGE", param("IMAGE")),
					env("PLATFORMS", param("PLATFORMS")),
					env("SOURCE_COMMITS", param("SOURCE_COMMITS")),
					env("TLS_VERIFY", param("TLS_VERIFY")),
					env("PUSH_RETRIES", param("PUSH_RETRIES")),
					env("RESULT_IMAGE_URL", resultPath("IMAGE_URL")),
					env("RESULT_IMAGE_DIGEST", resultPath("IMAGE_DIGEST")),
					env("RESULT_IMAGES", resultPath("IMAGES")),
					env("BUILDAH_ISOLATION", "chroot"),
				}, workspaceEnv("DOCKERCONFIG", WorkspaceDockerConfig)...),
				VolumeMounts:    []corev1.VolumeMount{{Name: containersVolume, MountPath: containersMount}},
				SecurityContext: buildahSecurity(cfg),
				Script:          scripts.Manifest,
			}},
		},
	}
	appArmorAnnotations(cfg, t, ManifestStep)
	return t
}

// All returns every Task of the catalog.
func All(cfg *config.Config) []*v1.Task {
	return []*v1.Task{GitSync(cfg), Build(cfg), Manifest(cfg)}
}

// StepContainer is the name Tekton gives a step's container.
func StepContainer(step string) string { return fmt.Sprintf("step-%s", step) }

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
