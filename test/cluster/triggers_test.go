package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gentriggers "github.com/tekton-multiarch/tekton-multiarch/generator/triggers"
)

const (
	// The Triggers release installs into Tekton Pipelines' namespace.
	triggersNS = "tekton-pipelines"
	// The Secret the core interceptors server reads its serving certificate
	// from (config/interceptors/00-interceptor-secrets.yaml, filled by the test).
	interceptorCertSecret = "tekton-triggers-core-interceptors-certs"
	interceptorsAddr      = "127.0.0.1:8443" // cmd/interceptors' fixed port
	sinkAddr              = "127.0.0.1:8088"

	elName      = "multiarch-build"
	elSA        = "multiarch-triggers"
	eventIDKey  = "triggers.tekton.dev/triggers-eventid"
	elLabelKey  = "triggers.tekton.dev/eventlistener"
	pushFixture = "generator/triggers/testdata/github-push.json"
)

// sinkLogging turns the sink's log level to debug: an interceptor that stops
// an event is only logged at debug level.
const sinkLogging = `{"zap-logger-config":"{\"level\":\"debug\",\"encoding\":\"json\",\"outputPaths\":[\"stdout\"],` +
	`\"errorOutputPaths\":[\"stderr\"],\"encoderConfig\":{\"timeKey\":\"ts\",\"levelKey\":\"level\",\"nameKey\":\"logger\",` +
	`\"messageKey\":\"msg\",\"timeEncoder\":\"iso8601\"}}","loglevel.eventlistener":"debug"}`

