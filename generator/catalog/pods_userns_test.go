package catalog

import (
	"strings"
	"testing"

	podtpl "github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	pl "github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
)

// Pod Security for the build pod, with and without user namespaces, as the
// admission library (v0.35) judges it: both pass baseline; restricted
// refuses both, and with hostUsers: false no longer for running as root
// (runAsNonRoot and runAsUser are relaxed for user-namespaced pods from
// policy 1.35 on), still for the build step's runtime-default capabilities
// and privilege escalation, and for Tekton's init containers and the clone
// step, which name no seccomp profile.
func TestBuildPodPodSecurity(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		// restricted's failed checks, as the library names their reasons.
		restricted []string
	}{
		{"host users", "", []string{"allowPrivilegeEscalation != false", "unrestricted capabilities", "runAsNonRoot != true", "seccompProfile"}},
		{"user namespaces", "build: {userNamespaces: true}", []string{"allowPrivilegeEscalation != false", "unrestricted capabilities", "seccompProfile"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), "psa.yaml")
			if err != nil {
				t.Fatal(err)
			}
			o, err := NewObjects(cfg)
			if err != nil {
				t.Fatal(err)
			}
			a := cfg.Architectures[0]
			var tmpl *podtpl.PodTemplate
			for _, s := range o.Example.Spec.TaskRunSpecs {
				if s.PipelineTaskName == pl.BuildTask(a) {
					tmpl = podtpl.MergePodTemplateWithDefault(s.PodTemplate, o.Example.Spec.TaskRunTemplate.PodTemplate)
				}
			}
			p := buildPod(t, cfg, o.Build, v1.Params{
				{Name: "IMAGE", Value: *v1.NewStructuredValues(cfg.Example.Image)},
				{Name: "GIT_URL", Value: *v1.NewStructuredValues(cfg.Example.GitURL)},
				{Name: "PLATFORM", Value: *v1.NewStructuredValues(a.Platform())},
			}, tmpl)
			checkHostUsers(t, cfg, p, "build pod")
			if v := baselineViolations(p); v != "" {
				t.Errorf("not admitted under baseline: %s", v)
			}
			var failed []string
			for _, r := range psa.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &p.ObjectMeta, &p.Spec) {
				if !r.Allowed {
					failed = append(failed, r.ForbiddenReason)
				}
			}
			r := policy.AggregateCheckResults(psa.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &p.ObjectMeta, &p.Spec))
			t.Logf("restricted: %s: %s", r.ForbiddenReason(), r.ForbiddenDetail())
			if strings.Join(failed, ",") != strings.Join(tc.restricted, ",") {
				t.Errorf("restricted refuses for %v, want %v", failed, tc.restricted)
			}
		})
	}
}
