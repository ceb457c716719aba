package tasks

import (
	"strconv"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

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
				StringParam("GIT_URL", "The repository the images were built from: the index's org.opencontainers.image.source annotation (without credentials). Empty: none.", ptr("")),
				StringParam("SOURCE_DATE_EPOCH", "The index's org.opencontainers.image.created: empty (the default) for COMMIT_TIME, a whole number of seconds since 1970-01-01 UTC, "+
					"or \"now\" for the time of this step. Give it the builds' SOURCE_DATE_EPOCH: the same commit then gives the same index digest.", ptr("")),
				StringParam("COMMIT_TIME", "A build's COMMIT_TIME result: the epoch when SOURCE_DATE_EPOCH is empty. Empty: COMMIT_TIME_LIST's first; both empty: the time of this step.", ptr("")),
				ArrayParam("COMMIT_TIME_LIST", "COMMIT_TIME as an array, e.g. a matrixed build's COMMIT_TIME results; used when COMMIT_TIME is empty."),
				ArrayParam("ANNOTATIONS", AnnotationsDescription+" The .revision is the commit SOURCE_COMMITS (or SOURCE_COMMIT_LIST) agree on."),
				StringParam("PUSH", PushDescription+" The per-architecture images then live only in their build pods, so this step checks what the index would hold "+
					"(one image by digest per platform, no platform or digest twice, one commit) and pushes nothing; IMAGE_DIGEST is empty.", ptr("true")),
				StringParam("SBOM", SBOMIndexDescription, ptr(strconv.FormatBool(cfg.Build.SBOM))),
				ArrayParam("SBOMS", "Each build's SBOM_IMAGE_REF (repository@sha256:...), with SBOM \"true\": the per-platform SBOMs the index's SBOM lists."),
			},
			Workspaces: []v1.WorkspaceDeclaration{dockerConfigWorkspace(), CABundleWorkspace()},
			Results: append([]v1.TaskResult{
				result("IMAGE_URL", "The tag the index was pushed to."),
				result("IMAGE_DIGEST", "Digest of the pushed index; empty with PUSH \"false\"."),
				result("IMAGES", "Each architecture's image, by digest (repository@sha256:...), comma-separated, for Tekton Chains to sign each "+
					"(it signs the index through IMAGE_URL and IMAGE_DIGEST and does not recurse into it: tektoncd/chains#1070)."),
			}, sbomResults("the index")...),
			Volumes: []corev1.Volume{
				{Name: containersVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				sbomVolume(),
			},
			Steps: []v1.Step{{
				Name:  ManifestStep,
				Image: cfg.Images.Buildah,
				// The array forms after markers: the script splits them off.
				Args: []string{"$(params.IMAGES[*])", "--platforms", "$(params.PLATFORM_LIST[*])", "--commits", "$(params.SOURCE_COMMIT_LIST[*])",
					"--commit-times", "$(params.COMMIT_TIME_LIST[*])",
					"--annotations", "$(params.ANNOTATIONS[*])"},
				Env: append([]corev1.EnvVar{
					env("IMAGE", param("IMAGE")),
					env("PLATFORMS", param("PLATFORMS")),
					env("SOURCE_COMMITS", param("SOURCE_COMMITS")),
					env("TLS_VERIFY", param("TLS_VERIFY")),
					env("PUSH_RETRIES", param("PUSH_RETRIES")),
					env("PUSH", param("PUSH")),
					env("GIT_URL", param("GIT_URL")),
					env("SOURCE_DATE_EPOCH", param("SOURCE_DATE_EPOCH")),
					env("COMMIT_TIME", param("COMMIT_TIME")),
					env("RESULT_IMAGE_URL", resultPath("IMAGE_URL")),
					env("RESULT_IMAGE_DIGEST", resultPath("IMAGE_DIGEST")),
					env("RESULT_IMAGES", resultPath("IMAGES")),
					env("BUILDAH_ISOLATION", "chroot"),
				}, append(workspaceEnv("DOCKERCONFIG", WorkspaceDockerConfig), workspaceEnv("CA_BUNDLE", WorkspaceCABundle)...)...),
				VolumeMounts:    []corev1.VolumeMount{{Name: containersVolume, MountPath: containersMount}},
				SecurityContext: buildahSecurity(cfg),
				Command:         scriptCommand(ManifestStep, scripts.Manifest),
			}, sbomIndexStep(cfg), sbomAttachStep(cfg)},
		},
	}
	appArmorAnnotations(cfg, t, ManifestStep)
	return t
}