// triggers installs Tekton Triggers (CRDs, RBAC, config from its module's
// config/; the core interceptors server with a certificate from the test's CA),
// applies the generated examples/triggers/ as the README's "Build on push"
// says, runs the EventListener sink as the listener's ServiceAccount, and
// posts GitHub push payloads to it.
func (s *stack) triggers(t *testing.T, c catalog) {
	s.installTriggers(t)

	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	webhookSecret := hex.EncodeToString(secret)
	// The README's "Build on push" step 2, as written (the secret from the
	// test instead of openssl).
	for _, args := range [][]string{
		{"-n", c.ns(), "create", "secret", "generic", "git-webhook-secret", "--from-literal=secret=" + webhookSecret},
		{"apply", "-f", "examples/triggers/"},
	} {
		out, err := s.kubectl(t, c.dir, args...)
		if strings.Contains(args[len(args)-1], "secret=") {
			args[len(args)-1] = "--from-literal=secret=..."
		}
		t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
		}
	}

	// The controller reconciles the EventListener into the Service the
	// README tells to expose.
	s.waitFor(t, "Service el-"+elName+" (Triggers controller)", 60*time.Second, func(ctx context.Context) (bool, error) {
		svc, err := s.kube.CoreV1().Services(c.ns()).Get(ctx, "el-"+elName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range svc.Spec.Ports {
			if p.Port == 8080 {
				return true, nil
			}
		}
		return false, fmt.Errorf("Service el-%s ports %v, want 8080", elName, svc.Spec.Ports)
	})

	s.startSink(t, c)

	payload, err := os.ReadFile(filepath.Join(s.repo, pushFixture))
	if err != nil {
		t.Fatal(err)
	}
	var push struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Repository struct {
			FullName string `json:"full_name"`
			CloneURL string `json:"clone_url"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(payload, &push); err != nil {
		t.Fatal(err)
	}
	sign := func(body []byte) string {
		m := hmac.New(sha256.New, []byte(webhookSecret))
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}

	// A signed push of ref makes one run building IMAGE:tag, driven to success.
	signedPush := func(t *testing.T, ref, tag string) {
		body := []byte(strings.Replace(string(payload), `"ref": "`+push.Ref+`"`, `"ref": "`+ref+`"`, 1))
		if ref != push.Ref && string(body) == string(payload) {
			t.Fatalf("no %q in %s to replace", `"ref": "`+push.Ref+`"`, pushFixture)
		}
		id := s.postEvent(t, body, map[string]string{"X-Hub-Signature-256": sign(body)})
		pr := s.eventRun(t, c.ns(), id)
		t.Logf("event %s (%s) created PipelineRun %s", id, ref, pr.Name)

		image := repository(c.cfg.Example.Image) + ":" + tag
		params := map[string]string{}
		for _, p := range pr.Spec.Params {
			params[p.Name] = p.Value.StringVal
		}
		want := map[string]string{"GIT_URL": push.Repository.CloneURL, "GIT_REF": push.After, "IMAGE": image}
		if !mapsEqual(params, want) {
			t.Errorf("PipelineRun params\n got %v\nwant %v", params, want)
		}
		if got := pr.Labels[elLabelKey]; got != elName {
			t.Errorf("PipelineRun label %s = %q, want %q", elLabelKey, got, elName)
		}
		if got := pr.Annotations["tekton-multiarch.dev/git-ref"]; got != ref {
			t.Errorf("annotation git-ref = %q, want %q", got, ref)
		}
		specs := map[string]string{}
		for _, trs := range pr.Spec.TaskRunSpecs {
			if trs.PodTemplate != nil {
				specs[trs.PipelineTaskName] = trs.PodTemplate.NodeSelector["kubernetes.io/arch"]
			}
		}
		wantSpecs := map[string]string{}
		for _, a := range archs(c) {
			wantSpecs["build-"+a] = a
		}
		if !mapsEqual(specs, wantSpecs) {
			t.Errorf("PipelineRun taskRunSpecs nodeSelector kubernetes.io/arch\n got %v\nwant %v", specs, wantSpecs)
		}
		if t.Failed() {
			return
		}

		// Run it through the controller, scheduler and kwok like the
		// example's run, expecting the payload's values where the example's
		// would be.
		cfg := *c.cfg
		cfg.Example.GitURL = push.Repository.CloneURL
		cfg.Example.GitRef = push.After
		cfg.Example.Image = image
		s.driveToSuccess(t, &prRun{s: s, c: catalog{name: c.name + ", triggered", dir: c.dir, cfg: &cfg}, name: pr.Name})
	}
	t.Run("signed-push", func(t *testing.T) { signedPush(t, push.Ref, push.After[:12]) })
	// Git tags that are not image tags are mapped to valid ones (the
	// README's rule), and the run builds that tag.
	t.Run("tag-with-slash", func(t *testing.T) { signedPush(t, "refs/tags/release/1.0", "release-1.0") })
	t.Run("semver-build-metadata", func(t *testing.T) { signedPush(t, "refs/tags/v1.0.0+build.5", "v1.0.0_build.5") })
	t.Run("matrix-pipeline", func(t *testing.T) { s.triggeredMatrix(t, c, payload, push.After, push.Repository.CloneURL, sign) })
	t.Run("burst-and-redelivery", func(t *testing.T) { s.burst(t, c, payload, push.After, sign) })

	// A wrong branch, still correctly signed: the cel filter drops it.
	other := strings.Replace(string(payload), `"ref": "`+push.Ref+`"`, `"ref": "refs/heads/feature"`, 1)
	if other == string(payload) {
		t.Fatalf("no %q in %s to replace", `"ref": "`+push.Ref+`"`, pushFixture)
	}
	longTag := strings.Replace(string(payload), `"ref": "`+push.Ref+`"`, `"ref": "refs/tags/v`+strings.Repeat("1", 128)+`"`, 1)
	for _, tc := range []struct {
		name    string
		body    []byte
		headers map[string]string
		why     string // in the sink's debug log for the event
	}{
		{"unsigned", payload, nil, "no X-Hub-Signature-256 header set"},
		{"wrong-signature", payload, map[string]string{"X-Hub-Signature-256": sign([]byte("something else"))}, "payload signature check failed"},
		{"other-branch", []byte(other), map[string]string{"X-Hub-Signature-256": sign([]byte(other))}, "did not return true"},
		// A tag no mapping makes a valid image tag (over 128 characters):
		// refused at the listener, naming the check, and no run that could
		// only fail.
		{"tag-too-long", []byte(longTag), map[string]string{"X-Hub-Signature-256": sign([]byte(longTag))}, "expression " + gentriggers.ImageTagCheck() + " did not return true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.triggeredRuns(t, c)
			id := s.postEvent(t, tc.body, tc.headers)
			// The sink answers before it runs the interceptors: the verdict is
			// in its log, and in what it creates.
			s.checkDropped(t, c, before, id, gentriggers.PushTrigger(c.cfg), tc.why)
		})
	}
	t.Run("pull-request", func(t *testing.T) { s.pullRequests(t, c, sign) })
	t.Run("cancel-superseded", func(t *testing.T) { s.cancelSuperseded(t, c, sign, payload, push.After) })
}

// checkDropped: the sink logs that trigger's interceptors stopped event id,
// saying why, and no PipelineRun was created for it. Each trigger of the
// listener logs its own verdict (the pull-request trigger drops every push
// by its event type), so the line is the one of the trigger named.
func (s *stack) checkDropped(t *testing.T, c catalog, before int, id, trigger, why string) {
	t.Helper()
	var line string
	s.waitFor(t, "the sink's log of event "+id+" stopped by an interceptor of trigger "+trigger, 20*time.Second, func(context.Context) (bool, error) {
		for _, l := range strings.Split(readFile(t, filepath.Join(s.logDir, "triggers-eventlistenersink.log")), "\n") {
			if strings.Contains(l, id) && strings.Contains(l, "interceptor stopped trigger processing") &&
				// The sink logs the key as "/trigger" (v0.37.0).
				strings.Contains(l, `/trigger":"`+trigger+`"`) {
				line = l
				return true, nil
			}
		}
		return false, fmt.Errorf("no such line yet")
	})
	t.Logf("sink log: %s", line)
	if !strings.Contains(line, why) {
		t.Errorf("the sink's log line for event %s does not say %q", id, why)
	}
	time.Sleep(3 * time.Second)
	if after := s.triggeredRuns(t, c); after != before {
		t.Errorf("PipelineRuns from the EventListener: %d before the event, %d 3 s after it", before, after)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *stack) triggeredRuns(t testing.TB, c catalog) int {
	t.Helper()
	list, err := s.tekton.TektonV1().PipelineRuns(c.ns()).List(context.Background(), metav1.ListOptions{LabelSelector: elLabelKey + "=" + elName})
	if err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}

