package catalog

import (
	"fmt"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// SampleFile names a sample. Not .yaml: kubectl apply -R over tasks/ and
// pipelines/ (the install command) would otherwise take the samples too, and
// a run with generateName cannot be applied (nor should installing the
// catalog start a build). kubectl create -f reads a named file whatever its
// extension.
func SampleFile(kind string) string { return kind + ".yaml.sample" }

const sampleNote = "# (.yaml.sample, so that installing the catalog with kubectl apply -R does not take it.)\n"

func sampleMeta(cfg *config.Config, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{GenerateName: name + "-", Namespace: cfg.Example.Namespace}
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: kind}
}

func str(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }

func gitSyncSample(cfg *config.Config) *v1.TaskRun {
	return &v1.TaskRun{
		TypeMeta:   typeMeta("TaskRun"),
		ObjectMeta: sampleMeta(cfg, tasks.GitSyncName),
		Spec: v1.TaskRunSpec{
			TaskRef: pipeline.TaskRef(cfg, tasks.GitSyncName),
			Params: v1.Params{
				{Name: "GIT_URL", Value: str(cfg.Example.GitURL)},
				{Name: "GIT_REF", Value: str(cfg.Example.GitRef)},
			},
			Workspaces:  []v1.WorkspaceBinding{{Name: tasks.WorkspaceOutput, EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			PodTemplate: hostUsersTemplate(cfg),
		},
	}
}

// hostUsersTemplate is the pod template of a sample that needs no node
// selection: spec.hostUsers with build.userNamespaces, else none.
func hostUsersTemplate(cfg *config.Config) *pod.PodTemplate {
	if h := cfg.Build.HostUsers(); h != nil {
		return &pod.PodTemplate{HostUsers: h}
	}
	return nil
}

func registryWorkspace(cfg *config.Config) []v1.WorkspaceBinding {
	if cfg.Example.RegistrySecret == "" {
		return nil
	}
	return []v1.WorkspaceBinding{{Name: tasks.WorkspaceDockerConfig, Secret: &corev1.SecretVolumeSource{SecretName: cfg.Example.RegistrySecret}}}
}

func buildSample(cfg *config.Config) *v1.TaskRun {
	a := cfg.Architectures[len(cfg.Architectures)-1]
	tpl := pipeline.ArchPodTemplate(a, cfg.PodAppArmor(a))
	tpl.HostUsers = cfg.Build.HostUsers()
	return &v1.TaskRun{
		TypeMeta:   typeMeta("TaskRun"),
		ObjectMeta: sampleMeta(cfg, tasks.BuildName+"-"+a.ID()),
		Spec: v1.TaskRunSpec{
			TaskRef: pipeline.TaskRef(cfg, tasks.BuildName),
			Params: v1.Params{
				{Name: "IMAGE", Value: str(cfg.Example.Image)},
				{Name: "TAG_SUFFIX", Value: str(pipeline.TagSuffix(a))},
				{Name: "PLATFORM", Value: str(a.Platform())},
				{Name: "GIT_URL", Value: str(cfg.Example.GitURL)},
				{Name: "GIT_REF", Value: str(cfg.Example.GitRef)},
			},
			Workspaces:         registryWorkspace(cfg),
			ServiceAccountName: cfg.Example.ServiceAccount,
			PodTemplate:        tpl,
		},
	}
}

func manifestSample(cfg *config.Config) *v1.TaskRun {
	repo := cfg.Example.Image
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	var refs, platforms []string
	for i, a := range cfg.Architectures {
		// Placeholders: a real run passes the build tasks' IMAGE_REF results.
		refs = append(refs, fmt.Sprintf("%s@sha256:%064x", repo, i+1))
		platforms = append(platforms, a.Platform())
	}
	return &v1.TaskRun{
		TypeMeta:   typeMeta("TaskRun"),
		ObjectMeta: sampleMeta(cfg, tasks.ManifestName),
		Spec: v1.TaskRunSpec{
			TaskRef: pipeline.TaskRef(cfg, tasks.ManifestName),
			Params: v1.Params{
				{Name: "IMAGE", Value: str(cfg.Example.Image)},
				{Name: "IMAGES", Value: *v1.NewStructuredValues(refs[0], refs[1:]...)},
				{Name: "PLATFORMS", Value: str(strings.Join(platforms, ","))},
			},
			Workspaces:         registryWorkspace(cfg),
			ServiceAccountName: cfg.Example.ServiceAccount,
			PodTemplate:        hostUsersTemplate(cfg),
		},
	}
}
