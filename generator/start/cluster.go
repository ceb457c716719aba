package start

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tekton-multiarch/tekton-multiarch/generator/cluster"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// Clients talk to the cluster.
type Clients struct {
	Tekton versioned.Interface
	Kube   kubernetes.Interface
	// logs opens step logs; nil: through Kube. The tests stand in for
	// the nodes with it.
	logs logOpener
}

// Connect loads a client config as kubectl does: the --kubeconfig file,
// else $KUBECONFIG, else ~/.kube/config, else the in-cluster config.
func Connect(kubeconfig string) (Clients, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return Clients{}, fmt.Errorf("no cluster to talk to (%v): pass --kubeconfig or set KUBECONFIG", err)
	}
	var c Clients
	if c.Tekton, err = versioned.NewForConfig(rc); err != nil {
		return c, err
	}
	c.Kube, err = kubernetes.NewForConfig(rc)
	return c, err
}

// ArchPolicyMissing says why the arch-pinning policy cannot be relied on,
// or "" when it and its binding are in the cluster. A ServiceAccount or
// user allowed only the namespace's starter Role, without the
// cluster.PolicyReaderRole, cannot read the cluster-scoped policy: that too
// is "cannot rely on it".
func ArchPolicyMissing(ctx context.Context, k kubernetes.Interface) string {
	api := k.AdmissionregistrationV1beta1()
	if _, err := api.MutatingAdmissionPolicies().Get(ctx, cluster.ArchPolicyName, metav1.GetOptions{}); err != nil {
		return policyProblem("MutatingAdmissionPolicy", err)
	}
	if _, err := api.MutatingAdmissionPolicyBindings().Get(ctx, cluster.ArchPolicyName, metav1.GetOptions{}); err != nil {
		return policyProblem("MutatingAdmissionPolicyBinding", err)
	}
	return ""
}

func policyProblem(kind string, err error) string {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("the arch-pinning %s %s is not in the cluster (kubectl apply -f examples/cluster/arch-pinning.yaml)", kind, cluster.ArchPolicyName)
	case apierrors.IsForbidden(err):
		// The policy may well be there: the explicit Pipeline is pinned
		// either way, so this is only a fallback, said with its cure.
		return fmt.Sprintf("cannot read the arch-pinning %s %s (forbidden: bind the ClusterRole %s of examples/cluster/build-identity.yaml to whoever starts builds)", kind, cluster.ArchPolicyName, cluster.PolicyReaderRole)
	default:
		return fmt.Sprintf("cannot read the arch-pinning %s %s: %v", kind, cluster.ArchPolicyName, err)
	}
}

// CheckMatrixInstalled fails unless the run-time-platforms Pipeline and
// its Tasks are in ns.
func CheckMatrixInstalled(ctx context.Context, c versioned.Interface, ns string) error {
	apply := fmt.Sprintf("kubectl apply -n %s -R -f tasks/ -f pipelines/", ns)
	for _, get := range []struct {
		kind, name string
		get        func() error
	}{
		{"Pipeline", pipeline.MatrixName, func() error {
			_, err := c.TektonV1().Pipelines(ns).Get(ctx, pipeline.MatrixName, metav1.GetOptions{})
			return err
		}},
		{"Task", tasks.BuildName, func() error {
			_, err := c.TektonV1().Tasks(ns).Get(ctx, tasks.BuildName, metav1.GetOptions{})
			return err
		}},
		{"Task", tasks.ManifestName, func() error {
			_, err := c.TektonV1().Tasks(ns).Get(ctx, tasks.ManifestName, metav1.GetOptions{})
			return err
		}},
	} {
		err := get.get()
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: %s %s is not in namespace %s; run `%s`", ErrNotInstalled, get.kind, get.name, ns, apply)
		}
		if err != nil {
			return fmt.Errorf("reading %s %s in namespace %s: %w", get.kind, get.name, ns, err)
		}
	}
	return nil
}

// ErrNotInstalled says what is missing from the namespace and how to fix it.
var ErrNotInstalled = errors.New("the catalog is not installed")

// CheckInstalled fails unless the Pipeline and its Tasks exist in ns and the
// Pipeline builds the architectures of the run.
func CheckInstalled(ctx context.Context, c versioned.Interface, ns string, archs []config.Architecture) error {
	apply := fmt.Sprintf("kubectl apply -n %s -R -f tasks/ -f pipelines/", ns)
	p, err := c.TektonV1().Pipelines(ns).Get(ctx, pipeline.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: Pipeline %s is not in namespace %s; run `%s`", ErrNotInstalled, pipeline.Name, ns, apply)
	}
	if err != nil {
		return fmt.Errorf("reading Pipeline %s in namespace %s: %w", pipeline.Name, ns, err)
	}
	for _, t := range []string{tasks.BuildName, tasks.ManifestName} {
		_, err := c.TektonV1().Tasks(ns).Get(ctx, t, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: Task %s is not in namespace %s; run `%s`", ErrNotInstalled, t, ns, apply)
		}
		if err != nil {
			return fmt.Errorf("reading Task %s in namespace %s: %w", t, ns, err)
		}
	}
	var have, want []string
	for _, pt := range p.Spec.Tasks {
		if strings.HasPrefix(pt.Name, "build-") {
			have = append(have, pt.Name)
		}
	}
	for _, a := range archs {
		want = append(want, pipeline.BuildTask(a))
	}
	sort.Strings(have)
	sort.Strings(want)
	if !slices.Equal(have, want) {
		return fmt.Errorf("the Pipeline %s in namespace %s has tasks %s, this run pins %s: the installed catalog was generated from another configuration; regenerate with the same one, or pass --config",
			pipeline.Name, ns, strings.Join(have, ", "), strings.Join(want, ", "))
	}
	return nil
}