// postEvent POSTs a GitHub push delivery to the sink, checks it is
// accepted (202, the listener's name and an event ID) and returns the ID.
func (s *stack) postEvent(t testing.TB, body []byte, headers map[string]string) string {
	t.Helper()
	id, err := s.sendEvent(t, body, headers)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// sendEvent is postEvent returning its error, for goroutines.
func (s *stack) sendEvent(t testing.TB, body []byte, headers map[string]string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+sinkAddr+"/", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("cluster-test-%d", time.Now().UnixNano()))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := s.nsHTTP(nil).Do(req)
	if err != nil {
		return "", fmt.Errorf("POST to the sink: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	t.Logf("sink: %s %s", resp.Status, strings.TrimSpace(string(data)))
	var r struct {
		EventListener string `json:"eventListener"`
		EventID       string `json:"eventID"`
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("sink answered %s, want 202 Accepted", resp.Status)
	}
	if err := json.Unmarshal(data, &r); err != nil || r.EventID == "" || r.EventListener != elName {
		return "", fmt.Errorf("sink response %q: want eventListener %q and an eventID (%v)", data, elName, err)
	}
	return r.EventID, nil
}

// nsHTTP is an HTTP client whose connections are opened inside the
// namespace, trusting roots for TLS.
func (s *stack) nsHTTP(roots *x509.CertPool) *http.Client {
	dial := netnsDialer(s.nsPath)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:     func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) },
			TLSClientConfig: &tls.Config{RootCAs: roots},
		},
	}
}

