// Package triggers builds the Tekton Triggers objects that start a
// multi-arch build on every git push: EventListener, TriggerBinding,
// TriggerTemplate, and the identity the listener runs as.
package triggers

import (
	"encoding/json"
	"strings"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
)

// Names of the generated objects.
const (
	Name          = "multiarch-build"
	BindingName   = "multiarch-build-push"
	ListenerPort  = 8080
	secretKey     = "secret"
	apiVersion    = "triggers.tekton.dev/v1beta1"
	imageTagParam = "image-tag"
)

// Objects are the Triggers objects and the listener's identity.
type Objects struct {
	EventListener  *triggersv1.EventListener
	Binding        *triggersv1.TriggerBinding
	Template       *triggersv1.TriggerTemplate
	ServiceAccount *corev1.ServiceAccount
	RoleBinding    *rbacv1.RoleBinding
	ClusterBinding *rbacv1.ClusterRoleBinding
	Ingress        *networkingv1.Ingress // nil without triggers.ingressHost
	WebhookSecret  *corev1.Secret        // a shape to fill in, never applied as is
}

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

// ImageTagOverlay derives the image tag: the git tag for a tag push, the
// commit's first 12 hex digits for a branch push.
func ImageTagOverlay(cfg *config.Config) string {
	sha := "body.after"
	if cfg.Triggers.Provider == config.ProviderGitLab {
		sha = "body.checkout_sha"
	}
	return "body.ref.startsWith('refs/tags/') ? body.ref.substring(10) : " + sha + ".substring(0, 12)"
}

func jsonValue(v any) apiextensionsv1.JSON {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return apiextensionsv1.JSON{Raw: b}
}

func ptr[T any](v T) *T { return &v }

