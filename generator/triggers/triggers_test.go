package triggers_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"github.com/tektoncd/triggers/pkg/interceptors"
	"github.com/tektoncd/triggers/pkg/interceptors/cel"
	"github.com/tektoncd/triggers/pkg/interceptors/github"
	"github.com/tektoncd/triggers/pkg/interceptors/gitlab"
	"github.com/tektoncd/triggers/pkg/template"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/triggers"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

const webhookSecret = "s3cr3t-webhook-value"

type processor interface {
	Process(context.Context, *triggersv1.InterceptorRequest) *triggersv1.InterceptorResponse
}

// event is one webhook delivery.
type event struct {
	body   []byte
	header http.Header
}

func githubEvent(t *testing.T, kind string, body []byte, secret string) event {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", kind)
	h.Set("X-GitHub-Delivery", githubDelivery)
	if secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	return event{body, h}
}

const (
	githubDelivery  = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	gitlabEventUUID = "3e1c5e2b-8a5e-4c57-9f2d-0b8f1a7c6d41"
)

// withHeader is e with header k set to v, or removed when v is empty.
func withHeader(e event, k, v string) event {
	h := e.header.Clone()
	if v == "" {
		h.Del(k)
	} else {
		h.Set(k, v)
	}
	return event{e.body, h}
}

func gitlabEvent(kind string, body []byte, token string) event {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Gitlab-Event", kind)
	// Every GitLab delivery has one (GitLab >= 15.x); Idempotency-Key only
	// from 17.4.
	h.Set("X-Gitlab-Event-UUID", gitlabEventUUID)
	if token != "" {
		h.Set("X-Gitlab-Token", token)
	}
	return event{body, h}
}

// payload reads a fixture and applies edits to its top-level or nested keys.
func payload(t *testing.T, name string, edits map[string]any) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range edits {
		parts := strings.Split(k, ".")
		cur := m
		for _, p := range parts[:len(parts)-1] {
			cur = cur[p].(map[string]any)
		}
		cur[parts[len(parts)-1]] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deliver runs an event through the push trigger (see deliverTo).
func deliver(t *testing.T, cfg *config.Config, o triggers.Objects, e event) (*v1.PipelineRun, string) {
	return deliverTo(t, cfg, o, e, triggers.PushTrigger(cfg))
}

// deliverChecked builds cfg's objects and delivers e (deliverTo) with its
// outcome checked: where wantRun, the trigger must make the run, which is
// returned; else it must stop the event with a reason starting with dropBy
// (the interceptor's name), and nil is returned.
func deliverChecked(t *testing.T, cfg *config.Config, e event, trigger string, wantRun bool, dropBy string) *v1.PipelineRun {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("test config invalid: %v", errs)
	}
	o, err := triggers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pr, reason := deliverTo(t, cfg, o, e, trigger)
	if !wantRun {
		if pr != nil {
			t.Fatalf("the event was let through and made a PipelineRun for %s", param(pr, "IMAGE"))
		}
		t.Logf("dropped: %s", reason)
		if !strings.HasPrefix(reason, dropBy) {
			t.Errorf("dropped by %q, want the %s interceptor", reason, dropBy)
		}
		return nil
	}
	if pr == nil {
		t.Fatalf("the event was dropped: %s", reason)
	}
	return pr
}

// deliverTo runs an event through every trigger of the EventListener, as
// the sink does, with the Triggers module's own interceptor code, then
// through the bindings and templates with the module's own resolution
// code. It returns what the named trigger did: the PipelineRun it would
// create, or nil and the reason it stopped. Any other trigger that lets the
// event through fails the test: one event, at most one run.
func deliverTo(t *testing.T, cfg *config.Config, o triggers.Objects, e event, name string) (*v1.PipelineRun, string) {
	t.Helper()
	var pr *v1.PipelineRun
	reason, found := "", false
	for _, trig := range o.EventListener.Spec.Triggers {
		raw, why := deliverOne(t, cfg, o, trig, e)
		if trig.Name == name {
			found, reason = true, why
			if raw != nil {
				pr = &v1.PipelineRun{}
				if err := json.Unmarshal(raw, pr); err != nil || pr.Kind != "PipelineRun" {
					t.Fatalf("the template's resource is not a PipelineRun: %v\n%s", err, raw)
				}
			}
			continue
		}
		// The canceller's trigger also takes the events that supersede a
		// pull request's runs (TestCancelEvents).
		if raw != nil && trig.Name != triggers.CancelTrigger(cfg) {
			t.Fatalf("trigger %s also let the event through", trig.Name)
		}
	}
	if !found {
		t.Fatalf("no trigger %q", name)
	}
	return pr, reason
}