// installTriggers applies Triggers' config/ (without the admission webhook,
// like Tekton's), the github and cel ClusterInterceptors pointing at the core
// interceptors server on 127.0.0.1, and starts that server and the Triggers
// controller out of cluster.
func (s *stack) installTriggers(t testing.TB) {
	t.Helper()
	cfgDir := filepath.Join(moduleDir(t, "triggers", "github.com/tektoncd/triggers"), "config")
	glob := func(pattern string) []string { return globAll(t, cfgDir, pattern) }
	apply := func(serverSide bool, files ...string) { s.applyFiles(t, serverSide, files...) }
	apply(true, glob("300-*.yaml")...)
	apply(false, append(append(glob("200-*.yaml"), glob("201-*.yaml")...), glob("clusterrole-aggregate-*.yaml")...)...)
	apply(false, glob("config-*.yaml")...)
	if out, err := s.kubectl(t, "", "wait", "--for=condition=established", "--timeout=60s",
		"crd/eventlisteners.triggers.tekton.dev", "crd/triggerbindings.triggers.tekton.dev",
		"crd/triggertemplates.triggers.tekton.dev", "crd/clusterinterceptors.triggers.tekton.dev",
		"crd/triggers.triggers.tekton.dev", "crd/interceptors.triggers.tekton.dev"); err != nil {
		t.Fatalf("Triggers CRDs not established: %v\n%s", err, out)
	}

	// The serving certificate, from the test's CA, in the Secret the
	// interceptors server would otherwise fill with a self-signed one for
	// its Service name.
	crt, key := s.pki.sign(10, pkix.Name{CommonName: "tekton-triggers-core-interceptors"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1")}, []string{"tekton-triggers-core-interceptors.tekton-pipelines.svc"})
	ctx := context.Background()
	if _, err := s.kube.CoreV1().Secrets(triggersNS).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: interceptorCertSecret, Namespace: triggersNS},
		Data:       map[string][]byte{"server-key.pem": key, "server-cert.pem": crt, "ca-cert.pem": s.pki.caPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Secret %s: %v", interceptorCertSecret, err)
	}
	// config/interceptors/core-interceptors.yaml's github and cel, with a
	// url instead of the Service (no Service can route to a loopback
	// process).
	var ci strings.Builder
	for _, name := range []string{"github", "cel"} {
		fmt.Fprintf(&ci, `---
apiVersion: triggers.tekton.dev/v1alpha1
kind: ClusterInterceptor
metadata:
  name: %s
  labels:
    server/type: https
spec:
  clientConfig:
    url: https://%s/%s
    caBundle: %s
`, name, interceptorsAddr, name, base64.StdEncoding.EncodeToString(s.pki.caPEM))
	}
	ciFile := filepath.Join(s.work, "clusterinterceptors.yaml")
	write(t, ciFile, []byte(ci.String()))
	apply(false, ciFile)

	common := []string{
		"SYSTEM_NAMESPACE=" + triggersNS,
		"CONFIG_LOGGING_NAME=config-logging-triggers",
		"CONFIG_OBSERVABILITY_NAME=config-observability-triggers",
		"METRICS_DOMAIN=tekton.dev/triggers",
		"KUBERNETES_MIN_VERSION=v1.28.0",
	}
	s.start(t, "triggers-interceptors", append([]string{
		"INTERCEPTOR_TLS_SVC_NAME=tekton-triggers-core-interceptors",
		"INTERCEPTOR_TLS_SECRET_NAME=" + interceptorCertSecret,
		"METRICS_PROMETHEUS_PORT=9101",
		"PROFILING_PORT=8101",
	}, common...), filepath.Join(s.bin, "triggers-interceptors"), "-kubeconfig="+s.pki.kubeconfig)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.pki.caPEM)
	client := s.nsHTTP(roots)
	s.waitFor(t, "the core interceptors server (https://"+interceptorsAddr+"/ready)", 60*time.Second, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+interceptorsAddr+"/ready", nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/ready: %s", resp.Status)
	})

	s.start(t, "triggers-controller", append([]string{
		"CONFIG_DEFAULTS_NAME=config-defaults-triggers",
		"CONFIG_LEADERELECTION_NAME=config-leader-election-triggers-controllers",
		"METRICS_PROMETHEUS_PORT=9102",
		"PROFILING_PORT=8102",
	}, common...), filepath.Join(s.bin, "triggers-controller"),
		"-kubeconfig="+s.pki.kubeconfig,
		"-el-image=registry.invalid/tekton-cluster-test/eventlistenersink",
		"-el-port=8080",
		"-el-security-context=true",
		"-el-events=disable")
}