// New builds every Triggers object for cfg.
func New(cfg *config.Config) (Objects, error) {
	ns := cfg.Example.Namespace
	t := cfg.Triggers
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "tekton-multiarch"}}
	}

	var provider triggersv1.EventInterceptor
	var binding []triggersv1.Param
	switch t.Provider {
	case config.ProviderGitLab:
		provider = triggersv1.EventInterceptor{
			Name: ptr("verify-gitlab-token"),
			Ref:  triggersv1.InterceptorRef{Name: "gitlab", Kind: triggersv1.ClusterInterceptorKind},
			Params: []triggersv1.InterceptorParams{
				{Name: "secretRef", Value: jsonValue(map[string]string{"secretName": t.WebhookSecret, "secretKey": secretKey})},
				{Name: "eventTypes", Value: jsonValue(EventTypes(cfg))},
			},
		}
		binding = []triggersv1.Param{
			{Name: "git-url", Value: "$(body.project.git_http_url)"},
			{Name: "git-revision", Value: "$(body.checkout_sha)"},
			{Name: "git-ref", Value: "$(body.ref)"},
			{Name: "repository", Value: "$(body.project.path_with_namespace)"},
			{Name: imageTagParam, Value: "$(extensions.image_tag)"},
		}
	default:
		provider = triggersv1.EventInterceptor{
			Name: ptr("verify-github-signature"),
			Ref:  triggersv1.InterceptorRef{Name: "github", Kind: triggersv1.ClusterInterceptorKind},
			Params: []triggersv1.InterceptorParams{
				{Name: "secretRef", Value: jsonValue(map[string]string{"secretName": t.WebhookSecret, "secretKey": secretKey})},
				{Name: "eventTypes", Value: jsonValue(EventTypes(cfg))},
			},
		}
		binding = []triggersv1.Param{
			{Name: "git-url", Value: "$(body.repository.clone_url)"},
			{Name: "git-revision", Value: "$(body.after)"},
			{Name: "git-ref", Value: "$(body.ref)"},
			{Name: "repository", Value: "$(body.repository.full_name)"},
			{Name: imageTagParam, Value: "$(extensions.image_tag)"},
		}
	}
	cel := triggersv1.EventInterceptor{
		Name: ptr("only-configured-pushes"),
		Ref:  triggersv1.InterceptorRef{Name: "cel", Kind: triggersv1.ClusterInterceptorKind},
		Params: []triggersv1.InterceptorParams{
			{Name: "filter", Value: jsonValue(Filter(cfg))},
			{Name: "overlays", Value: jsonValue([]map[string]string{{"key": "image_tag", "expression": ImageTagOverlay(cfg)}})},
		},
	}

	el := &triggersv1.EventListener{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: "EventListener"},
		ObjectMeta: meta(Name),
		Spec: triggersv1.EventListenerSpec{
			ServiceAccountName: t.ServiceAccount,
			Triggers: []triggersv1.EventListenerTrigger{{
				Name:         t.Provider + "-push",
				Interceptors: []*triggersv1.EventInterceptor{&provider, &cel},
				Bindings:     []*triggersv1.EventListenerBinding{{Ref: BindingName, Kind: triggersv1.NamespacedTriggerBindingKind}},
				Template:     &triggersv1.EventListenerTemplate{Ref: ptr(Name)},
			}},
		},
	}
	tb := &triggersv1.TriggerBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: "TriggerBinding"},
		ObjectMeta: meta(BindingName),
		Spec:       triggersv1.TriggerBindingSpec{Params: binding},
	}

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
	pr.Annotations = map[string]string{
		"tekton-multiarch.dev/git-ref":    "$(tt.params.git-ref)",
		"tekton-multiarch.dev/repository": "$(tt.params.repository)",
	}
	raw, err := json.Marshal(pr)
	if err != nil {
		return Objects{}, err
	}
	tt := &triggersv1.TriggerTemplate{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: "TriggerTemplate"},
		ObjectMeta: meta(Name),
		Spec: triggersv1.TriggerTemplateSpec{
			Params: []triggersv1.ParamSpec{
				{Name: "git-url", Description: "Repository to clone."},
				{Name: "git-revision", Description: "The pushed commit, full SHA."},
				{Name: "git-ref", Description: "The pushed ref (refs/heads/... or refs/tags/...)."},
				{Name: "repository", Description: "The repository's full name."},
				{Name: imageTagParam, Description: "Tag of the multi-arch image: the git tag, or the commit's first 12 hex digits."},
			},
			ResourceTemplates: []triggersv1.TriggerResourceTemplate{{RawExtension: runtime.RawExtension{Raw: raw}}},
		},
	}

	o := Objects{EventListener: el, Binding: tb, Template: tt}
	o.ServiceAccount = &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(t.ServiceAccount),
	}
	// The roles the Triggers installation ships for EventListeners, bound
	// as its documentation prescribes.
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: t.ServiceAccount, Namespace: ns}}
	o.RoleBinding = &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: meta(t.ServiceAccount + "-eventlistener"),
		Subjects:   subject,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tekton-triggers-eventlistener-roles"},
	}
	o.ClusterBinding = &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + t.ServiceAccount + "-eventlistener", Labels: map[string]string{"app.kubernetes.io/part-of": "tekton-multiarch"}},
		Subjects:   subject,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tekton-triggers-eventlistener-clusterroles"},
	}
	if t.IngressHost != "" {
		prefix := networkingv1.PathTypePrefix
		o.Ingress = &networkingv1.Ingress{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
			ObjectMeta: meta("el-" + Name),
			Spec: networkingv1.IngressSpec{
				TLS: []networkingv1.IngressTLS{{Hosts: []string{t.IngressHost}, SecretName: "el-" + Name + "-tls"}},
				Rules: []networkingv1.IngressRule{{
					Host: t.IngressHost,
					IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
						Paths: []networkingv1.HTTPIngressPath{{
							Path: "/", PathType: &prefix,
							Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
								// The Triggers controller names the listener's Service el-<name>.
								Name: "el-" + Name, Port: networkingv1.ServiceBackendPort{Number: ListenerPort},
							}},
						}},
					}},
				}},
			},
		}
	}
	o.WebhookSecret = &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta(t.WebhookSecret),
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{secretKey: "<the webhook secret you also give " + providerName(t.Provider) + ">"},
	}
	return o, nil
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

func providerName(p string) string {
	if p == config.ProviderGitLab {
		return "GitLab"
	}
	return "GitHub"
}

// SecretKey is the key of the webhook Secret that holds the secret.
func SecretKey() string { return secretKey }
