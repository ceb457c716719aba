package tasks

import (
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// The SBOM steps. The SBOM is made from the image that was pushed, by
// digest, by syft in its own step (its public image has no pusher), then
// attached by crane in another (crane's has no SBOM generator), the way
// cosign attach sbom attaches one: a tag sha256-<hex>.sbom holding one
// text/spdx+json layer, which cosign download sbom reads. A tag rather than
// an OCI referrer, because many self-hosted registries (distribution 2.8
// among them) serve no referrers API; an attachment rather than a cosign
// attestation, because an attestation is signed where it is made and this
// pod, which runs the user's Dockerfile, must never hold a key. The
// attachment's URL and digest are results that Tekton Chains signs, as it
// signs every *IMAGE_URL/*IMAGE_DIGEST pair, with the key only it holds,
// and names as subjects of the TaskRun's provenance.
const (
	SBOMStep       = "sbom"
	SBOMIndexStep  = "sbom-index"
	SBOMAttachStep = "sbom-attach"
	sbomVolumeName = "sbom"
	sbomMount      = "/sbom"
	sbomFile       = sbomMount + "/sbom.spdx.json"
)

// SBOMDescription is the SBOM param's, on the Tasks and the Pipelines.
const SBOMDescription = "\"true\": after the push, syft makes an SPDX SBOM of the pushed image (by digest, so of this architecture's image only) " +
	"and it is attached to the image as cosign attach sbom does (tag sha256-<digest hex>.sbom, read with cosign download sbom); " +
	"its failure fails the build. Nothing is attached with PUSH \"false\"."

// SBOMIndexDescription is the manifest Task's SBOM param's.
const SBOMIndexDescription = "\"true\": after the push, an SPDX SBOM of the index is made and attached to it the same way: it describes the index by digest " +
	"and lists each platform's image and that image's own SBOM (SBOMS, checked against the tag each build attached), with no package list of its own. " +
	"Nothing is made with PUSH \"false\"."

func sbomVolume() corev1.Volume {
	return corev1.Volume{Name: sbomVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func sbomResults(what string) []v1.TaskResult {
	return []v1.TaskResult{
		result("SBOM_IMAGE_URL", "The tag of the SPDX SBOM attached to "+what+" (repository:sha256-<hex>.sbom); empty without an SBOM."),
		result("SBOM_IMAGE_DIGEST", "Digest of the attached SBOM artifact, which Tekton Chains signs; empty without an SBOM."),
		result("SBOM_IMAGE_REF", "The attached SBOM artifact by digest: repository@sha256:...; empty without an SBOM."),
	}
}

// sbomSecurity: the debug images run as root; nothing here needs a
// capability or privilege escalation.
func sbomSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// sbomStepOf is an SBOM step: its own env, then the registry workspaces,
// the SBOM volume, no privilege.
func sbomStepOf(name, image, script string, e []corev1.EnvVar) v1.Step {
	e = append(e, workspaceEnv("DOCKERCONFIG", WorkspaceDockerConfig)...)
	e = append(e, workspaceEnv("CA_BUNDLE", WorkspaceCABundle)...)
	return v1.Step{
		Name:            name,
		Image:           image,
		Env:             e,
		VolumeMounts:    []corev1.VolumeMount{{Name: sbomVolumeName, MountPath: sbomMount}},
		SecurityContext: sbomSecurity(),
		Command:         scriptCommand(name, script),
	}
}

func sbomStep(cfg *config.Config) v1.Step {
	e := []corev1.EnvVar{
		env("SBOM", param("SBOM")),
		env("PUSH", param("PUSH")),
		env("PLATFORM", param("PLATFORM")),
		env("TLS_VERIFY", param("TLS_VERIFY")),
		env("IMAGE_REF_FILE", resultPath("IMAGE_REF")),
		env("SBOM_FILE", sbomFile),
	}
	return sbomStepOf(SBOMStep, cfg.Images.Syft, scripts.SBOM, e)
}

func sbomAttachStep(cfg *config.Config) v1.Step {
	e := []corev1.EnvVar{
		env("SBOM", param("SBOM")),
		env("PUSH", param("PUSH")),
		env("TLS_VERIFY", param("TLS_VERIFY")),
		env("SUBJECT_URL_FILE", resultPath("IMAGE_URL")),
		env("SUBJECT_DIGEST_FILE", resultPath("IMAGE_DIGEST")),
		env("SBOM_FILE", sbomFile),
		env("RESULT_SBOM_IMAGE_URL", resultPath("SBOM_IMAGE_URL")),
		env("RESULT_SBOM_IMAGE_DIGEST", resultPath("SBOM_IMAGE_DIGEST")),
		env("RESULT_SBOM_IMAGE_REF", resultPath("SBOM_IMAGE_REF")),
	}
	return sbomStepOf(SBOMAttachStep, cfg.Images.Crane, scripts.SBOMAttach, e)
}

// sbomIndexStep writes the index's SBOM from the pushed index and the
// builds' SBOMs (the SBOMS param, as arguments) for sbomAttachStep, which
// attaches it to the manifest step's IMAGE_URL/IMAGE_DIGEST.
func sbomIndexStep(cfg *config.Config) v1.Step {
	e := []corev1.EnvVar{
		env("SBOM", param("SBOM")),
		env("PUSH", param("PUSH")),
		env("TLS_VERIFY", param("TLS_VERIFY")),
		env("INDEX_URL_FILE", resultPath("IMAGE_URL")),
		env("INDEX_DIGEST_FILE", resultPath("IMAGE_DIGEST")),
		env("SBOM_FILE", sbomFile),
	}
	st := sbomStepOf(SBOMIndexStep, cfg.Images.Crane, scripts.SBOMIndex, e)
	st.Args = []string{"$(params.SBOMS[*])"}
	return st
}
