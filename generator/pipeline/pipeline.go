// Package pipeline builds the fan-out/fan-in Pipeline and the PipelineRuns
// that pin each architecture's build to a node of that architecture. The
// examples, the Triggers template and the start command all take their
// PipelineRun from here.
package pipeline

import (
	"strconv"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// Name is the Pipeline's name.
const Name = "multiarch-build"

// ManifestTask is the fan-in pipeline task.
const ManifestTask = "manifest"

// BuildTask names the pipeline task that builds a.
func BuildTask(a config.Architecture) string { return "build-" + a.ID() }

// TagSuffix is what a's image tag gets appended: v1 -> v1-arm64.
func TagSuffix(a config.Architecture) string { return "-" + a.ID() }

func param(name string) string { return "$(params." + name + ")" }

func taskResult(task, result string) string {
	return "$(tasks." + task + ".results." + result + ")"
}

func str(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }

func ptr[T any](v T) *T { return &v }

// Pipeline builds one pipeline task per configured architecture, all in
// parallel, then the manifest task that consumes their IMAGE_REF results.
// Explicit tasks rather than a Matrix: the per-task taskRunSpecs that pin
// each build to its architecture need a pipeline task name to attach to.
func Pipeline(cfg *config.Config) *v1.Pipeline {
	workspaces := []v1.PipelineWorkspaceDeclaration{
		{Name: tasks.WorkspaceDockerConfig, Description: "Registry credentials (kubernetes.io/dockerconfigjson Secret).", Optional: true},
		{Name: tasks.WorkspaceGitCredentials, Description: "Git credentials for a private repository (basic-auth or ssh-auth Secret).", Optional: true},
		{Name: tasks.WorkspaceCABundle, Description: "CA certificates (*.crt, *.pem keys of a ConfigMap or Secret) trusted for the registry besides the system's, with TLS_VERIFY kept \"true\".", Optional: true},
		{Name: tasks.WorkspaceBuildSecrets, Description: "A Secret whose keys are build secrets, for RUN --mount=type=secret,id=KEY; in no layer, result or log.", Optional: true},
	}
	bind := func(names ...string) []v1.WorkspacePipelineTaskBinding {
		var b []v1.WorkspacePipelineTaskBinding
		for _, n := range names {
			b = append(b, v1.WorkspacePipelineTaskBinding{Name: n, Workspace: n})
		}
		return b
	}

	var pts []v1.PipelineTask
	var refs, commits, platforms, sboms []string
	for _, a := range cfg.Architectures {
		name := BuildTask(a)
		pts = append(pts, v1.PipelineTask{
			Name:    name,
			TaskRef: TaskRef(cfg, tasks.BuildName),
			Params: v1.Params{
				{Name: "IMAGE", Value: str(param("IMAGE"))},
				{Name: "TAG_SUFFIX", Value: str(TagSuffix(a))},
				{Name: "PLATFORM", Value: str(a.Platform())},
				{Name: "ALLOW_EMULATION", Value: str(param("ALLOW_EMULATION"))},
				{Name: "DOCKERFILE", Value: str(param("DOCKERFILE"))},
				{Name: "CONTEXT", Value: str(param("CONTEXT"))},
				{Name: "BUILD_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(params.BUILD_ARGS[*])"}}},
				{Name: "TLS_VERIFY", Value: str(param("TLS_VERIFY"))},
				{Name: "GIT_URL", Value: str(param("GIT_URL"))},
				{Name: "GIT_REF", Value: str(param("GIT_REF"))},
				// The Task appends TAG_SUFFIX to the cache repository too: one per architecture.
				{Name: "CACHE", Value: str(param("CACHE"))},
				{Name: "CACHE_REPO", Value: str(param("CACHE_REPO"))},
				{Name: "TARGET", Value: str(param("TARGET"))},
				// An array into the matrixed build too, as BUILD_ARGS: only the
				// matrix's own params and the fan-in's results are restricted.
				{Name: "LABELS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(params.LABELS[*])"}}},
				{Name: "PUSH", Value: str(param("PUSH"))},
				{Name: "SBOM", Value: str(param("SBOM"))},
				{Name: "SOURCE_DATE_EPOCH", Value: str(param("SOURCE_DATE_EPOCH"))},
			},
			Workspaces: bind(tasks.WorkspaceDockerConfig, tasks.WorkspaceGitCredentials, tasks.WorkspaceCABundle, tasks.WorkspaceBuildSecrets),
			// A retry is a new pod of the same TaskRun: the same pod
			// template, so a node of the same architecture.
			Retries: cfg.Build.Retries,
		})
		refs = append(refs, taskResult(name, "IMAGE_REF"))
		commits = append(commits, taskResult(name, "COMMIT"))
		sboms = append(sboms, taskResult(name, "SBOM_IMAGE_REF"))
		platforms = append(platforms, a.Platform())
	}
	pts = append(pts, v1.PipelineTask{
		Name:    ManifestTask,
		TaskRef: TaskRef(cfg, tasks.ManifestName),
		Params: v1.Params{
			{Name: "IMAGE", Value: str(param("IMAGE"))},
			{Name: "IMAGES", Value: *v1.NewStructuredValues(refs[0], refs[1:]...)},
			{Name: "PLATFORMS", Value: str(strings.Join(platforms, ","))},
			{Name: "SOURCE_COMMITS", Value: str(strings.Join(commits, " "))},
			{Name: "TLS_VERIFY", Value: str(param("TLS_VERIFY"))},
			{Name: "GIT_URL", Value: str(param("GIT_URL"))},
			{Name: "ANNOTATIONS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(params.ANNOTATIONS[*])"}}},
			{Name: "PUSH", Value: str(param("PUSH"))},
			// Both: the manifest takes the param when the run sets it, else the
			// commit's time, as the builds do.
			{Name: "SOURCE_DATE_EPOCH", Value: str(param("SOURCE_DATE_EPOCH"))},
			{Name: "COMMIT_TIME", Value: str(taskResult(BuildTask(cfg.Architectures[0]), "COMMIT_TIME"))},
			{Name: "SBOM", Value: str(param("SBOM"))},
			{Name: "SBOMS", Value: *v1.NewStructuredValues(sboms[0], sboms[1:]...)},
		},
		Workspaces: bind(tasks.WorkspaceDockerConfig, tasks.WorkspaceCABundle),
	})

	first := BuildTask(cfg.Architectures[0])
	p := &v1.Pipeline{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   Name,
			Labels: map[string]string{"app.kubernetes.io/version": cfg.Catalog.Version},
			Annotations: tasks.WithArtifactHub(cfg, map[string]string{
				"tekton.dev/pipelines.minVersion": tasks.MinPipelinesVersion(cfg),
				"tekton.dev/platforms":            tasks.Platforms(cfg),
				"tekton.dev/categories":           "Image Build",
				"tekton.dev/tags":                 "image-build, buildah, multi-arch",
				"tekton.dev/displayName":          "multi-arch build",
			}),
		},
		Spec: v1.PipelineSpec{
			Description: "Builds an image natively on a node of each architecture (" + tasks.Platforms(cfg) + "), in parallel, " +
				"then pushes one multi-arch index of them. Pin each build-<arch> task to its architecture with the PipelineRun's taskRunSpecs.",
			Params: v1.ParamSpecs{
				tasks.StringParam("GIT_URL", "Repository to clone.", nil),
				tasks.StringParam("GIT_REF", "Branch, tag or full 40-character commit SHA to build.", ptr("main")),
				tasks.StringParam("IMAGE", "The multi-arch tag to push, e.g. registry.example.com/me/app:v1; each architecture goes to <tag>-<arch>.", nil),
				tasks.StringParam("DOCKERFILE", "Path of the Dockerfile, relative to the repository root.", ptr("./Dockerfile")),
				tasks.StringParam("CONTEXT", "Build context, relative to the repository root.", ptr(".")),
				{
					Name: "BUILD_ARGS", Type: v1.ParamTypeArray, Description: "Build arguments, each KEY=VALUE.",
					Default: &v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{}},
				},
				tasks.StringParam("TLS_VERIFY", "\"false\" allows plain-HTTP or self-signed registries.", ptr("true")),
				tasks.StringParam("ALLOW_EMULATION", "\"true\" lets a build run on a node of another architecture (QEMU). Keep false with per-arch taskRunSpecs.", ptr("false")),
				tasks.StringParam("CACHE", "\"true\": each build uses a layer cache in the registry (buildah --layers --cache-from/--cache-to), one repository per architecture. "+
					"A cache that cannot be reached or written is warned about, never fatal.", ptr(strconv.FormatBool(cfg.Build.Cache))),
				tasks.StringParam("CACHE_REPO", "Repository of the layer cache, without tag; each build appends -<arch>. "+
					"Empty: IMAGE's repository + -cache, e.g. registry.example.com/me/app-cache-arm64.", ptr("")),
				tasks.StringParam("TARGET", tasks.TargetDescription, ptr("")),
				tasks.ArrayParam("LABELS", tasks.LabelsDescription),
				tasks.ArrayParam("ANNOTATIONS", tasks.AnnotationsDescription),
				tasks.StringParam("PUSH", tasks.PushDescription+" The manifest task then checks what the index would hold and pushes nothing; IMAGE_DIGEST is empty.", ptr("true")),
				tasks.StringParam("SBOM", tasks.SBOMDescription, ptr(strconv.FormatBool(cfg.Build.SBOM))),
				tasks.StringParam("SOURCE_DATE_EPOCH", tasks.SourceDateEpochDescription+" The index takes the same.", ptr("")),
			},
			Workspaces: workspaces,
			Tasks:      pts,
			Results: []v1.PipelineResult{
				{Name: "IMAGE_URL", Description: "The multi-arch tag.", Value: str(taskResult(ManifestTask, "IMAGE_URL"))},
				{Name: "IMAGE_DIGEST", Description: "Digest of the multi-arch index.", Value: str(taskResult(ManifestTask, "IMAGE_DIGEST"))},
				{Name: "IMAGES", Description: "Each architecture's image by digest, comma-separated (what Chains signs besides the index).", Value: str(taskResult(ManifestTask, "IMAGES"))},
				{Name: "CHAINS-GIT_URL", Description: "The repository that was built.", Value: str(taskResult(first, "URL"))},
				{Name: "CHAINS-GIT_COMMIT", Description: "The commit that was built (the same on every architecture).", Value: str(taskResult(first, "COMMIT"))},
				{Name: "SBOMS", Description: "Each architecture's attached SPDX SBOM, by digest (repository@sha256:...), comma-separated, in the order of IMAGES; empty entries without SBOM.", Value: str(strings.Join(sboms, ","))},
				{Name: "INDEX_SBOM", Description: "The index's attached SPDX SBOM, by digest (repository@sha256:...), listing each architecture's image and SBOM; empty without SBOM.", Value: str(taskResult(ManifestTask, "SBOM_IMAGE_REF"))},
			},
		},
	}
	return p
}

