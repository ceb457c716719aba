package catalog

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	podtpl "github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/pod"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	pl "github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

// buildPod makes the Pod Tekton's own pod builder makes for a TaskRun of
// task, with the params a pipeline task passes and the pod template the
// PipelineRun's taskRunSpec gives it.
func buildPod(t *testing.T, cfg *config.Config, task *v1.Task, params v1.Params, tmpl *podtpl.PodTemplate) *corev1.Pod {
	t.Helper()
	ns := cfg.Example.Namespace
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: task.Name + "-run", Namespace: ns, Annotations: map[string]string{}},
		Spec: v1.TaskRunSpec{
			TaskRef:            &v1.TaskRef{Name: task.Name},
			Params:             params,
			PodTemplate:        tmpl,
			ServiceAccountName: cfg.Example.ServiceAccount,
		},
	}
	// The TaskRun reconciler copies the Task's annotations to the TaskRun
	// (pkg/reconciler/taskrun), and the pod builder copies the TaskRun's to
	// the pod: that is how the pre-1.30 AppArmor annotation reaches the pod.
	for k, v := range task.Annotations {
		tr.Annotations[k] = v
	}
	sa := cfg.Example.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	kube := fake.NewSimpleClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}})
	cache, err := pod.NewEntrypointCache(kube)
	if err != nil {
		t.Fatal(err)
	}
	ctx := validate.Context()
	spec := task.Spec.DeepCopy()
	spec = resources.ApplyParameters(spec, tr, spec.Params...)
	b := pod.Builder{
		Images: pipeline.Images{
			EntrypointImage: "entrypoint:v1", SidecarLogResultsImage: "sidecarlogresults:v1", NopImage: "nop:v1",
			ShellImage: "shell:v1", ShellImageWin: "shell-win:v1", WorkingDirInitImage: "workingdirinit:v1",
		},
		KubeClient:      kube,
		EntrypointCache: cache,
	}
	p, err := b.Build(ctx, tr, *spec)
	if err != nil {
		t.Fatalf("Tekton's pod builder refused the %s TaskRun: %v", task.Name, err)
	}
	return p
}

func container(p *corev1.Pod, name string) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

var psa = func() policy.Evaluator {
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		panic(err)
	}
	return e
}()

// baselineViolations runs the Pod Security admission library's own checks.
func baselineViolations(p *corev1.Pod) string {
	r := policy.AggregateCheckResults(psa.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelBaseline, Version: psaapi.LatestVersion()}, &p.ObjectMeta, &p.Spec))
	if r.Allowed {
		return ""
	}
	return r.ForbiddenReason() + ": " + r.ForbiddenDetail()
}

