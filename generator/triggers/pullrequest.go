package triggers

import (
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// Names of the pull-request objects.
const (
	PullRequestName = "multiarch-build-pull-request"
	// The Pipelines' build-only switch and layer cache.
	pushParam  = "PUSH"
	cacheParam = "CACHE"
)

// PullRequestTrigger is the EventListener trigger's name for cfg's provider.
func PullRequestTrigger(cfg *config.Config) string {
	if cfg.Triggers.Provider == config.ProviderGitLab {
		return "gitlab-merge-request"
	}
	return "github-pull-request"
}

// PullRequestEventTypes are the webhook events of the pull-request trigger.
func PullRequestEventTypes(cfg *config.Config) []string {
	if cfg.Triggers.Provider == config.ProviderGitLab {
		return []string{"Merge Request Hook"}
	}
	return []string{"pull_request"}
}

// PullRequestFilter lets through a pull request of a configured repository
// that opened, got new commits or reopened; a closed, labelled or edited one
// builds nothing. Without pullRequests.forks only a head in the repository
// itself builds: a fork's clone URL is another repository, anyone's.
func PullRequestFilter(cfg *config.Config) string {
	repos := quoteAll(cfg.Triggers.Repositories)
	forks := cfg.Triggers.PullRequests.Forks
	if cfg.Triggers.Provider == config.ProviderGitLab {
		// GitLab sends "update" for title, label and assignee changes too;
		// only an update that pushed commits carries oldrev.
		f := "body.object_kind == 'merge_request' && body.project.path_with_namespace in " + repos +
			" && (body.object_attributes.action in ['open', 'reopen'] || (body.object_attributes.action == 'update' && has(body.object_attributes.oldrev)))"
		if !forks {
			f += " && body.object_attributes.source_project_id == body.object_attributes.target_project_id"
		}
		return f
	}
	f := "body.repository.full_name in " + repos + " && body.action in ['opened', 'synchronize', 'reopened']"
	if !forks {
		// A deleted fork leaves head.repo null.
		f += " && body.pull_request.head.repo != null && body.pull_request.head.repo.full_name == body.repository.full_name"
	}
	return f
}

func pullRequestInterceptors(cfg *config.Config) []*triggersv1.EventInterceptor {
	provider := providerInterceptor(cfg)
	for i, p := range provider.Params {
		if p.Name == "eventTypes" {
			provider.Params[i].Value = jsonValue(PullRequestEventTypes(cfg))
		}
	}
	return []*triggersv1.EventInterceptor{provider, {
		Name: ptr("only-configured-pull-requests"),
		Ref:  triggersv1.InterceptorRef{Name: "cel", Kind: triggersv1.ClusterInterceptorKind},
		Params: []triggersv1.InterceptorParams{
			{Name: "filter", Value: jsonValue(PullRequestFilter(cfg) + " && " + DeliveryCheck(cfg))},
			{Name: "overlays", Value: jsonValue([]map[string]string{{"key": deliveryKey, "expression": Delivery(cfg)}})},
		},
	}}
}

func pullRequestTrigger(cfg *config.Config) triggersv1.EventListenerTrigger {
	return triggersv1.EventListenerTrigger{
		Name:         PullRequestTrigger(cfg),
		Interceptors: pullRequestInterceptors(cfg),
		Bindings:     []*triggersv1.EventListenerBinding{{Ref: PullRequestName, Kind: triggersv1.NamespacedTriggerBindingKind}},
		Template:     &triggersv1.EventListenerTemplate{Ref: ptr(PullRequestName)},
	}
}

func pullRequestBinding(cfg *config.Config) *triggersv1.TriggerBinding {
	// The head's own repository and commit: a fork's branch is not in the
	// base repository, and its name can move while the run clones.
	params := []triggersv1.Param{
		{Name: "git-url", Value: "$(body.pull_request.head.repo.clone_url)"},
		{Name: "git-revision", Value: "$(body.pull_request.head.sha)"},
		{Name: "repository", Value: "$(body.repository.full_name)"},
		{Name: "head-repository", Value: "$(body.pull_request.head.repo.full_name)"},
		{Name: "pull-request", Value: "$(body.number)"},
		{Name: imageTagParam, Value: "pr-$(body.number)"},
		{Name: deliveryParam, Value: "$(extensions." + deliveryKey + ")"},
	}
	if cfg.Triggers.Provider == config.ProviderGitLab {
		params = []triggersv1.Param{
			{Name: "git-url", Value: "$(body.object_attributes.source.git_http_url)"},
			{Name: "git-revision", Value: "$(body.object_attributes.last_commit.id)"},
			{Name: "repository", Value: "$(body.project.path_with_namespace)"},
			{Name: "head-repository", Value: "$(body.object_attributes.source.path_with_namespace)"},
			{Name: "pull-request", Value: "$(body.object_attributes.iid)"},
			{Name: imageTagParam, Value: "mr-$(body.object_attributes.iid)"},
			{Name: deliveryParam, Value: "$(extensions." + deliveryKey + ")"},
		}
	}
	return newBinding(cfg, PullRequestName, params)
}

func pullRequestTemplate(cfg *config.Config) (*triggersv1.TriggerTemplate, error) {
	return newTemplate(cfg, PullRequestName, pullRequestRun(cfg), []triggersv1.ParamSpec{
		{Name: "git-url", Description: "The pull request's head repository, to clone."},
		{Name: "git-revision", Description: "The pull request's head commit, full SHA."},
		{Name: "repository", Description: "The repository the pull request is for."},
		{Name: "head-repository", Description: "The repository of its head: another one for a fork."},
		{Name: "pull-request", Description: "The pull request's number."},
		{Name: imageTagParam, Description: "Tag of the (never pushed) multi-arch image: pr-<number> (GitLab: mr-<iid>)."},
		deliveryParamSpec,
	})
}

// pullRequestRun is the push run made build-only: PUSH "false", no Secret
// bound (no registry credentials, no git or build secrets: the pull
// request's Dockerfile is code nobody has reviewed yet), and no layer cache,
// which would push its layers where the branch builds read them.
func pullRequestRun(cfg *config.Config) *v1.PipelineRun {
	pr := pushRun(cfg)
	// From the run's generateName, not its pipelineRef's name: a remote
	// reference (references.mode) has none.
	pr.Name = strings.TrimSuffix(pr.Name, deliveryName) + "pr-" + deliveryName
	pr.Spec.Workspaces = nil
	var params v1.Params
	for _, p := range pr.Spec.Params {
		if p.Name != cacheParam {
			params = append(params, p)
		}
	}
	pr.Spec.Params = append(params,
		v1.Param{Name: pushParam, Value: *v1.NewStructuredValues("false")},
		v1.Param{Name: cacheParam, Value: *v1.NewStructuredValues("false")})
	// What the canceller selects a pull request's runs by (labels) and
	// tells its commits apart by; a branch or tag build has neither.
	pr.Labels = map[string]string{
		PullRequestLabel: "$(tt.params.pull-request)",
		CommitLabel:      "$(tt.params.git-revision)",
	}
	pr.Annotations = map[string]string{
		"tekton-multiarch.dev/repository":      "$(tt.params.repository)",
		"tekton-multiarch.dev/head-repository": "$(tt.params.head-repository)",
		"tekton-multiarch.dev/pull-request":    "$(tt.params.pull-request)",
	}
	return pr
}