// deliverOne runs e through trig's interceptors, then its binding and
// template: the one resource it creates, or nil and why it stopped.
func deliverOne(t *testing.T, cfg *config.Config, o triggers.Objects, trig triggersv1.EventListenerTrigger, e event) ([]byte, string) {
	t.Helper()
	kube := fake.NewSimpleClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: cfg.Triggers.WebhookSecret, Namespace: cfg.Example.Namespace},
		Data:       map[string][]byte{"secret": []byte(webhookSecret)},
	})
	sg := interceptors.DefaultSecretGetter(kube.CoreV1())
	impls := map[string]processor{
		"github": github.NewInterceptor(sg),
		"gitlab": gitlab.NewInterceptor(sg),
		"cel":    cel.NewInterceptor(sg),
	}
	extensions := map[string]any{}
	for _, ic := range trig.Interceptors {
		params := map[string]any{}
		for _, p := range ic.Params {
			var v any
			if err := json.Unmarshal(p.Value.Raw, &v); err != nil {
				t.Fatal(err)
			}
			params[p.Name] = v
		}
		impl, ok := impls[ic.Ref.Name]
		if !ok {
			t.Fatalf("no interceptor %q", ic.Ref.Name)
		}
		resp := impl.Process(context.Background(), &triggersv1.InterceptorRequest{
			Body:              string(e.body),
			Header:            e.header,
			Extensions:        extensions,
			InterceptorParams: params,
			Context: &triggersv1.TriggerContext{
				EventURL:  "https://builds.example.com/",
				EventID:   "event-1",
				TriggerID: "namespaces/" + cfg.Example.Namespace + "/triggers/" + trig.Name,
			},
		})
		if !resp.Continue {
			return nil, ic.Ref.Name + ": " + resp.Status.Message
		}
		for k, v := range resp.Extensions {
			extensions[k] = v
		}
	}

	bindings := map[string]*triggersv1.TriggerBinding{o.Binding.Name: o.Binding}
	templates := map[string]*triggersv1.TriggerTemplate{o.Template.Name: o.Template}
	if o.PullRequestBinding != nil {
		bindings[o.PullRequestBinding.Name] = o.PullRequestBinding
		templates[o.PullRequestTemplate.Name] = o.PullRequestTemplate
	}
	if o.Cancel != nil {
		bindings[o.Cancel.Binding.Name] = o.Cancel.Binding
		templates[o.Cancel.Template.Name] = o.Cancel.Template
	}
	rt, err := template.ResolveTrigger(triggersv1.Trigger{Spec: triggersv1.TriggerSpec{Bindings: trig.Bindings, Template: *trig.Template}},
		func(name string) (*triggersv1.TriggerBinding, error) {
			if bindings[name] == nil {
				t.Fatalf("binding %q is not a generated one", name)
			}
			return bindings[name], nil
		},
		func(string) (*triggersv1.ClusterTriggerBinding, error) {
			t.Fatal("no ClusterTriggerBinding expected")
			return nil, nil
		},
		func(name string) (*triggersv1.TriggerTemplate, error) {
			if templates[name] == nil {
				t.Fatalf("template %q is not a generated one", name)
			}
			return templates[name], nil
		})
	if err != nil {
		t.Fatal(err)
	}
	params, err := template.ResolveParams(rt, e.body, e.header, extensions, template.NewTriggerContext("event-1"))
	if err != nil {
		t.Fatal(err)
	}
	resources := template.ResolveResources(rt.TriggerTemplate, params)
	if len(resources) != 1 {
		t.Fatalf("template makes %d resources, want 1", len(resources))
	}
	return resources[0], ""
}

func param(pr *v1.PipelineRun, name string) string {
	for _, p := range pr.Spec.Params {
		if p.Name == name {
			return p.Value.StringVal
		}
	}
	return ""
}

// config names the Pipelines as the pipeline package does.
func TestPipelineNames(t *testing.T) {
	if config.PipelineExplicit != pipeline.Name || config.PipelineMatrix != pipeline.MatrixName {
		t.Errorf("config's Pipeline names %s, %s differ from the pipeline package's %s, %s",
			config.PipelineExplicit, config.PipelineMatrix, pipeline.Name, pipeline.MatrixName)
	}
}

