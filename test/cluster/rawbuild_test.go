package cluster

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// rawBuildScript is the raw build's container script: buildah bud and push,
// nothing else (rawbuild.sh says what it leaves out).
//
//go:embed rawbuild.sh
var rawBuildScript string

// rawNamespace holds the raw builds' bare pods. It has no Pod Security
// labels: the privileged reference must be admitted, by an API server
// started with --allow-privileged=true (stackOptions).
const rawNamespace = "bench-raw"

// reference is one way to run the raw build: what it sets on the build
// container of the bare pod.
type reference interface {
	name() string
	apply(c *corev1.Container)
}

// asStep runs the raw build as the catalog's build step runs: the step's
// security context (root with the runtime's default capabilities and the
// catalog's seccomp profile; buildah makes its own user namespace), its
// resources and its BUILDAH_ISOLATION, taken from the Task the generator
// makes of the catalog's configuration.
type asStep struct{ step v1.Step }

func (asStep) name() string { return "raw-unpriv" }

func (r asStep) apply(c *corev1.Container) {
	c.SecurityContext = r.step.SecurityContext.DeepCopy()
	c.Resources = *r.step.ComputeResources.DeepCopy()
	for _, e := range r.step.Env {
		if e.Name == "BUILDAH_ISOLATION" {
			c.Env = append(c.Env, e)
		}
	}
}

// privileged runs the raw build as root in a privileged container, as
// other catalogs' buildah Tasks do: a benchmark reference only, never
// something the catalog ships. The step's resources and BUILDAH_ISOLATION,
// so that only the privilege differs.
type privileged struct{ step v1.Step }

func (privileged) name() string { return "raw-priv" }

func (r privileged) apply(c *corev1.Container) {
	asStep(r).apply(c)
	yes := true
	c.SecurityContext = &corev1.SecurityContext{Privileged: &yes}
	c.Env = append(c.Env, corev1.EnvVar{Name: "ULIMIT", Value: "true"})
}

// rawBuilder makes raw build pods on the real node from c's configuration:
// its git-sync and buildah images, its clone step's security context.
type rawBuilder struct {
	s       *stack
	gitSync string
	buildah string
	clone   v1.Step
	step    v1.Step
}

func (s *stack) newRawBuilder(tb testing.TB, c catalog) *rawBuilder {
	tb.Helper()
	r := &rawBuilder{s: s, gitSync: c.cfg.Images.GitSync, buildah: c.cfg.Images.Buildah}
	for _, st := range tasks.Build(c.cfg).Spec.Steps {
		switch st.Name {
		case "clone":
			r.clone = st
		case "build":
			r.step = st
		}
	}
	if r.clone.Name == "" || r.step.Name == "" {
		tb.Fatal("the generated buildah-build Task has no clone or build step")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rawNamespace}}
	if _, err := s.kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	return r
}

func (r *rawBuilder) unprivileged() reference { return asStep{r.step} }
func (r *rawBuilder) privileged() reference   { return privileged{r.step} }

// rawBuild is one raw build's outcome.
type rawBuild struct {
	pod    *corev1.Pod
	log    string // the build container's, without timestamps
	tl     timeline
	digest string
}

// rawSpec is what a raw build builds.
type rawSpec struct {
	repo, dockerfile, image, platform, buildArg string
}

// run builds spec in a bare pod named raw-<name> as ref says and waits
// for it (wait).
func (r *rawBuilder) run(tb testing.TB, ref reference, name string, spec rawSpec) rawBuild {
	tb.Helper()
	return r.wait(tb, ref, r.start(tb, ref, name, spec))
}

// runAll starts the raw builds of specs at once, each as ref says, named
// name-<i>, and waits for them; in specs' order.
func (r *rawBuilder) runAll(tb testing.TB, ref reference, name string, specs []rawSpec) []rawBuild {
	tb.Helper()
	var pods []string
	for i, spec := range specs {
		pods = append(pods, r.start(tb, ref, fmt.Sprintf("%s-%d", name, i), spec))
	}
	out := make([]rawBuild, len(specs))
	for i, pod := range pods {
		out[i] = r.wait(tb, ref, pod)
	}
	return out
}