// MatrixName is the Pipeline whose platforms are chosen at run time.
const MatrixName = "multiarch-build-matrix"

// MatrixBuildTask is its one, matrixed, build task.
const MatrixBuildTask = "build"

// MatrixPipeline builds the platforms of its PLATFORMS param (an array,
// default the configured ones), one build per platform through a Tekton
// matrix, then the manifest. Nothing in it pins a build to its architecture
// (taskRunSpecs name a pipeline task, and the matrix has one for every
// platform): it needs the cluster's arch-pinning policy. Measured on Tekton
// v1.15.0: a matrix's results reach the next task only as arrays, and an
// array cannot fill a string param, hence the manifest's *_LIST params; a
// per-platform TAG_SUFFIX through matrix.include adds the include's platform
// to every run, hence PLATFORM_TAG_SUFFIX.
func MatrixPipeline(cfg *config.Config) *v1.Pipeline {
	p := Pipeline(cfg)
	p.Name = MatrixName
	p.Annotations["tekton.dev/displayName"] = "multi-arch build (platforms chosen at run time)"
	p.Annotations["tekton.dev/tags"] = "image-build, buildah, multi-arch, matrix"
	// Matrix results fanned in as arrays: measured on v1.15.0, the only
	// release tested; older ones with the beta matrix may work.
	p.Annotations["tekton.dev/pipelines.minVersion"] = "1.15.0"
	p.Spec.Description = "Builds an image natively on a node of each platform of PLATFORMS (default " + tasks.Platforms(cfg) + "), in parallel through a matrix, " +
		"then pushes one multi-arch index of them. Needs the cluster's arch-pinning admission policy (examples/cluster/arch-pinning.yaml) to put each build on its architecture."
	p.Spec.Params = append(v1.ParamSpecs{{
		Name: "PLATFORMS", Type: v1.ParamTypeArray,
		Description: "The platforms to build, each linux/ARCH[/VARIANT]; each is pushed to <tag>-ARCH[-VARIANT].",
		Default:     &v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: strings.Split(tasks.Platforms(cfg), ",")},
	}}, p.Spec.Params...)
	build := p.Spec.Tasks[0]
	build.Name = MatrixBuildTask
	var params v1.Params
	for _, prm := range build.Params {
		switch prm.Name {
		case "PLATFORM":
		case "TAG_SUFFIX":
			params = append(params, v1.Param{Name: "PLATFORM_TAG_SUFFIX", Value: str("true")})
		default:
			params = append(params, prm)
		}
	}
	build.Params = params
	build.Matrix = &v1.Matrix{Params: v1.Params{{Name: "PLATFORM", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(params.PLATFORMS[*])"}}}}}
	manifest := p.Spec.Tasks[len(p.Spec.Tasks)-1]
	manifest.Params = v1.Params{
		{Name: "IMAGE", Value: str(param("IMAGE"))},
		{Name: "IMAGES", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(tasks." + MatrixBuildTask + ".results.IMAGE_REF[*])"}}},
		{Name: "PLATFORM_LIST", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(params.PLATFORMS[*])"}}},
		{Name: "SOURCE_COMMIT_LIST", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(tasks." + MatrixBuildTask + ".results.COMMIT[*])"}}},
		{Name: "TLS_VERIFY", Value: str(param("TLS_VERIFY"))},
		{Name: "GIT_URL", Value: str(param("GIT_URL"))},
		{Name: "ANNOTATIONS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(params.ANNOTATIONS[*])"}}},
		{Name: "PUSH", Value: str(param("PUSH"))},
		{Name: "SOURCE_DATE_EPOCH", Value: str(param("SOURCE_DATE_EPOCH"))},
		{Name: "COMMIT_TIME_LIST", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(tasks." + MatrixBuildTask + ".results.COMMIT_TIME[*])"}}},
		{Name: "SBOM", Value: str(param("SBOM"))},
		{Name: "SBOMS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(tasks." + MatrixBuildTask + ".results.SBOM_IMAGE_REF[*])"}}},
	}
	p.Spec.Tasks = []v1.PipelineTask{build, manifest}
	// The git URL and commit come from the matrix only as arrays; the
	// string results Tekton Chains reads cannot take them.
	var results []v1.PipelineResult
	for _, r := range p.Spec.Results {
		switch {
		case strings.HasPrefix(r.Name, "CHAINS-GIT_"):
		case r.Name == "SBOMS":
			r.Description = "Each platform's attached SPDX SBOM, by digest (repository@sha256:...), in the order of the builds; empty entries without SBOM."
			r.Value = v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"$(tasks." + MatrixBuildTask + ".results.SBOM_IMAGE_REF[*])"}}
			results = append(results, r)
		default:
			results = append(results, r)
		}
	}
	p.Spec.Results = results
	return p
}

