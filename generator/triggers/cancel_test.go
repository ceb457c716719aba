package triggers_test

import (
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
	"github.com/tekton-multiarch/tekton-multiarch/generator/triggers"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

// The canceller's trigger, through Triggers' own interceptors and template
// resolution: new commits, a close or a merge of a pull request start one
// TaskRun naming the pull request and the commit to keep (none on close or
// merge); anything else, a branch push included, starts none.
func TestCancelEvents(t *testing.T) {
	const (
		headSHA   = "3c1f4a0b7e5d2c9f8a6b4d2e0f1a3c5e7b9d1f20"
		gitlabSHA = "b83d6e391c22777fca1ed3012fce84f633d7fed0"
	)
	gitlabCfg := config.Default()
	gitlabCfg.Triggers.Provider = config.ProviderGitLab
	gh := func(kind, fixture string, edits map[string]any) func(t *testing.T) event {
		return func(t *testing.T) event { return githubEvent(t, kind, payload(t, fixture, edits), webhookSecret) }
	}
	gl := func(edits map[string]any) func(t *testing.T) event {
		return func(t *testing.T) event {
			return gitlabEvent("Merge Request Hook", payload(t, "gitlab-merge-request.json", edits), webhookSecret)
		}
	}
	for _, tc := range []struct {
		name     string
		cfg      *config.Config
		event    func(t *testing.T) event
		cancel   bool
		wantPR   string
		wantRepo string
		wantKeep string
	}{
		{"synchronize keeps the new head", nil, gh("pull_request", "github-pull-request.json", map[string]any{"action": "synchronize"}), true, "42", "tekton-multiarch/hello", headSHA},
		{"closed keeps nothing", nil, gh("pull_request", "github-pull-request.json", map[string]any{"action": "closed", "pull_request.merged": true}), true, "42", "tekton-multiarch/hello", ""},
		{"a fork's new commits too", nil, gh("pull_request", "github-pull-request.json", map[string]any{"action": "synchronize", "pull_request.head.repo.full_name": "mallory/hello"}), true, "42", "tekton-multiarch/hello", headSHA},
		{"opened cancels nothing", nil, gh("pull_request", "github-pull-request.json", nil), false, "", "", ""},
		{"labeled cancels nothing", nil, gh("pull_request", "github-pull-request.json", map[string]any{"action": "labeled"}), false, "", "", ""},
		{"another repository", nil, gh("pull_request", "github-pull-request.json", map[string]any{"action": "closed", "repository.full_name": "someone/else"}), false, "", "", ""},
		{"a branch push cancels nothing", nil, gh("push", "github-push.json", nil), false, "", "", ""},
		{"gitlab update with new commits", gitlabCfg, gl(map[string]any{"object_attributes.action": "update", "object_attributes.oldrev": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}), true, "7", "tekton-multiarch/hello", gitlabSHA},
		{"gitlab close", gitlabCfg, gl(map[string]any{"object_attributes.action": "close"}), true, "7", "tekton-multiarch/hello", ""},
		{"gitlab merge", gitlabCfg, gl(map[string]any{"object_attributes.action": "merge"}), true, "7", "tekton-multiarch/hello", ""},
		{"gitlab title update", gitlabCfg, gl(map[string]any{"object_attributes.action": "update"}), false, "", "", ""},
		{"gitlab open", gitlabCfg, gl(nil), false, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == nil {
				cfg = config.Default()
			}
			o, err := triggers.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var trig *int
			for i := range o.EventListener.Spec.Triggers {
				if o.EventListener.Spec.Triggers[i].Name == triggers.CancelTrigger(cfg) {
					trig = &i
				}
			}
			if trig == nil {
				t.Fatalf("no trigger %s", triggers.CancelTrigger(cfg))
			}
			raw, why := deliverOne(t, cfg, o, o.EventListener.Spec.Triggers[*trig], tc.event(t))
			if !tc.cancel {
				if raw != nil {
					t.Fatalf("the event started a canceller:\n%s", raw)
				}
				t.Logf("dropped: %s", why)
				return
			}
			if raw == nil {
				t.Fatalf("dropped: %s", why)
			}
			var tr v1.TaskRun
			if err := json.Unmarshal(raw, &tr); err != nil || tr.Kind != "TaskRun" {
				t.Fatalf("not a TaskRun: %v\n%s", err, raw)
			}
			got := map[string]string{}
			for _, p := range tr.Spec.Params {
				got[p.Name] = p.Value.StringVal
			}
			want := map[string]string{"PULL_REQUEST": tc.wantPR, "REPOSITORY": tc.wantRepo, "KEEP_COMMIT": tc.wantKeep}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if tr.Spec.ServiceAccountName != cfg.Triggers.PullRequests.CancelServiceAccount {
				t.Errorf("runs as %q, want its own ServiceAccount %q", tr.Spec.ServiceAccountName, cfg.Triggers.PullRequests.CancelServiceAccount)
			}
			if !strings.HasPrefix(tr.Name, "multiarch-cancel-") {
				t.Errorf("name %q, want multiarch-cancel-<delivery>", tr.Name)
			}
			if s := tr.Spec.TaskSpec.Steps[0]; s.Script != scripts.CancelSuperseded || s.Image != cfg.Images.Kubectl {
				t.Errorf("step runs %s, want cancel-superseded.sh in images.kubectl", s.Image)
			}
			if err := validate.Check(validate.Objects{TaskRuns: []*v1.TaskRun{&tr}}); err != nil {
				t.Errorf("the TaskRun fails Tekton validation: %v", err)
			}
		})
	}
}

// Without the setting, no trigger, no canceller.
func TestCancelOff(t *testing.T) {
	cfg := config.Default()
	cfg.Triggers.PullRequests.CancelSuperseded = false
	o, err := triggers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.Cancel != nil {
		t.Error("cancel objects generated with cancelSuperseded: false")
	}
	for _, tr := range o.EventListener.Spec.Triggers {
		if tr.Name == triggers.CancelTrigger(cfg) {
			t.Errorf("trigger %s generated with cancelSuperseded: false", tr.Name)
		}
	}
}