// The pods Tekton makes from the catalog, per architecture and for every
// golden configuration: one pod holds clone and build, it is pinned to its
// architecture, gets /dev/fuse through the device plugin's resource exactly
// when its storage needs it, runs
// the build under the AppArmor profile, has no privileged container, and is
// admitted under Pod Security "baseline".
func TestBuildPods(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			o, err := NewObjects(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Each TaskRun's pod template as Tekton's reconciler makes it: the
			// taskRunSpec's merged over the run's (hostUsers is there).
			runTmpl := o.Example.Spec.TaskRunTemplate.PodTemplate
			specs := map[string]*podtpl.PodTemplate{}
			for _, s := range o.Example.Spec.TaskRunSpecs {
				specs[s.PipelineTaskName] = podtpl.MergePodTemplateWithDefault(s.PodTemplate, runTmpl)
			}
			for _, a := range cfg.Architectures {
				var pt *v1.PipelineTask
				for i := range o.Pipeline.Spec.Tasks {
					if o.Pipeline.Spec.Tasks[i].Name == pl.BuildTask(a) {
						pt = &o.Pipeline.Spec.Tasks[i]
					}
				}
				if pt == nil {
					t.Fatalf("no pipeline task for %s", a.Platform())
				}
				// The pipeline task's params, with the PipelineRun's values in.
				params := v1.Params{}
				for _, p := range pt.Params {
					switch p.Value.StringVal {
					case "$(params.IMAGE)":
						p.Value = *v1.NewStructuredValues(cfg.Example.Image)
					case "$(params.GIT_URL)":
						p.Value = *v1.NewStructuredValues(cfg.Example.GitURL)
					}
					if strings.HasPrefix(p.Value.StringVal, "$(params.") || len(p.Value.ArrayVal) > 0 {
						continue // defaults apply
					}
					params = append(params, p)
				}
				p := buildPod(t, cfg, o.Build, params, specs[pl.BuildTask(a)])
				checkHostUsers(t, cfg, p, a.Platform()+" build pod")

				if got := p.Spec.NodeSelector[corev1.LabelArchStable]; got != a.Name {
					t.Errorf("%s: nodeSelector kubernetes.io/arch = %q", a.Platform(), got)
				}
				for k, v := range a.NodeSelector {
					if p.Spec.NodeSelector[k] != v {
						t.Errorf("%s: nodeSelector %s = %q, want %q", a.Platform(), k, p.Spec.NodeSelector[k], v)
					}
				}
				clone, build := container(p, "step-clone"), container(p, "step-build")
				sbom, attach := container(p, "step-sbom"), container(p, "step-sbom-attach")
				if clone == nil || build == nil || sbom == nil || attach == nil || len(p.Spec.Containers) != 4 {
					t.Fatalf("%s: want one pod with step-clone, step-build, step-sbom and step-sbom-attach, got containers %v", a.Platform(), names(p.Spec.Containers))
				}
				// The SBOM steps run the user's nothing and need no privilege.
				for _, c := range []*corev1.Container{sbom, attach} {
					if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
						len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || sc.Privileged != nil {
						t.Errorf("%s: %s securityContext %+v, want no privilege escalation and every capability dropped", a.Platform(), c.Name, sc)
					}
				}
				if sbom.Image != cfg.Images.Syft || attach.Image != cfg.Images.Crane {
					t.Errorf("%s: SBOM step images %s, %s, want images.syft %s and images.crane %s", a.Platform(), sbom.Image, attach.Image, cfg.Images.Syft, cfg.Images.Crane)
				}
				// The fuse limit only for fuse-overlayfs: it is what keeps such a
				// build off nodes without the plugin, and what would keep every
				// other build off them for nothing.
				fuse := corev1.ResourceName(cfg.Build.FuseResource)
				q, ok := build.Resources.Limits[fuse]
				if cfg.Build.NeedsFuse() && (!ok || !q.Equal(resource.MustParse("1"))) {
					t.Errorf("%s: step-build limits %v, want %s: 1", a.Platform(), build.Resources.Limits, fuse)
				}
				if !cfg.Build.NeedsFuse() && ok {
					t.Errorf("%s: a %s build asks for %s", a.Platform(), cfg.Build.Storage, fuse)
				}
				if got := envValue(build, "STORAGE"); got != cfg.Build.Storage {
					t.Errorf("%s: step-build STORAGE = %q, want the configured %q", a.Platform(), got, cfg.Build.Storage)
				}
				checkBuildahSecurity(t, cfg, p, "step-build", cfg.AppArmorFor(a))
				if sp := clone.SecurityContext.SeccompProfile; sp != nil {
					t.Errorf("%s: step-clone names seccomp profile %+v; the kubelet's default is for it", a.Platform(), sp)
				}
				for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
					if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
						t.Errorf("%s: container %s is privileged", a.Platform(), c.Name)
					}
				}
				if v := baselineViolations(p); v != "" {
					t.Errorf("%s: the build pod is not admitted under Pod Security baseline: %s", a.Platform(), v)
				}
				// The layer cache: on as configured, its repository derived
				// from IMAGE with this architecture's suffix.
				buildEnv := map[string]string{}
				for _, e := range build.Env {
					buildEnv[e.Name] = e.Value
				}
				for k, want := range map[string]string{"CACHE": strconv.FormatBool(cfg.Build.Cache), "CACHE_REPO": "", "TAG_SUFFIX": "-" + a.ID()} {
					if got, ok := buildEnv[k]; !ok || got != want {
						t.Errorf("%s: step-build env %s = %q (set: %v), want %q", a.Platform(), k, got, ok, want)
					}
				}
			}

			images := make([]string, len(cfg.Architectures))
			for i := range images {
				images[i] = "registry.example.com/a@sha256:" + strings.Repeat("0", 64)
			}
			mp := buildPod(t, cfg, o.Manifest, v1.Params{
				{Name: "IMAGE", Value: *v1.NewStructuredValues(cfg.Example.Image)},
				{Name: "IMAGES", Value: *v1.NewStructuredValues(images[0], images[1:]...)},
				{Name: "PLATFORMS", Value: *v1.NewStructuredValues(tasks.Platforms(cfg))},
			}, runTmpl)
			checkHostUsers(t, cfg, mp, "manifest pod")
			if v := baselineViolations(mp); v != "" {
				t.Errorf("the manifest pod is not admitted under Pod Security baseline: %s", v)
			}
			// Where the architectures' settings differ, the manifest pod,
			// which may land on any node, asks for none.
			manifestAppArmor, uniform := cfg.AppArmorUniform()
			if !uniform {
				manifestAppArmor = config.AppArmorNone
			}
			checkBuildahSecurity(t, cfg, mp, "step-manifest", manifestAppArmor)
		})
	}
}

// checkHostUsers: a pod of a run with build.userNamespaces has hostUsers
// false, any other leaves the field out (the node's user namespace).
func checkHostUsers(t *testing.T, cfg *config.Config, p *corev1.Pod, what string) {
	t.Helper()
	want := cfg.Build.HostUsers()
	if got := p.Spec.HostUsers; (got == nil) != (want == nil) || got != nil && *got != *want {
		t.Errorf("%s: hostUsers %v, want %v (build.userNamespaces %v)", what, ptrString(got), ptrString(want), cfg.Build.UserNamespaces)
	}
}