// eventRun waits for the one PipelineRun the listener made of event id (the
// Triggers controller labels it with the event's ID), failing on more.
func (s *stack) eventRun(t *testing.T, ns, id string) *v1.PipelineRun {
	t.Helper()
	var pr *v1.PipelineRun
	s.waitFor(t, "the PipelineRun of event "+id, 60*time.Second, func(ctx context.Context) (bool, error) {
		list, err := s.tekton.TektonV1().PipelineRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: eventIDKey + "=" + id})
		if err != nil {
			return false, err
		}
		if len(list.Items) > 1 {
			t.Fatalf("%d PipelineRuns for one event", len(list.Items))
		}
		if len(list.Items) == 1 {
			pr = &list.Items[0]
			return true, nil
		}
		return false, fmt.Errorf("no PipelineRun labelled %s=%s yet", eventIDKey, id)
	})
	return pr
}

// startSink runs cmd/eventlistenersink for the generated EventListener, with
// the arguments the controller gives its Deployment, as the listener's
// ServiceAccount (a token from the TokenRequest API): the RBAC in
// examples/triggers/rbac.yaml is what lets it read the Triggers objects and
// create the PipelineRun.
func (s *stack) startSink(t testing.TB, c catalog) {
	t.Helper()
	kubeconfig := s.tokenKubeconfig(t, c.ns(), elSA)
	sink := s.start(t, "triggers-eventlistenersink", []string{
		"SYSTEM_NAMESPACE=" + c.ns(),
		"NAMESPACE=" + c.ns(),
		"NAME=" + elName,
		"EL_EVENT=disable",
		"K_SINK_TIMEOUT=30",
		"K_LOGGING_CONFIG=" + sinkLogging,
		"METRICS_PROMETHEUS_PORT=9103",
		"PROFILING_PORT=8103",
		"KUBERNETES_MIN_VERSION=v1.28.0",
	}, filepath.Join(s.bin, "triggers-eventlistenersink"),
		"-kubeconfig="+kubeconfig,
		"--el-name="+elName,
		"--el-namespace="+c.ns(),
		"--port="+strings.TrimPrefix(sinkAddr, "127.0.0.1:"),
		"--readtimeout=5", "--writetimeout=40", "--idletimeout=120", "--timeouthandler=30",
		"--httpclient-readtimeout=30", "--httpclient-keep-alive=30", "--httpclient-tlshandshaketimeout=10",
		"--httpclient-responseheadertimeout=10", "--httpclient-expectcontinuetimeout=1",
		"--is-multi-ns=false", "--payload-validation=true")
	// The sink's HTTP server ignores SIGTERM (ListenAndServe without a
	// Shutdown; in a pod the kubelet kills it after the grace period).
	sink.grace = 2 * time.Second
	client := s.nsHTTP(nil)
	s.waitFor(t, "the EventListener sink (http://"+sinkAddr+"/live)", 60*time.Second, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sinkAddr+"/live", nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/live: %s", resp.Status)
	})
}

