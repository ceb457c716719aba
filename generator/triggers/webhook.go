package triggers

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// ingress is nil without triggers.ingressHost, for clusters that expose the
// listener some other way.
func ingress(cfg *config.Config) *networkingv1.Ingress {
	host := cfg.Triggers.IngressHost
	if host == "" {
		return nil
	}
	prefix := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: objectMeta(cfg, "el-"+Name),
		Spec: networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: "el-" + Name + "-tls"}},
			Rules: []networkingv1.IngressRule{{
				Host: host,
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

// webhookSecret is only the Secret's shape, so that no real secret ever sits
// in the catalog: the real one is created by hand from a random value.
func webhookSecret(cfg *config.Config) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(cfg, cfg.Triggers.WebhookSecret),
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{secretKey: "<the webhook secret you also give " + providerName(cfg.Triggers.Provider) + ">"},
	}
}

func providerName(p string) string {
	if p == config.ProviderGitLab {
		return "GitLab"
	}
	return "GitHub"
}

// SecretKey is the key of the webhook Secret that holds the secret.
func SecretKey() string { return secretKey }
