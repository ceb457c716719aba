package tasks

import (
	"strconv"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

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
				StringParam("SOURCE_DATE_EPOCH", SourceDateEpochDescription, ptr("")),
				StringParam("CACHE", "\"true\": build with a layer cache in the registry (buildah bud --layers --cache-from/--cache-to CACHE_REPO), so unchanged Dockerfile steps are not run again. "+
					"A cache that cannot be reached or written is warned about and the build goes on without it.", ptr(strconv.FormatBool(cfg.Build.Cache))),
				StringParam("CACHE_REPO", "Repository of the layer cache, without tag; TAG_SUFFIX is appended, so each architecture has its own. "+
					"Empty: IMAGE's repository + -cache, e.g. registry.example.com/me/app-cache-arm64.", ptr("")),
				StringParam("TARGET", TargetDescription, ptr("")),
				ArrayParam("LABELS", LabelsDescription),
				StringParam("PUSH", PushDescription+" The results then carry the digest of the image in the pod's storage; a layer cache is read, not written.", ptr("true")),
				StringParam("SBOM", SBOMDescription, ptr(strconv.FormatBool(cfg.Build.SBOM))),
			),
			Workspaces: []v1.WorkspaceDeclaration{dockerConfigWorkspace(), gitCredentialsWorkspace(), CABundleWorkspace(), BuildSecretsWorkspace()},
			Results: append([]v1.TaskResult{
				result("IMAGE_URL", "The tag that was pushed."),
				result("IMAGE_DIGEST", "Digest of the pushed image."),
				result("IMAGE_REF", "The pushed image by digest: repository@sha256:..."),
				result("BUILD_ARCH", "What uname -m said in the build step (x86_64, aarch64, ...): the node's architecture. Under ALLOW_EMULATION only the Dockerfile's RUN steps run under QEMU, so it stays the node's."),
				result("EMULATED", "\"true\" when the image was built for another architecture than the node's (ALLOW_EMULATION), else \"false\": a policy can refuse emulated builds from the provenance Chains records."),
			}, append(gitResults(), sbomResults("the pushed image")...)...),
			Volumes: []corev1.Volume{
				{Name: sourceVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMedium(cfg.Build.EmptyDirMedium)}}},
				{Name: containersVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				sbomVolume(),
			},
			Steps: []v1.Step{
				cloneStep(cfg, sourceRoot, []corev1.VolumeMount{{Name: sourceVolume, MountPath: sourceMount}}),
				buildStep(cfg),
				sbomStep(cfg),
				sbomAttachStep(cfg),
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
		env("TARGET", param("TARGET")),
		env("PUSH", param("PUSH")),
		env("GIT_URL", param("GIT_URL")),
		env("SOURCE_ROOT", sourceRoot),
		env("SOURCE_LINK", SourceLink),
		env("RESULT_IMAGE_URL", resultPath("IMAGE_URL")),
		env("RESULT_IMAGE_DIGEST", resultPath("IMAGE_DIGEST")),
		env("RESULT_IMAGE_REF", resultPath("IMAGE_REF")),
		env("RESULT_BUILD_ARCH", resultPath("BUILD_ARCH")),
		env("RESULT_EMULATED", resultPath("EMULATED")),
		// The clone step's result, in the same pod.
		env("COMMIT_TIME_FILE", resultPath("COMMIT_TIME")),
		// chroot isolation: RUN steps need no nested container runtime.
		env("BUILDAH_ISOLATION", "chroot"),
	}
	e = append(e, workspaceEnv("DOCKERCONFIG", WorkspaceDockerConfig)...)
	e = append(e, workspaceEnv("CA_BUNDLE", WorkspaceCABundle)...)
	e = append(e, workspaceEnv("BUILD_SECRETS", WorkspaceBuildSecrets)...)
	s := v1.Step{
		Name:  BuildStep,
		Image: cfg.Images.Buildah,
		// LABELS after a marker no BUILD_ARGS entry (KEY=VALUE) can equal.
		Args: []string{"$(params.BUILD_ARGS[*])", "--labels", "$(params.LABELS[*])"},
		Env:  e,
		VolumeMounts: []corev1.VolumeMount{
			{Name: sourceVolume, MountPath: sourceMount},
			{Name: containersVolume, MountPath: containersMount},
		},
		SecurityContext: buildahSecurity(cfg),
		Command:         scriptCommand(BuildStep, scripts.Build),
	}
	// Only fuse-overlayfs needs /dev/fuse. The limit is also what keeps
	// such a build off nodes without the fuse device plugin: the scheduler
	// places it only where the resource is allocatable. auto asks for none
	// and uses no fuse in a pod (overlay, else vfs), so it runs anywhere.
	s.ComputeResources = *cfg.Build.Resources.DeepCopy()
	if cfg.Build.NeedsFuse() {
		if s.ComputeResources.Limits == nil {
			s.ComputeResources.Limits = corev1.ResourceList{}
		}
		s.ComputeResources.Limits[corev1.ResourceName(cfg.Build.FuseResource)] = mustQuantity("1")
	}
	return s
}