// triggeredMatrix: the listener of a catalog generated with
// triggers.pipeline: multiarch-build-matrix, applied over the committed one
// as a user switching would, takes a signed push through the same real sink
// to one run of multiarch-build-matrix (no taskRunSpecs: the arch policy
// pins its builds), which succeeds on the kwok nodes with a build per
// configured platform pushed to <tag>-ARCH, and the manifest given every
// build's commit to compare.
func (s *stack) triggeredMatrix(t *testing.T, c catalog, payload []byte, commit, cloneURL string, sign func([]byte) string) {
	m := generateVariant(t, s.repo, "triggers:\n  pipeline: multiarch-build-matrix\n")
	if m.ns() != c.ns() {
		t.Fatalf("the variant's namespace %s is not the committed catalog's %s", m.ns(), c.ns())
	}
	if out, err := s.kubectl(t, m.dir, "apply", "-f", "examples/triggers/"); err != nil {
		t.Fatalf("kubectl apply -f examples/triggers/ (matrix): %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := s.kubectl(t, c.dir, "apply", "-f", "examples/triggers/"); err != nil {
			t.Errorf("putting the committed examples/triggers/ back: %v\n%s", err, out)
		}
	})
	// The sink reads the TriggerTemplate from its informer's cache; give the
	// update a moment to reach it (nothing of the sink's says when it has).
	time.Sleep(2 * time.Second)

	id := s.postEvent(t, payload, map[string]string{"X-Hub-Signature-256": sign(payload)})
	pr := s.eventRun(t, c.ns(), id)
	image := repository(c.cfg.Example.Image) + ":" + commit[:12]
	var platforms []string
	for _, a := range c.cfg.Architectures {
		platforms = append(platforms, a.Platform())
	}
	t.Logf("event %s created PipelineRun %s of %s", id, pr.Name, pr.Spec.PipelineRef.Name)
	if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "multiarch-build-matrix" || len(pr.Spec.TaskRunSpecs) != 0 {
		t.Fatalf("the push started %v with %d taskRunSpecs, want multiarch-build-matrix without", pr.Spec.PipelineRef, len(pr.Spec.TaskRunSpecs))
	}
	params := map[string]string{}
	for _, p := range pr.Spec.Params {
		params[p.Name] = p.Value.StringVal
		if p.Name == "PLATFORMS" {
			params[p.Name] = strings.Join(p.Value.ArrayVal, ",")
		}
	}
	want := map[string]string{"GIT_URL": cloneURL, "GIT_REF": commit, "IMAGE": image, "PLATFORMS": strings.Join(platforms, ",")}
	if !mapsEqual(params, want) {
		t.Fatalf("PipelineRun params\n got %v\nwant %v", params, want)
	}
	cfg := *c.cfg
	cfg.Example.GitURL, cfg.Example.GitRef, cfg.Example.Image = cloneURL, commit, image
	r := &prRun{s: s, c: catalog{name: c.name + ", triggered matrix", dir: c.dir, cfg: &cfg}, name: pr.Name}
	s.driveMatrix(t, r, platforms...)
	// Per-arch tags: each build pushed IMAGE with its platform's suffix.
	trs, err := r.matrixTaskRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range trs {
		if trs[i].Labels["tekton.dev/pipelineTask"] != "build" {
			continue
		}
		pod, err := s.kube.CoreV1().Pods(c.ns()).Get(context.Background(), trs[i].Status.PodName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, suffix := envOf(pod, "step-build", "IMAGE"), envOf(pod, "step-build", "PLATFORM_TAG_SUFFIX"); got != image || suffix != "true" {
			t.Errorf("%s: IMAGE %q PLATFORM_TAG_SUFFIX %q, want %q and true (pushed to <tag>-ARCH)", pod.Name, got, suffix, image)
		}
	}
}
