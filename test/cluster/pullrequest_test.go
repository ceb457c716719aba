package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gentriggers "github.com/tekton-multiarch/tekton-multiarch/generator/triggers"
)

const pullRequestFixture = "generator/triggers/testdata/github-pull-request.json"

// pullRequests posts GitHub pull_request deliveries to the running sink: a
// signed "opened" of the configured repository starts exactly one
// build-only run of the head commit, which succeeds on the kwok nodes;
// "closed", another repository and a bad signature start none, and the
// sink's log says why.
func (s *stack) pullRequests(t *testing.T, c catalog, sign func([]byte) string) {
	raw, err := os.ReadFile(filepath.Join(s.repo, pullRequestFixture))
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Number      int `json:"number"`
		PullRequest struct {
			Head struct {
				SHA  string `json:"sha"`
				Repo struct {
					CloneURL string `json:"clone_url"`
				} `json:"repo"`
			} `json:"head"`
		} `json:"pull_request"`
	}
	if err := json.Unmarshal(raw, &fixture); err != nil {
		t.Fatal(err)
	}
	// edit returns the fixture with one top-level or nested field changed.
	edit := func(path []string, v any) []byte {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		cur := m
		for _, p := range path[:len(path)-1] {
			cur = cur[p].(map[string]any)
		}
		cur[path[len(path)-1]] = v
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	headers := func(body []byte) map[string]string {
		return map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(body)}
	}
	trigger := gentriggers.PullRequestTrigger(c.cfg)

	t.Run("opened", func(t *testing.T) {
		id := s.postEvent(t, raw, headers(raw))
		pr := s.eventRun(t, c.ns(), id)
		t.Logf("event %s (pull request %d opened) created PipelineRun %s", id, fixture.Number, pr.Name)

		image := repository(c.cfg.Example.Image) + ":" + fmt.Sprintf("pr-%d", fixture.Number)
		params := map[string]string{}
		for _, p := range pr.Spec.Params {
			params[p.Name] = p.Value.StringVal
		}
		want := map[string]string{"GIT_URL": fixture.PullRequest.Head.Repo.CloneURL, "GIT_REF": fixture.PullRequest.Head.SHA,
			"IMAGE": image, "PUSH": "false", "CACHE": "false"}
		if !mapsEqual(params, want) {
			t.Errorf("PipelineRun params\n got %v\nwant %v", params, want)
		}
		if len(pr.Spec.Workspaces) != 0 {
			t.Errorf("PipelineRun binds workspaces %v; a pull request's run binds no Secret", pr.Spec.Workspaces)
		}
		if got := pr.Labels["triggers.tekton.dev/trigger"]; got != trigger {
			t.Errorf("PipelineRun made by trigger %q, want %q", got, trigger)
		}
		if got, want := pr.Annotations["tekton-multiarch.dev/pull-request"], fmt.Sprint(fixture.Number); got != want {
			t.Errorf("annotation pull-request = %q, want %q", got, want)
		}
		if t.Failed() {
			return
		}

		// The build TaskRuns get PUSH "false" where the Pipeline passes it on.
		r := &prRun{s: s, name: pr.Name}
		cfg := *c.cfg
		cfg.Example.GitURL = fixture.PullRequest.Head.Repo.CloneURL
		cfg.Example.GitRef = fixture.PullRequest.Head.SHA
		cfg.Example.Image = image
		cfg.Example.RegistrySecret = ""
		r.c = catalog{name: c.name + ", pull request", dir: c.dir, cfg: &cfg}
		builds := r.waitTaskRuns(t, buildTasks(r.c)...)
		for name, tr := range builds {
			for _, p := range tr.Spec.Params {
				if p.Name == "PUSH" && p.Value.StringVal != "false" {
					t.Errorf("TaskRun %s: PUSH %q, want \"false\"", name, p.Value.StringVal)
				}
			}
			for _, w := range tr.Spec.Workspaces {
				if w.Secret != nil {
					t.Errorf("TaskRun %s: workspace %s bound to Secret %s", name, w.Name, w.Secret.SecretName)
				}
			}
		}
		s.driveToSuccess(t, r)

		// Exactly one run, also a while later.
		time.Sleep(2 * time.Second)
		list, err := s.tekton.TektonV1().PipelineRuns(c.ns()).List(context.Background(), metav1.ListOptions{LabelSelector: eventIDKey + "=" + id})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 1 {
			t.Errorf("%d PipelineRuns for event %s, want 1", len(list.Items), id)
		}
	})

	closed := edit([]string{"action"}, "closed")
	other := edit([]string{"repository", "full_name"}, "someone/else")
	for _, tc := range []struct {
		name    string
		body    []byte
		headers map[string]string
		why     string
	}{
		{"closed", closed, headers(closed), "expression " + gentriggers.PullRequestFilter(c.cfg) + " && " + gentriggers.DeliveryCheck(c.cfg) + " did not return true"},
		{"other-repository", other, headers(other), "did not return true"},
		{"bad-signature", raw, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(closed)}, "payload signature check failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.triggeredRuns(t, c)
			id := s.postEvent(t, tc.body, tc.headers)
			s.checkDropped(t, c, before, id, trigger, tc.why)
		})
	}
}
