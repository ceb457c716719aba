// Package triggers builds the Tekton Triggers objects that start a
// multi-arch build on every git push, and a build-only one for every pull
// request: EventListener, TriggerBindings, TriggerTemplates, and the
// identity the listener runs as.
package triggers

import (
	"encoding/json"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// Names of the generated objects.
const (
	Name          = "multiarch-build"
	BindingName   = "multiarch-build-push"
	ListenerPort  = 8080
	secretKey     = "secret"
	apiVersion    = "triggers.tekton.dev/v1beta1"
	imageTagParam = "image-tag"
	// deliveryKey is the CEL overlay, and deliveryParam the template's
	// param, of the delivery's ID (Delivery).
	deliveryKey   = "delivery"
	deliveryParam = "delivery"
	deliveryName  = "$(tt.params." + deliveryParam + ")"
)

// Objects are the Triggers objects and the listener's identity.
type Objects struct {
	EventListener *triggersv1.EventListener
	Binding       *triggersv1.TriggerBinding
	Template      *triggersv1.TriggerTemplate
	// The pull-request trigger's; nil without triggers.pullRequests.enabled.
	PullRequestBinding  *triggersv1.TriggerBinding
	PullRequestTemplate *triggersv1.TriggerTemplate
	// The canceller's; nil without pullRequests.cancelSuperseded.
	Cancel         *Cancel
	ServiceAccount *corev1.ServiceAccount
	RoleBinding    *rbacv1.RoleBinding
	ClusterBinding *rbacv1.ClusterRoleBinding
	Ingress        *networkingv1.Ingress // nil without triggers.ingressHost
	WebhookSecret  *corev1.Secret        // a shape to fill in, never applied as is
}

// New builds every Triggers object for cfg.
func New(cfg *config.Config) (Objects, error) {
	tt, err := triggerTemplate(cfg)
	if err != nil {
		return Objects{}, err
	}
	o := Objects{
		EventListener:  eventListener(cfg),
		Binding:        binding(cfg),
		Template:       tt,
		ServiceAccount: serviceAccount(cfg),
		RoleBinding:    roleBinding(cfg),
		ClusterBinding: clusterRoleBinding(cfg),
		Ingress:        ingress(cfg),
		WebhookSecret:  webhookSecret(cfg),
	}
	if cfg.Triggers.PullRequests.Enabled {
		if o.PullRequestTemplate, err = pullRequestTemplate(cfg); err != nil {
			return Objects{}, err
		}
		o.PullRequestBinding = pullRequestBinding(cfg)
		o.EventListener.Spec.Triggers = append(o.EventListener.Spec.Triggers, pullRequestTrigger(cfg))
		if cfg.Triggers.PullRequests.CancelSuperseded {
			c := &Cancel{
				Binding:        cancelBinding(cfg),
				ServiceAccount: cancelServiceAccount(cfg),
				Role:           cancelRole(cfg),
				RoleBinding:    cancelRoleBinding(cfg),
			}
			c.Policy, c.PolicyBinding = cancelPolicy(cfg)
			if c.Template, err = cancelTemplate(cfg); err != nil {
				return Objects{}, err
			}
			o.Cancel = c
			o.EventListener.Spec.Triggers = append(o.EventListener.Spec.Triggers, cancelTrigger(cfg))
		}
	}
	return o, nil
}

func labels() map[string]string {
	return map[string]string{"app.kubernetes.io/part-of": "tekton-multiarch"}
}

func objectMeta(cfg *config.Config, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: cfg.Example.Namespace, Labels: labels()}
}

func jsonValue(v any) apiextensionsv1.JSON {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return apiextensionsv1.JSON{Raw: b}
}

func ptr[T any](v T) *T { return &v }