// start creates the bare pod raw-<name> that builds spec as ref says, and
// returns its name.
func (r *rawBuilder) start(tb testing.TB, ref reference, name string, spec rawSpec) string {
	tb.Helper()
	mounts := []corev1.VolumeMount{{Name: "source", MountPath: "/source"}}
	build := corev1.Container{
		Name:    "build",
		Image:   r.buildah,
		Command: []string{"sh", "-c", rawBuildScript, "rawbuild.sh"},
		Env: []corev1.EnvVar{
			{Name: "IMAGE", Value: spec.image}, {Name: "PLATFORM", Value: spec.platform},
			{Name: "DOCKERFILE", Value: spec.dockerfile}, {Name: "BUILD_ARG", Value: spec.buildArg},
			{Name: "CHECKOUT", Value: "/source/repo/checkout"},
		},
		VolumeMounts: append(mounts, corev1.VolumeMount{Name: "containers", MountPath: "/var/lib/containers"}),
	}
	ref.apply(&build)
	tmpl := realNodePodTemplate()
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "raw-" + name, Namespace: rawNamespace},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			NodeSelector:                 tmpl.NodeSelector,
			Tolerations:                  tmpl.Tolerations,
			AutomountServiceAccountToken: &no,
			EnableServiceLinks:           &no,
			Volumes: []corev1.Volume{
				{Name: "source", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "containers", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			InitContainers: []corev1.Container{{
				Name:  "clone",
				Image: r.gitSync,
				// The clone step's git-sync flags (clone.sh).
				Args:            []string{"--repo=" + spec.repo, "--ref=main", "--root=/source/repo", "--link=checkout", "--one-time", "--depth=1"},
				SecurityContext: r.clone.SecurityContext.DeepCopy(),
				VolumeMounts:    mounts,
			}},
			Containers: []corev1.Container{build},
		},
	}
	if _, err := r.s.kube.CoreV1().Pods(rawNamespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("raw build %s (%s): %v", pod.Name, ref.name(), err)
	}
	return pod.Name
}

// wait waits for the raw build pod name to end, reads its times and
// deletes it (and waits until it is gone, so that its storage does not
// linger into the next build's measurement).
func (r *rawBuilder) wait(tb testing.TB, ref reference, name string) rawBuild {
	tb.Helper()
	ctx := context.Background()
	pods := r.s.kube.CoreV1().Pods(rawNamespace)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
	var done *corev1.Pod
	r.s.waitFor(tb, "raw build pod "+pod.Name, 15*time.Minute, func(ctx context.Context) (bool, error) {
		var err error
		done, err = pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return done.Status.Phase == corev1.PodSucceeded || done.Status.Phase == corev1.PodFailed, fmt.Errorf("pod %s: %s", pod.Name, done.Status.Phase)
	})
	raw, err := pods.GetLogs(pod.Name, &corev1.PodLogOptions{Container: "build", Timestamps: true}).DoRaw(ctx)
	if err != nil {
		tb.Fatalf("raw build %s: its log: %v", pod.Name, err)
	}
	if done.Status.Phase != corev1.PodSucceeded {
		clone, _ := pods.GetLogs(pod.Name, &corev1.PodLogOptions{Container: "clone"}).DoRaw(ctx)
		tb.Fatalf("raw build %s (%s): %s\nclone:\n%s\nbuild:\n%s", pod.Name, ref.name(), done.Status.Phase, clone, raw)
	}
	rb := rawBuild{pod: done}
	rb.log, _, err = budTime(string(raw))
	if err != nil {
		tb.Fatalf("raw build %s: %v\n%s", pod.Name, err, rb.log)
	}
	if rb.tl, err = rawTimeline(done, string(raw)); err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(rb.log, "\n") {
		if rest, ok := strings.CutPrefix(line, "pushed "); ok {
			_, rb.digest, _ = strings.Cut(rest, "@")
		}
	}
	if !strings.HasPrefix(rb.digest, "sha256:") {
		tb.Fatalf("raw build %s: no pushed digest in its log:\n%s", pod.Name, rb.log)
	}

	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		tb.Fatal(err)
	}
	r.s.waitPodGone(tb, rawNamespace, pod.Name)
	return rb
}