// MatrixRun runs MatrixPipeline for o's architectures, without taskRunSpecs.
func MatrixRun(o RunOptions) *v1.PipelineRun {
	pr := PipelineRun(o)
	pr.Spec.PipelineRef = o.pipelineRef(MatrixName)
	if pr.GenerateName != "" {
		pr.GenerateName = MatrixName + "-"
	}
	var ps []string
	for _, a := range o.Architectures {
		ps = append(ps, a.Platform())
	}
	pr.Spec.Params = append(v1.Params{{Name: "PLATFORMS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: ps}}}, pr.Spec.Params...)
	pr.Spec.TaskRunSpecs = nil
	return pr
}

// RunOptions is what a PipelineRun of the Pipeline is made of.
type RunOptions struct {
	// Name or GenerateName; one of them.
	Name, GenerateName string
	Namespace          string
	GitURL, GitRef     string
	Image              string
	// RegistrySecret, if set, is bound to the dockerconfig workspace.
	RegistrySecret string
	// ServiceAccount, if set, runs every TaskRun.
	ServiceAccount string
	Architectures  []config.Architecture
	// Cache, if true, passes CACHE "true" (the layer cache); otherwise the
	// Pipeline's default decides.
	Cache bool
	// Refs, if set, is the configuration whose references.mode says how the
	// run refers to the Pipeline; nil: by name.
	Refs *config.Config
	// HostUsers, if set, is every TaskRun pod's spec.hostUsers
	// (build.userNamespaces: false).
	HostUsers *bool
	// AppArmor is each architecture's build pods' AppArmor profile, by
	// architecture ID, where the catalog's differ per architecture
	// (config.PodAppArmor): the Task's steps then name none.
	AppArmor map[string]*corev1.AppArmorProfile
}

// PodAppArmor is RunOptions.AppArmor for cfg's architectures; nil where
// the Task's steps name the profile themselves.
func PodAppArmor(cfg *config.Config) map[string]*corev1.AppArmorProfile {
	var m map[string]*corev1.AppArmorProfile
	for _, a := range cfg.Architectures {
		if p := cfg.PodAppArmor(a); p != nil {
			if m == nil {
				m = map[string]*corev1.AppArmorProfile{}
			}
			m[a.ID()] = p
		}
	}
	return m
}

// ArchPodTemplate is the pod template that puts a build of a on a node of
// a: kubernetes.io/arch plus a's extra labels, its tolerations, and its
// AppArmor profile where the catalog's differ per architecture.
func ArchPodTemplate(a config.Architecture, appArmor *corev1.AppArmorProfile) *pod.PodTemplate {
	sel := map[string]string{corev1.LabelArchStable: a.Name}
	for k, v := range a.NodeSelector {
		sel[k] = v
	}
	t := &pod.PodTemplate{NodeSelector: sel, Tolerations: a.Tolerations}
	if appArmor != nil {
		t.SecurityContext = &corev1.PodSecurityContext{AppArmorProfile: appArmor.DeepCopy()}
	}
	return t
}

func (o RunOptions) pipelineRef(name string) *v1.PipelineRef {
	if o.Refs == nil {
		return &v1.PipelineRef{Name: name}
	}
	return PipelineRef(o.Refs, name)
}

// ExampleRunOptions is the example configuration's run.
func ExampleRunOptions(cfg *config.Config) RunOptions {
	return RunOptions{
		GenerateName:   Name + "-",
		Namespace:      cfg.Example.Namespace,
		GitURL:         cfg.Example.GitURL,
		GitRef:         cfg.Example.GitRef,
		Image:          cfg.Example.Image,
		RegistrySecret: cfg.Example.RegistrySecret,
		ServiceAccount: cfg.Example.ServiceAccount,
		Architectures:  cfg.Architectures,
		Cache:          cfg.Build.Cache,
		Refs:           cfg,
		HostUsers:      cfg.Build.HostUsers(),
		AppArmor:       PodAppArmor(cfg),
	}
}

// PipelineRun runs the Pipeline with one taskRunSpec per architecture: a
// Pipeline cannot carry a nodeSelector, so this is where each build is pinned
// to kubernetes.io/arch (plus the architecture's extra labels and tolerations).
func PipelineRun(o RunOptions) *v1.PipelineRun {
	pr := &v1.PipelineRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, GenerateName: o.GenerateName, Namespace: o.Namespace},
		Spec: v1.PipelineRunSpec{
			PipelineRef: o.pipelineRef(Name),
			Params: v1.Params{
				{Name: "GIT_URL", Value: str(o.GitURL)},
				{Name: "GIT_REF", Value: str(o.GitRef)},
				{Name: "IMAGE", Value: str(o.Image)},
			},
		},
	}
	if o.Cache {
		pr.Spec.Params = append(pr.Spec.Params, v1.Param{Name: "CACHE", Value: str("true")})
	}
	if o.RegistrySecret != "" {
		pr.Spec.Workspaces = []v1.WorkspaceBinding{{
			Name:   tasks.WorkspaceDockerConfig,
			Secret: &corev1.SecretVolumeSource{SecretName: o.RegistrySecret},
		}}
	}
	if o.ServiceAccount != "" {
		pr.Spec.TaskRunTemplate.ServiceAccountName = o.ServiceAccount
	}
	// The run's pod template, under every TaskRun's, manifest included:
	// Tekton merges each taskRunSpec's pod template field by field over it.
	if o.HostUsers != nil {
		pr.Spec.TaskRunTemplate.PodTemplate = &pod.PodTemplate{HostUsers: o.HostUsers}
	}
	for _, a := range o.Architectures {
		spec := v1.PipelineTaskRunSpec{
			PipelineTaskName: BuildTask(a),
			PodTemplate:      ArchPodTemplate(a, o.AppArmor[a.ID()]),
		}
		// Tekton merges a stepSpec over the Task's step key by key, as
		// config.BuildResources does.
		if a.Resources != nil {
			spec.StepSpecs = []v1.TaskRunStepSpec{{Name: tasks.BuildStep, ComputeResources: *a.Resources.DeepCopy()}}
		}
		pr.Spec.TaskRunSpecs = append(pr.Spec.TaskRunSpecs, spec)
	}
	return pr
}
