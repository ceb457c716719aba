package triggers_test

import (
	"regexp"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/triggers"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

// Pull request (merge request) payloads in GitHub's and GitLab's documented
// shapes, through the generated EventListener: which ones start a
// build-only run, of what, and which ones are dropped, by what.
func TestPullRequestEvents(t *testing.T) {
	const (
		headSHA   = "3c1f4a0b7e5d2c9f8a6b4d2e0f1a3c5e7b9d1f20"
		gitlabSHA = "b83d6e391c22777fca1ed3012fce84f633d7fed0"
		repoURL   = "https://github.com/tekton-multiarch/hello.git"
		forkURL   = "https://github.com/mallory/hello.git"
		glURL     = "https://gitlab.example.com/tekton-multiarch/hello.git"
		glForkURL = "https://gitlab.example.com/mallory/hello.git"
	)
	withConfig := func(edit func(*config.Config)) *config.Config {
		c := config.Default()
		edit(c)
		return c
	}
	forks := withConfig(func(c *config.Config) { c.Triggers.PullRequests.Forks = true })
	matrix := withConfig(func(c *config.Config) { c.Triggers.Pipeline = config.PipelineMatrix })
	gitlabCfg := withConfig(func(c *config.Config) { c.Triggers.Provider = config.ProviderGitLab })
	gitlabForks := withConfig(func(c *config.Config) {
		c.Triggers.Provider = config.ProviderGitLab
		c.Triggers.PullRequests.Forks = true
	})
	gh := func(edits map[string]any, secret string) func(t *testing.T) event {
		return func(t *testing.T) event {
			return githubEvent(t, "pull_request", payload(t, "github-pull-request.json", edits), secret)
		}
	}
	gl := func(edits map[string]any, token string) func(t *testing.T) event {
		return func(t *testing.T) event {
			return gitlabEvent("Merge Request Hook", payload(t, "gitlab-merge-request.json", edits), token)
		}
	}
	fork := map[string]any{"pull_request.head.repo.full_name": "mallory/hello", "pull_request.head.repo.clone_url": forkURL, "pull_request.head.repo.fork": true}
	glFork := map[string]any{"object_attributes.source_project_id": 16, "object_attributes.source.git_http_url": glForkURL,
		"object_attributes.source.path_with_namespace": "mallory/hello"}
	for _, tc := range []struct {
		name    string
		cfg     *config.Config
		event   func(t *testing.T) event
		wantTag string // "" means the event must be dropped
		wantURL string
		wantRev string
		dropBy  string // the interceptor that drops it, and the start of its message
	}{
		{"opened", nil, gh(nil, webhookSecret), "pr-42", repoURL, headSHA, ""},
		{"synchronize: new commits", nil, gh(map[string]any{"action": "synchronize"}, webhookSecret), "pr-42", repoURL, headSHA, ""},
		{"reopened", nil, gh(map[string]any{"action": "reopened"}, webhookSecret), "pr-42", repoURL, headSHA, ""},
		{"opened, matrix Pipeline", matrix, gh(nil, webhookSecret), "pr-42", repoURL, headSHA, ""},
		{"closed", nil, gh(map[string]any{"action": "closed"}, webhookSecret), "", "", "", "cel: expression " + triggers.PullRequestFilter(config.Default())},
		{"labeled", nil, gh(map[string]any{"action": "labeled"}, webhookSecret), "", "", "", "cel"},
		{"another repository", nil, gh(map[string]any{"repository.full_name": "someone/else"}, webhookSecret), "", "", "", "cel"},
		{"from a fork, forks off", nil, gh(fork, webhookSecret), "", "", "", "cel"},
		{"from a deleted fork, forks off", nil, gh(map[string]any{"pull_request.head.repo": nil}, webhookSecret), "", "", "", "cel"},
		{"from a fork, forks on: the fork's commit", forks, gh(fork, webhookSecret), "pr-42", forkURL, headSHA, ""},
		{"wrong signature", nil, gh(nil, "not-the-secret"), "", "", "", "github"},
		{"unsigned", nil, gh(nil, ""), "", "", "", "github"},
		{"gitlab open", gitlabCfg, gl(nil, webhookSecret), "mr-7", glURL, gitlabSHA, ""},
		{"gitlab reopen", gitlabCfg, gl(map[string]any{"object_attributes.action": "reopen"}, webhookSecret), "mr-7", glURL, gitlabSHA, ""},
		{"gitlab update with new commits", gitlabCfg, gl(map[string]any{"object_attributes.action": "update",
			"object_attributes.oldrev": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}, webhookSecret), "mr-7", glURL, gitlabSHA, ""},
		{"gitlab update of the title only", gitlabCfg, gl(map[string]any{"object_attributes.action": "update"}, webhookSecret), "", "", "", "cel"},
		{"gitlab close", gitlabCfg, gl(map[string]any{"object_attributes.action": "close", "object_attributes.state": "closed"}, webhookSecret), "", "", "", "cel"},
		{"gitlab merge", gitlabCfg, gl(map[string]any{"object_attributes.action": "merge", "object_attributes.state": "merged"}, webhookSecret), "", "", "", "cel"},
		{"gitlab another project", gitlabCfg, gl(map[string]any{"project.path_with_namespace": "someone/else"}, webhookSecret), "", "", "", "cel"},
		{"gitlab from a fork, forks off", gitlabCfg, gl(glFork, webhookSecret), "", "", "", "cel"},
		{"gitlab from a fork, forks on", gitlabForks, gl(glFork, webhookSecret), "mr-7", glForkURL, gitlabSHA, ""},
		{"gitlab wrong token", gitlabCfg, gl(nil, "nope"), "", "", "", "gitlab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == nil {
				cfg = config.Default()
			}
			pr := deliverChecked(t, cfg, tc.event(t), triggers.PullRequestTrigger(cfg), tc.wantTag != "", tc.dropBy)
			if pr == nil {
				return
			}
			checkBuildOnly(t, cfg, pr, tc.wantTag, tc.wantURL, tc.wantRev)
		})
	}
}

