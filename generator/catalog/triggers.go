package catalog

import (
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
)

// addTriggers renders the build-on-push objects under examples/triggers/.
func addTriggers(files render.Files, cfg *config.Config, o Objects) error {
	t := o.Triggers
	objs := []any{t.EventListener, t.Binding, t.Template}
	note := "# Build on every push: kubectl apply -f examples/triggers/ (after the webhook Secret, see README.md)\n"
	if t.PullRequestTemplate != nil {
		objs = append(objs, t.PullRequestBinding, t.PullRequestTemplate)
		note = "# Build on every push, and build-only (nothing pushed) on every pull request:\n" +
			"# kubectl apply -f examples/triggers/ (after the webhook Secret, see README.md)\n"
	}
	if c := t.Cancel; c != nil {
		objs = append(objs, c.Binding, c.Template)
		note += "# A pull request's new commits, close or merge cancel its runs in progress\n" +
			"# (cancel-superseded.yaml is the canceller's identity and its limits).\n"
	}
	if err := multiDoc(files, "examples/triggers/triggers.yaml", note, objs...); err != nil {
		return err
	}
	if c := t.Cancel; c != nil {
		if err := multiDoc(files, "examples/triggers/cancel-superseded.yaml",
			"# The canceller of superseded pull-request runs: its own ServiceAccount, a Role to list\n"+
				"# and patch PipelineRuns in this namespace, and an admission policy that lets it do\n"+
				"# nothing but set spec.status: Cancelled on this catalog's pull-request runs.\n"+
				"# ValidatingAdmissionPolicy: Kubernetes >= 1.30.\n",
			c.ServiceAccount, c.Role, c.RoleBinding, c.Policy, c.PolicyBinding); err != nil {
			return err
		}
	}
	if err := multiDoc(files, "examples/triggers/rbac.yaml",
		"# The EventListener's identity, bound to the ClusterRoles the Triggers release installs.\n",
		t.ServiceAccount, t.RoleBinding, t.ClusterBinding); err != nil {
		return err
	}
	if t.Ingress != nil {
		if err := multiDoc(files, "examples/triggers/ingress.yaml",
			"# One way to reach the listener from "+providerName(cfg)+": an Ingress with TLS to its Service.\n",
			t.Ingress); err != nil {
			return err
		}
	}
	if err := multiDoc(files, "examples/triggers/webhook-secret.yaml.example",
		"# The shape of the webhook Secret. Create it from a random secret instead of filling this in:\n"+
			"#   kubectl -n "+cfg.Example.Namespace+" create secret generic "+cfg.Triggers.WebhookSecret+" --from-literal=secret=\"$(openssl rand -hex 20)\"\n"+
			"# (.example: kubectl apply -f examples/triggers/ skips this file.)\n",
		t.WebhookSecret); err != nil {
		return err
	}
	r, err := readme("triggers", cfg, o, nil)
	if err != nil {
		return err
	}
	files["examples/triggers/README.md"] = r
	return nil
}

func providerName(cfg *config.Config) string {
	if cfg.Triggers.Provider == config.ProviderGitLab {
		return "GitLab"
	}
	return "GitHub"
}
