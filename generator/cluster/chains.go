package cluster

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ChainsNamespace is where Tekton Chains' release installs its controller,
// its chains-config and the signing-secrets Secret it signs with.
const ChainsNamespace = "tekton-chains"

// ChainsConfig is the chains-config (Tekton Chains >= v0.20) that signs and
// attests what this catalog builds: every TaskRun's images (the builds'
// IMAGE_URL/IMAGE_DIGEST, the manifest Task's index and its IMAGES, since
// Chains does not recurse into an index, tektoncd/chains#1070) with SLSA
// provenance, and the PipelineRun's provenance with each TaskRun's results
// (deep inspection), all stored beside the images in their registry. No
// transparency log: rekor is a public service; turn it on where one is
// reachable.
func ChainsConfig() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "chains-config", Namespace: ChainsNamespace},
		Data: map[string]string{
			"artifacts.taskrun.format":                     "slsa/v1",
			"artifacts.taskrun.storage":                    "oci",
			"artifacts.oci.storage":                        "oci",
			"artifacts.pipelinerun.format":                 "slsa/v1",
			"artifacts.pipelinerun.storage":                "oci",
			"artifacts.pipelinerun.enable-deep-inspection": "true",
			"transparency.enabled":                         "false",
		},
	}
}