// checkBuildOnly: the run of the pull request's head, tagged after its
// number, with PUSH false, no layer cache, and no Secret at all.
func checkBuildOnly(t *testing.T, cfg *config.Config, pr *v1.PipelineRun, tag, url, rev string) {
	t.Helper()
	repo := cfg.Example.Image[:strings.LastIndex(cfg.Example.Image, ":")]
	for name, want := range map[string]string{"IMAGE": repo + ":" + tag, "GIT_URL": url, "GIT_REF": rev, "PUSH": "false", "CACHE": "false"} {
		if got := param(pr, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	n := 0
	for _, p := range pr.Spec.Params {
		if p.Name == "CACHE" || p.Name == "PUSH" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("PUSH and CACHE given %d times in all, want once each", n)
	}
	if len(pr.Spec.Workspaces) != 0 {
		t.Errorf("workspaces %v bound: a pull request's run must bind no Secret", pr.Spec.Workspaces)
	}
	if got, want := pr.Annotations["tekton-multiarch.dev/pull-request"], strings.TrimLeft(tag, "prm-"); got != want {
		t.Errorf("annotation pull-request = %q, want %q", got, want)
	}
	wantPipeline, wantSpecs := pipeline.Name, len(cfg.Architectures)
	if cfg.Triggers.Pipeline == config.PipelineMatrix {
		wantPipeline, wantSpecs = pipeline.MatrixName, 0
	}
	if pr.Spec.PipelineRef.Name != wantPipeline || len(pr.Spec.TaskRunSpecs) != wantSpecs {
		t.Errorf("run of %s with %d taskRunSpecs, want %s with %d", pr.Spec.PipelineRef.Name, len(pr.Spec.TaskRunSpecs), wantPipeline, wantSpecs)
	}
	// Named after the delivery, as a push's run, so a redelivery makes none.
	if delivery := regexp.MustCompile(`^` + wantPipeline + `-pr-[0-9a-f-]{36}$`); !delivery.MatchString(pr.Name) || pr.GenerateName != "" {
		t.Errorf("name %q, generateName %q: want the name %s-pr-<delivery ID>", pr.Name, pr.GenerateName, wantPipeline)
	}
	pr.Name = "from-pull-request"
	if err := validate.Check(validate.Objects{PipelineRuns: []*v1.PipelineRun{pr}}); err != nil {
		t.Errorf("the PipelineRun fails Tekton validation: %v", err)
	}
}

// A push, which the push trigger builds, is no pull request: the
// pull-request trigger's provider interceptor drops it by its event type.
func TestPushIsNoPullRequest(t *testing.T) {
	for _, tc := range []struct {
		provider string
		e        func(t *testing.T) event
		want     string
	}{
		{config.ProviderGitHub, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", nil), webhookSecret)
		}, "github: event type push is not allowed"},
		{config.ProviderGitLab, func(*testing.T) event {
			return gitlabEvent("Push Hook", payload(t, "gitlab-push.json", nil), webhookSecret)
		}, "gitlab: event type Push Hook is not allowed"},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			cfg := config.Default()
			cfg.Triggers.Provider = tc.provider
			o, err := triggers.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			trig := o.EventListener.Spec.Triggers[1]
			if trig.Name != triggers.PullRequestTrigger(cfg) {
				t.Fatalf("second trigger %q, want %q", trig.Name, triggers.PullRequestTrigger(cfg))
			}
			if pr, reason := deliverOne(t, cfg, o, trig, tc.e(t)); pr != nil || !strings.HasPrefix(reason, tc.want) {
				t.Errorf("run %v, reason %q; want no run, %q", pr, reason, tc.want)
			}
		})
	}
}

// With triggers.pullRequests.enabled false the listener has the push
// trigger only, and a pull request builds nothing.
func TestPullRequestsOff(t *testing.T) {
	cfg := config.Default()
	cfg.Triggers.PullRequests.Enabled = false
	o, err := triggers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(o.EventListener.Spec.Triggers); n != 1 || o.PullRequestBinding != nil || o.PullRequestTemplate != nil {
		t.Fatalf("%d triggers, binding %v, template %v: want the push trigger only", n, o.PullRequestBinding, o.PullRequestTemplate)
	}
	pr, reason := deliver(t, cfg, o, githubEvent(t, "pull_request", payload(t, "github-pull-request.json", nil), webhookSecret))
	if pr != nil || !strings.HasPrefix(reason, "github: event type pull_request is not allowed") {
		t.Errorf("run %v, reason %q: want the push trigger to refuse the event type", pr, reason)
	}
}