func ptrString(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}

// checkBuildahSecurity: a buildah step runs under the Localhost seccomp
// profile, with the AppArmor profile its setting want asks for
// (checkAppArmor), with the runtime's default capabilities.
func checkBuildahSecurity(t *testing.T, cfg *config.Config, p *corev1.Pod, name, want string) {
	t.Helper()
	c := container(p, name)
	if c == nil || c.SecurityContext == nil {
		t.Fatalf("%s: no %s or no securityContext", p.Name, name)
	}
	sc := c.SecurityContext
	if sp := sc.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeLocalhost || sp.LocalhostProfile == nil || *sp.LocalhostProfile != cfg.Seccomp.Profile {
		t.Errorf("%s %s: seccompProfile = %+v, want Localhost %s", p.Name, name, sp, cfg.Seccomp.Profile)
	}
	if sc.Capabilities != nil {
		t.Errorf("%s %s: capabilities %+v, want the runtime's default set the seccomp profile is made for", p.Name, name, sc.Capabilities)
	}
	checkAppArmor(t, cfg, p, name, want)
}

// checkAppArmor: the container's effective AppArmor profile (its own field,
// else the pod's, or the pre-1.30 annotation) is the one the setting want
// asks for; none: no AppArmor anywhere in the pod.
func checkAppArmor(t *testing.T, cfg *config.Config, p *corev1.Pod, name, want string) {
	t.Helper()
	key := tasks.AppArmorAnnotationPrefix + name
	if cfg.AppArmor.Mode == config.AppArmorAnnotation && want != config.AppArmorNone {
		wantValue := map[string]string{config.AppArmorLocalhost: "localhost/" + cfg.AppArmor.Profile, config.AppArmorRuntimeDefault: "runtime/default"}[want]
		if got := p.Annotations[key]; got != wantValue {
			t.Errorf("%s: pod annotation %s = %q, want %q", p.Name, key, got, wantValue)
		}
		return
	}
	var eff *corev1.AppArmorProfile
	if c := container(p, name); c != nil && c.SecurityContext != nil {
		eff = c.SecurityContext.AppArmorProfile
	}
	if eff == nil && p.Spec.SecurityContext != nil {
		eff = p.Spec.SecurityContext.AppArmorProfile
	}
	switch want {
	case config.AppArmorLocalhost:
		if eff == nil || eff.Type != corev1.AppArmorProfileTypeLocalhost || eff.LocalhostProfile == nil || *eff.LocalhostProfile != cfg.AppArmor.Profile {
			t.Errorf("%s %s: effective appArmorProfile = %+v, want Localhost %s", p.Name, name, eff, cfg.AppArmor.Profile)
		}
	case config.AppArmorRuntimeDefault:
		if eff == nil || eff.Type != corev1.AppArmorProfileTypeRuntimeDefault {
			t.Errorf("%s %s: effective appArmorProfile = %+v, want RuntimeDefault", p.Name, name, eff)
		}
	case config.AppArmorNone:
		for k := range p.Annotations {
			if strings.HasPrefix(k, tasks.AppArmorAnnotationPrefix) {
				t.Errorf("%s: AppArmor annotation %s, want none", p.Name, k)
			}
		}
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if c.SecurityContext != nil && c.SecurityContext.AppArmorProfile != nil {
				t.Errorf("%s %s: appArmorProfile %+v, want none", p.Name, c.Name, c.SecurityContext.AppArmorProfile)
			}
		}
		if p.Spec.SecurityContext != nil && p.Spec.SecurityContext.AppArmorProfile != nil {
			t.Errorf("%s: pod appArmorProfile %+v, want none", p.Name, p.Spec.SecurityContext.AppArmorProfile)
		}
	default:
		t.Fatalf("no check for AppArmor setting %q", want)
	}
}

// The admission check above must be able to fail.
func TestBaselineRejectsAPrivilegedBuild(t *testing.T) {
	cfg := config.Default()
	o, err := NewObjects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	task := o.Build.DeepCopy()
	yes := true
	task.Spec.Steps[1].SecurityContext.Privileged = &yes
	p := buildPod(t, cfg, task, v1.Params{
		{Name: "IMAGE", Value: *v1.NewStructuredValues(cfg.Example.Image)},
		{Name: "PLATFORM", Value: *v1.NewStructuredValues("linux/amd64")},
		{Name: "GIT_URL", Value: *v1.NewStructuredValues(cfg.Example.GitURL)},
	}, nil)
	if v := baselineViolations(p); !strings.Contains(v, "privileged") {
		t.Errorf("a privileged build step passed baseline (%q)", v)
	}
}

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

// envValue is a container's env value by name, "" when it has none.
func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