func TestPushEvents(t *testing.T) {
	const after = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
	const gitlabSHA = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
	withConfig := func(edit func(*config.Config)) *config.Config {
		c := config.Default()
		edit(c)
		return c
	}
	gitlabCfg := withConfig(func(c *config.Config) { c.Triggers.Provider = config.ProviderGitLab })
	noTags := withConfig(func(c *config.Config) { c.Triggers.Tags = false })
	matrix := withConfig(func(c *config.Config) { c.Triggers.Pipeline = config.PipelineMatrix })
	for _, tc := range []struct {
		name     string
		cfg      *config.Config
		event    func(t *testing.T) event
		wantTag  string // "" means the event must be dropped
		wantRev  string
		dropedBy string // the interceptor that drops it, and the start of its message
	}{
		{"push to the configured branch", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", nil), webhookSecret)
		}, after[:12], after, ""},
		{"push running the matrix Pipeline", matrix, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", nil), webhookSecret)
		}, after[:12], after, ""},
		{"push to another branch", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/heads/feature/x"}), webhookSecret)
		}, "", "", "cel"},
		{"push to another repository", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"repository.full_name": "someone/else"}), webhookSecret)
		}, "", "", "cel"},
		{"tag push with tags on", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/tags/v1.2.3"}), webhookSecret)
		}, "v1.2.3", after, ""},
		// Git tags that are not image tags, mapped to valid ones.
		{"tag with a slash", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/tags/release/1.0"}), webhookSecret)
		}, "release-1.0", after, ""},
		{"semver tag with build metadata", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/tags/v1.0.0+build.5"}), webhookSecret)
		}, "v1.0.0_build.5", after, ""},
		{"tag with other characters", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/tags/v2@rc#1~x"}), webhookSecret)
		}, "v2-rc-1-x", after, ""},
		{"gitlab tag with a slash", gitlabCfg, func(t *testing.T) event {
			return gitlabEvent("Tag Push Hook", payload(t, "gitlab-push.json", map[string]any{"ref": "refs/tags/release/2.0+x", "object_kind": "tag_push"}), webhookSecret)
		}, "release-2.0_x", gitlabSHA, ""},
		// Tags no mapping makes valid are refused at the listener.
		{"tag longer than 128", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/tags/v" + strings.Repeat("1", 128)}), webhookSecret)
		}, "", "", "cel: expression " + triggers.ImageTagCheck()},
		{"tag starting with '-' once mapped", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/tags/@v1"}), webhookSecret)
		}, "", "", "cel: expression " + triggers.ImageTagCheck()},
		{"tag push with tags off", noTags, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"ref": "refs/tags/v1.2.3"}), webhookSecret)
		}, "", "", "cel"},
		{"branch deletion", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", map[string]any{"deleted": true, "after": strings.Repeat("0", 40)}), webhookSecret)
		}, "", "", "cel"},
		{"ping", nil, func(t *testing.T) event {
			return githubEvent(t, "ping", payload(t, "github-ping.json", nil), webhookSecret)
		}, "", "", "github"},
		{"wrong signature", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", nil), "not-the-secret")
		}, "", "", "github"},
		{"unsigned", nil, func(t *testing.T) event {
			return githubEvent(t, "push", payload(t, "github-push.json", nil), "")
		}, "", "", "github"},
		{"gitlab push with the right token", gitlabCfg, func(t *testing.T) event {
			return gitlabEvent("Push Hook", payload(t, "gitlab-push.json", nil), webhookSecret)
		}, gitlabSHA[:12], gitlabSHA, ""},
		{"gitlab push with a wrong token", gitlabCfg, func(t *testing.T) event {
			return gitlabEvent("Push Hook", payload(t, "gitlab-push.json", nil), "nope")
		}, "", "", "gitlab"},
		{"gitlab push without a token", gitlabCfg, func(t *testing.T) event {
			return gitlabEvent("Push Hook", payload(t, "gitlab-push.json", nil), "")
		}, "", "", "gitlab"},
		{"gitlab push to another branch", gitlabCfg, func(t *testing.T) event {
			return gitlabEvent("Push Hook", payload(t, "gitlab-push.json", map[string]any{"ref": "refs/heads/dev"}), webhookSecret)
		}, "", "", "cel"},
		{"gitlab tag push", gitlabCfg, func(t *testing.T) event {
			return gitlabEvent("Tag Push Hook", payload(t, "gitlab-push.json", map[string]any{"ref": "refs/tags/v2.0.0", "object_kind": "tag_push"}), webhookSecret)
		}, "v2.0.0", gitlabSHA, ""},
		{"gitlab branch deletion", gitlabCfg, func(t *testing.T) event {
			return gitlabEvent("Push Hook", payload(t, "gitlab-push.json", map[string]any{"checkout_sha": nil}), webhookSecret)
		}, "", "", "cel"},
		// The delivery's ID names the run; without a usable one, no run.
		{"no delivery ID", nil, func(t *testing.T) event {
			return withHeader(githubEvent(t, "push", payload(t, "github-push.json", nil), webhookSecret), "X-GitHub-Delivery", "")
		}, "", "", "cel: expression"},
		{"delivery ID that is no name", nil, func(t *testing.T) event {
			return withHeader(githubEvent(t, "push", payload(t, "github-push.json", nil), webhookSecret), "X-GitHub-Delivery", "../x")
		}, "", "", "cel: expression"},
		{"gitlab push with an Idempotency-Key", gitlabCfg, func(t *testing.T) event {
			return withHeader(gitlabEvent("Push Hook", payload(t, "gitlab-push.json", nil), webhookSecret), "Idempotency-Key", "6C1F0A2E-1B7D-4E0B-9D3A-2F5C8E7A9B10")
		}, gitlabSHA[:12], gitlabSHA, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == nil {
				cfg = config.Default()
			}
			pr := deliverChecked(t, cfg, tc.event(t), triggers.PushTrigger(cfg), tc.wantTag != "", tc.dropedBy)
			if pr == nil {
				return
			}
			repo := cfg.Example.Image[:strings.LastIndex(cfg.Example.Image, ":")]
			if got := param(pr, "IMAGE"); got != repo+":"+tc.wantTag {
				t.Errorf("IMAGE = %q, want %q", got, repo+":"+tc.wantTag)
			}
			if got := param(pr, "GIT_REF"); got != tc.wantRev {
				t.Errorf("GIT_REF = %q, want the pushed commit %q", got, tc.wantRev)
			}
			if got := param(pr, "GIT_URL"); !strings.HasSuffix(got, "tekton-multiarch/hello.git") {
				t.Errorf("GIT_URL = %q", got)
			}
			if cfg.Triggers.Pipeline == config.PipelineMatrix {
				// No taskRunSpecs: the arch policy pins the matrix's builds.
				var platforms []string
				for _, p := range pr.Spec.Params {
					if p.Name == "PLATFORMS" {
						platforms = p.Value.ArrayVal
					}
				}
				if pr.Spec.PipelineRef.Name != pipeline.MatrixName || len(pr.Spec.TaskRunSpecs) != 0 || strings.Join(platforms, ",") != "linux/amd64,linux/arm64" {
					t.Errorf("run of %s, %d taskRunSpecs, PLATFORMS %v; want %s, none, the configured platforms",
						pr.Spec.PipelineRef.Name, len(pr.Spec.TaskRunSpecs), platforms, pipeline.MatrixName)
				}
			} else if len(pr.Spec.TaskRunSpecs) != len(cfg.Architectures) {
				t.Fatalf("%d taskRunSpecs, want one per architecture", len(pr.Spec.TaskRunSpecs))
			}
			for i, a := range cfg.Architectures {
				if len(pr.Spec.TaskRunSpecs) == 0 {
					break
				}
				s := pr.Spec.TaskRunSpecs[i]
				if s.PipelineTaskName != "build-"+a.ID() || s.PodTemplate.NodeSelector["kubernetes.io/arch"] != a.Name {
					t.Errorf("taskRunSpecs[%d] = %s %v", i, s.PipelineTaskName, s.PodTemplate.NodeSelector)
				}
			}
			// Named after the delivery, lower-cased: a redelivery's run
			// would have the same name, and its create fails.
			delivery := tc.event(t).header.Get("X-GitHub-Delivery")
			if cfg.Triggers.Provider == config.ProviderGitLab {
				delivery = tc.event(t).header.Get("Idempotency-Key")
				if delivery == "" {
					delivery = gitlabEventUUID
				}
			}
			if want := pr.Spec.PipelineRef.Name + "-" + strings.ToLower(delivery); pr.GenerateName != "" || pr.Name != want {
				t.Errorf("name %q, generateName %q; want the name %q", pr.Name, pr.GenerateName, want)
			}
			pr.Name = "from-push"
			if err := validate.Check(validate.Objects{PipelineRuns: []*v1.PipelineRun{pr}}); err != nil {
				t.Errorf("the PipelineRun fails Tekton validation: %v", err)
			}
		})
	}
}
