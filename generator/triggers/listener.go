package triggers

import (
	"encoding/json"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
)

func eventListener(cfg *config.Config) *triggersv1.EventListener {
	t := cfg.Triggers
	return &triggersv1.EventListener{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: "EventListener"},
		ObjectMeta: objectMeta(cfg, Name),
		Spec: triggersv1.EventListenerSpec{
			ServiceAccountName: t.ServiceAccount,
			Triggers: []triggersv1.EventListenerTrigger{{
				Name: PushTrigger(cfg),
				// In this order, the filter and the overlay read only
				// deliveries the webhook secret vouches for.
				Interceptors: []*triggersv1.EventInterceptor{providerInterceptor(cfg), celInterceptor(cfg), tagInterceptor()},
				Bindings:     []*triggersv1.EventListenerBinding{{Ref: BindingName, Kind: triggersv1.NamespacedTriggerBindingKind}},
				Template:     &triggersv1.EventListenerTemplate{Ref: ptr(Name)},
			}},
		},
	}
}

// PushTrigger is the EventListener trigger's name for pushes.
func PushTrigger(cfg *config.Config) string { return cfg.Triggers.Provider + "-push" }

func binding(cfg *config.Config) *triggersv1.TriggerBinding {
	return newBinding(cfg, BindingName, bindingParams(cfg.Triggers.Provider))
}

// newBinding is the TriggerBinding name with params.
func newBinding(cfg *config.Config, name string, params []triggersv1.Param) *triggersv1.TriggerBinding {
	return &triggersv1.TriggerBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: "TriggerBinding"},
		ObjectMeta: objectMeta(cfg, name),
		Spec:       triggersv1.TriggerBindingSpec{Params: params},
	}
}

// bindingParams differ by provider because the push payloads name the same
// facts differently.
func bindingParams(provider string) []triggersv1.Param {
	if provider == config.ProviderGitLab {
		return []triggersv1.Param{
			{Name: "git-url", Value: "$(body.project.git_http_url)"},
			{Name: "git-revision", Value: "$(body.checkout_sha)"},
			{Name: "git-ref", Value: "$(body.ref)"},
			{Name: "repository", Value: "$(body.project.path_with_namespace)"},
			{Name: imageTagParam, Value: "$(extensions.image_tag)"},
			{Name: deliveryParam, Value: "$(extensions." + deliveryKey + ")"},
		}
	}
	return []triggersv1.Param{
		{Name: "git-url", Value: "$(body.repository.clone_url)"},
		{Name: "git-revision", Value: "$(body.after)"},
		{Name: "git-ref", Value: "$(body.ref)"},
		{Name: "repository", Value: "$(body.repository.full_name)"},
		{Name: imageTagParam, Value: "$(extensions.image_tag)"},
		{Name: deliveryParam, Value: "$(extensions." + deliveryKey + ")"},
	}
}

func triggerTemplate(cfg *config.Config) (*triggersv1.TriggerTemplate, error) {
	return newTemplate(cfg, Name, pushRun(cfg), []triggersv1.ParamSpec{
		{Name: "git-url", Description: "Repository to clone."},
		{Name: "git-revision", Description: "The pushed commit, full SHA."},
		{Name: "git-ref", Description: "The pushed ref (refs/heads/... or refs/tags/...)."},
		{Name: "repository", Description: "The repository's full name."},
		{Name: imageTagParam, Description: "Tag of the multi-arch image: the git tag, or the commit's first 12 hex digits."},
		deliveryParamSpec,
	})
}

var deliveryParamSpec = triggersv1.ParamSpec{Name: deliveryParam, Description: "The delivery's ID (X-GitHub-Delivery; GitLab's Idempotency-Key, else X-Gitlab-Event-UUID), lower-cased: the run's name ends with it, so a redelivery starts no second run."}

// newTemplate is the TriggerTemplate name that creates run (a PipelineRun
// or a TaskRun) from params.
func newTemplate(cfg *config.Config, name string, run any, params []triggersv1.ParamSpec) (*triggersv1.TriggerTemplate, error) {
	raw, err := json.Marshal(run)
	if err != nil {
		return nil, err
	}
	return &triggersv1.TriggerTemplate{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: "TriggerTemplate"},
		ObjectMeta: objectMeta(cfg, name),
		Spec: triggersv1.TriggerTemplateSpec{
			Params:            params,
			ResourceTemplates: []triggersv1.TriggerResourceTemplate{{RawExtension: runtime.RawExtension{Raw: raw}}},
		},
	}, nil
}

// pushRun is the example's PipelineRun, so that a push builds exactly what
// the example does, with the pushed commit and a tag derived from the push.
func pushRun(cfg *config.Config) *v1.PipelineRun {
	repo := cfg.Example.Image
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	opts := pipeline.ExampleRunOptions(cfg)
	opts.Namespace = "" // the listener creates runs in its own namespace
	opts.GitURL = "$(tt.params.git-url)"
	opts.GitRef = "$(tt.params.git-revision)"
	opts.Image = repo + ":$(tt.params." + imageTagParam + ")"
	pr := pipeline.PipelineRun(opts)
	if cfg.Triggers.Pipeline == pipeline.MatrixName {
		pr = pipeline.MatrixRun(opts)
	}
	// Named after the delivery: a redelivery's run has the same name, and
	// its create fails instead of building the commit again.
	pr.Name = strings.TrimSuffix(pr.GenerateName, "-") + "-" + deliveryName
	pr.GenerateName = ""
	pr.Annotations = map[string]string{
		"tekton-multiarch.dev/git-ref":    "$(tt.params.git-ref)",
		"tekton-multiarch.dev/repository": "$(tt.params.repository)",
	}
	return pr
}
