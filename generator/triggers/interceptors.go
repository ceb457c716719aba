package triggers

import (
	"strings"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + s + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Filter is the CEL expression that lets a push through. Repositories and
// branches are validated by config to hold no quote, so they are safe to
// splice in as CEL string literals.
func Filter(cfg *config.Config) string {
	t := cfg.Triggers
	var repo, refs []string
	for _, b := range t.Branches {
		refs = append(refs, "refs/heads/"+b)
	}
	var ref string
	switch {
	case len(refs) > 0 && t.Tags:
		ref = "(body.ref in " + quoteAll(refs) + " || body.ref.startsWith('refs/tags/'))"
	case len(refs) > 0:
		ref = "body.ref in " + quoteAll(refs)
	default:
		ref = "body.ref.startsWith('refs/tags/')"
	}
	repo = append(repo, t.Repositories...)
	switch t.Provider {
	case config.ProviderGitLab:
		// A deleted branch or tag pushes checkout_sha null.
		return "body.project.path_with_namespace in " + quoteAll(repo) + " && " + ref + " && has(body.checkout_sha) && body.checkout_sha != null"
	default:
		return "body.repository.full_name in " + quoteAll(repo) + " && " + ref + " && !body.deleted"
	}
}

// ImageTagOverlay derives the image tag: for a branch push the commit's
// first 12 hex digits; for a tag push the git tag made a valid image tag.
// Git allows in a tag what an image tag does not ([A-Za-z0-9_.-] only, at
// most 128): '+' (semver build metadata, v1.0.0+build.5) becomes '_', as
// Helm and other OCI tools write it, and every other character outside the
// set ('/' of release/1.0, ...) becomes '-'. A tag that still is not valid
// (too long, or starting with '.' or '-') is refused by ImageTagCheck.
func ImageTagOverlay(cfg *config.Config) string {
	sha := "body.after"
	if cfg.Triggers.Provider == config.ProviderGitLab {
		sha = "body.checkout_sha"
	}
	return "body.ref.startsWith('refs/tags/') ? body.ref.substring(10).replace('+', '_').translate('[^A-Za-z0-9_.-]', '-') : " + sha + ".substring(0, 12)"
}

// DeliveryRE is what a delivery's ID must be to end a PipelineRun's name:
// GitHub's and GitLab's are UUIDs (36 characters), lower-cased here.
const DeliveryRE = `^[0-9a-z]([0-9a-z-]{0,34}[0-9a-z])?$`

// Delivery is the CEL of the delivery's ID, which names the run it starts,
// so that a redelivery creates no second run (its create fails: the name
// exists). GitHub keeps X-GitHub-Delivery on a redelivery; GitLab keeps
// Idempotency-Key (17.4 and later) on its retries and resends, and older
// GitLab sends only X-Gitlab-Event-UUID, new on each resend.
func Delivery(cfg *config.Config) string {
	if cfg.Triggers.Provider == config.ProviderGitLab {
		return "(header.canonical('Idempotency-Key') != '' ? header.canonical('Idempotency-Key') : header.canonical('X-Gitlab-Event-Uuid')).lowerAscii()"
	}
	return "header.canonical('X-Github-Delivery').lowerAscii()"
}

// DeliveryCheck refuses a delivery whose ID cannot name a run (none, or not
// a UUID), naming the expression in the listener's log.
func DeliveryCheck(cfg *config.Config) string {
	return Delivery(cfg) + ".matches('" + DeliveryRE + "')"
}

// ImageTagRE is the OCI distribution spec's tag grammar.
const ImageTagRE = `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`

// ImageTagCheck refuses a push whose image tag is not valid, so that no
// run starts that cannot push; the listener's log names the expression.
func ImageTagCheck() string { return "extensions.image_tag.matches('" + ImageTagRE + "')" }

// providerInterceptor checks the webhook secret: without it anyone who can
// reach the listener could start builds.
func providerInterceptor(cfg *config.Config) *triggersv1.EventInterceptor {
	t := cfg.Triggers
	name, ref := "verify-github-signature", "github"
	if t.Provider == config.ProviderGitLab {
		name, ref = "verify-gitlab-token", "gitlab"
	}
	return &triggersv1.EventInterceptor{
		Name: ptr(name),
		Ref:  triggersv1.InterceptorRef{Name: ref, Kind: triggersv1.ClusterInterceptorKind},
		Params: []triggersv1.InterceptorParams{
			{Name: "secretRef", Value: jsonValue(map[string]string{"secretName": t.WebhookSecret, "secretKey": secretKey})},
			{Name: "eventTypes", Value: jsonValue(EventTypes(cfg))},
		},
	}
}

// celInterceptor also derives the image tag (extensions.image_tag): a binding
// can only copy payload fields, not compute from them.
func celInterceptor(cfg *config.Config) *triggersv1.EventInterceptor {
	return &triggersv1.EventInterceptor{
		Name: ptr("only-configured-pushes"),
		Ref:  triggersv1.InterceptorRef{Name: "cel", Kind: triggersv1.ClusterInterceptorKind},
		Params: []triggersv1.InterceptorParams{
			{Name: "filter", Value: jsonValue(Filter(cfg) + " && " + DeliveryCheck(cfg))},
			{Name: "overlays", Value: jsonValue([]map[string]string{
				{"key": "image_tag", "expression": ImageTagOverlay(cfg)},
				{"key": deliveryKey, "expression": Delivery(cfg)},
			})},
		},
	}
}

// tagInterceptor runs after celInterceptor, on the tag it derived: an
// interceptor's filter cannot see its own overlays.
func tagInterceptor() *triggersv1.EventInterceptor {
	return &triggersv1.EventInterceptor{
		Name:   ptr("valid-image-tag"),
		Ref:    triggersv1.InterceptorRef{Name: "cel", Kind: triggersv1.ClusterInterceptorKind},
		Params: []triggersv1.InterceptorParams{{Name: "filter", Value: jsonValue(ImageTagCheck())}},
	}
}

// EventTypes are the webhook events the provider interceptor lets through.
func EventTypes(cfg *config.Config) []string {
	if cfg.Triggers.Provider == config.ProviderGitLab {
		types := []string{"Push Hook"}
		if cfg.Triggers.Tags {
			types = append(types, "Tag Push Hook")
		}
		return types
	}
	return []string{"push"}
}
