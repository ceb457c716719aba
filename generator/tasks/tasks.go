// Package tasks builds the catalog's Tekton Tasks as typed v1 objects: the
// git-sync clone, the per-architecture buildah build and the manifest fan-in.
package tasks

import (
	"fmt"
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
	WorkspaceCABundle       = "ca-bundle"
	WorkspaceBuildSecrets   = "build-secrets"
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
		Annotations: WithArtifactHub(cfg, map[string]string{
			"tekton.dev/pipelines.minVersion": MinPipelinesVersion(cfg),
			"tekton.dev/platforms":            Platforms(cfg),
			"tekton.dev/categories":           "Image Build",
			"tekton.dev/tags":                 tags,
			"tekton.dev/displayName":          displayName,
		}),
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
// the AppArmor profile every architecture asks for (the Localhost one, which
// allows mount). Where architectures differ, the step names none: the run's
// pod template names its architecture's (config.PodAppArmor).
func buildahSecurity(cfg *config.Config) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		SeccompProfile: &corev1.SeccompProfile{
			Type:             corev1.SeccompProfileTypeLocalhost,
			LocalhostProfile: ptr(cfg.Seccomp.Profile),
		},
		AppArmorProfile: cfg.StepAppArmor(),
	}
}

// appArmorAnnotations names the profile of each buildah step in the
// annotation mode; Tekton copies a Task's annotations to its pods.
func appArmorAnnotations(cfg *config.Config, t *v1.Task, steps ...string) {
	v := cfg.AppArmorAnnotationValue()
	if v == "" {
		return
	}
	for _, s := range steps {
		t.Annotations[AppArmorAnnotationPrefix+StepContainer(s)] = v
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
		env("RESULT_COMMIT_TIME", resultPath("COMMIT_TIME")),
	}
	e = append(e, workspaceEnv("GIT_CREDENTIALS", WorkspaceGitCredentials)...)
	return v1.Step{
		Name:            CloneStep,
		Image:           cfg.Images.GitSync,
		Env:             e,
		VolumeMounts:    mounts,
		SecurityContext: hardened(),
		Command:         scriptCommand(CloneStep, scripts.Clone),
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
		result("COMMIT_TIME", "The cloned commit's committer time, in seconds since 1970-01-01 UTC (git log -1 --format=%ct): the build's SOURCE_DATE_EPOCH by default."),
	}
}

func gitCredentialsWorkspace() v1.WorkspaceDeclaration {
	return optionalWorkspace(WorkspaceGitCredentials,
		"Credentials for a private repository: a kubernetes.io/basic-auth Secret (username, password) or a kubernetes.io/ssh-auth Secret (ssh-privatekey) with a known_hosts key.")
}

// CABundleWorkspace is the build and manifest Tasks' trusted-CA workspace.
func CABundleWorkspace() v1.WorkspaceDeclaration {
	return optionalWorkspace(WorkspaceCABundle,
		"PEM certificates (every *.crt and *.pem key of a ConfigMap or Secret) trusted for the registry, besides the system's: "+
			"pulls of FROM images, pushes and the layer cache, with TLS_VERIFY kept \"true\".")
}

// BuildSecretsWorkspace is the build Task's secrets workspace.
func BuildSecretsWorkspace() v1.WorkspaceDeclaration {
	return optionalWorkspace(WorkspaceBuildSecrets,
		"A Secret whose every key is a build secret (buildah bud --secret id=KEY): a Dockerfile reads it with RUN --mount=type=secret,id=KEY, "+
			"at /run/secrets/KEY during that step only. It ends up in no layer, result or log line. Keys: letters, digits, '_', '.', '-'.")
}

// ArrayParam declares an array param defaulting to []. The Pipelines
// declare theirs with it too.
func ArrayParam(name, description string) v1.ParamSpec {
	return v1.ParamSpec{
		Name: name, Type: v1.ParamTypeArray, Description: description,
		Default: &v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{}},
	}
}

// Param descriptions shared by the Tasks and the Pipelines.
const (
	TargetDescription          = "The Dockerfile stage to build (buildah bud --target): the name after AS in its FROM line. Empty: the last stage."
	LabelsDescription          = "Labels added to each image, each KEY=VALUE, after the automatic org.opencontainers.image.source (GIT_URL, without credentials), .revision (the commit built) and .created (SOURCE_DATE_EPOCH: by default the commit's time), which they can override."
	AnnotationsDescription     = "Annotations on the index, each KEY=VALUE, after the automatic org.opencontainers.image.source, .revision and .created, which they can override."
	SourceDateEpochDescription = "The image's creation time and every file's time in its layers (buildah bud --timestamp), so that a rebuild of the same commit gives the same digest, whatever the storage: " +
		"empty (the default) for the commit's committer time (COMMIT_TIME), a whole number of seconds since 1970-01-01 UTC, or \"now\" for the time of the build (a new digest every time). " +
		"A Dockerfile's RUN steps that are not deterministic (times they write into files, random data, downloads) still change the digest."
	PushDescription = "\"false\": build-only: every architecture is built and checked, nothing is pushed (no image, no index, no layer cache write)."
)

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

// All returns every Task of the catalog.
func All(cfg *config.Config) []*v1.Task {
	return []*v1.Task{GitSync(cfg), Build(cfg), Manifest(cfg)}
}

// StepContainer is the name Tekton gives a step's container.
func StepContainer(step string) string { return fmt.Sprintf("step-%s", step) }

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
