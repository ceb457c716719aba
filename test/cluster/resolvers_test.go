package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	resolution "github.com/tektoncd/pipeline/pkg/client/resolution/clientset/versioned"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// Tekton's remote resolution, as its release installs it: the resolvers
// controller (cmd/resolvers) in its own namespace, as its own
// ServiceAccount.
const (
	resolversNS = "tekton-pipelines-resolvers"
	resolversSA = "tekton-pipelines-resolvers"
	// Where the catalog is published for the resolvers, inside the test's
	// network namespace: a plain-HTTP registry and git daemon on loopback.
	// go-containerregistry (the bundles resolver's client) speaks plain
	// HTTP to loopback and RFC 1918 registries by itself; Tekton v1.15's
	// bundleresolver-config has no setting for an insecure registry
	// elsewhere.
	catalogRegistry = "127.0.0.1:5000"
	catalogGitAddr  = "127.0.0.1:9418"
)

// remoteResolution: runs whose Pipeline and Tasks the real resolvers
// controller fetches, next to the pipelines controller, from bundles the
// real CLI pushed and from a git repository holding the generated tree;
// then a bundle that is not in the registry.
func (s *stack) remoteResolution(t *testing.T) {
	t0 := time.Now()
	resolvers := s.startResolvers(t)
	s.startCatalogRegistry(t)
	t.Logf("resolvers controller and catalog registry up in %s", time.Since(t0).Round(time.Millisecond))
	cli := buildCLI(t, s)

	bundles := generateVariant(t, s.repo, "references:\n  mode: bundles\n  bundles:\n    repository: "+catalogRegistry+
		"/tekton-multiarch\nexample:\n  namespace: multiarch-builds-bundles\n")
	s.prepareNamespace(t, bundles)
	t.Run("bundles", func(t *testing.T) {
		pushed := cli.bundlePush(t, bundles)
		pr := readExample(t, bundles)
		if ref := pr.Spec.PipelineRef.ResolverRef; ref.Resolver != "bundles" || !pushed[resolverParams(ref)["bundle"]] {
			t.Fatalf("examples/pipelinerun.yaml refers to %+v, not a bundle `bundle push` printed (%v)", ref, mapKeys(pushed))
		}
		s.runRemote(t, bundles, "")
	})

	t.Run("git", func(t *testing.T) {
		c := generateVariant(t, s.repo, "references:\n  mode: git\n  git:\n    url: git://"+catalogGitAddr+
			"/catalog\n    revision: main\nexample:\n  namespace: multiarch-builds-git\n")
		commit := s.serveGit(t, c)
		s.prepareNamespace(t, c)
		s.runRemote(t, c, commit)
	})

	t.Run("missing-bundle-digest", func(t *testing.T) { s.missingBundle(t, bundles, resolvers) })
}

// missingBundle: a PipelineRun whose pipelineRef names a digest the
// registry does not have. The bundles resolver fails it with its reason,
// but with Tekton v1.15.0's own ResolutionRequest CRD the API server refuses
// the resolvers controller's status update that says so: the CRD's v1beta1
// status schema requires refSource and source, which a failed resolution
// leaves null, and the API server drops nulls before validating. The run
// then waits for a resolution that is never recorded (until its own
// timeout, an hour by default). The test shows that, then the same run
// with only those two `required` entries removed from the CRD: the run
// fails at once with the resolver's reason.
func (s *stack) missingBundle(t *testing.T, c catalog, resolvers *proc) {
	ctx := context.Background()
	digest := fakeDigest("a bundle never pushed")
	missing := catalogRegistry + "/tekton-multiarch/multiarch-build@" + digest
	file := variantFile(t, c, func(pr map[string]any) {
		for _, p := range pr["spec"].(map[string]any)["pipelineRef"].(map[string]any)["params"].([]any) {
			if p := p.(map[string]any); p["name"] == "bundle" {
				p["value"] = missing
			}
		}
	})
	// The resolver's own words, and the registry's answer under them.
	reason := []string{"bundleresolver", "cannot retrieve the oci image", digest, "MANIFEST_UNKNOWN"}

	stuck := s.create(t, c, file)
	refused := "is invalid: [status.refSource: Required value, status.source: Required value]"
	s.waitFor(t, "the resolvers controller to fail "+stuck.name+"'s ResolutionRequest", 60*time.Second, func(context.Context) (bool, error) {
		log, err := os.ReadFile(resolvers.log)
		if err != nil {
			return false, err
		}
		for _, l := range strings.Split(string(log), "\n") {
			if strings.Contains(l, `error marking resolutionrequest \"`+c.ns()+"/") && strings.Contains(l, refused) {
				t.Logf("resolvers controller, Tekton's CRD as released: %s", l)
				return true, nil
			}
		}
		return false, fmt.Errorf("no %q in %s", refused, resolvers.log)
	})
	if log, err := os.ReadFile(resolvers.log); err != nil {
		t.Fatal(err)
	} else {
		for _, want := range reason {
			if !strings.Contains(string(log), want) {
				t.Errorf("the resolvers controller's log lacks %q", want)
			}
		}
	}
	rr := s.resolutionRequestOf(t, c.ns(), stuck.name)
	if cond := rr.Status.GetCondition(apis.ConditionSucceeded); cond.IsFalse() || cond.IsTrue() {
		t.Errorf("ResolutionRequest %s recorded as done although its status update was refused: %s", rr.Name, condition(cond))
	}
	pr, err := stuck.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cond := pr.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("PipelineRun %s, Tekton's CRD as released: %s", stuck.name, condition(cond))
	if pr.IsDone() || cond == nil || cond.Reason != v1.PipelineRunReasonResolvingPipelineRef.String() {
		t.Errorf("with Tekton v1.15.0's CRD, want the run still %s (the failure cannot be recorded), got %s; "+
			"if Tekton records it now, drop the CRD patch below", v1.PipelineRunReasonResolvingPipelineRef, condition(cond))
	}
	cancel := []byte(`{"spec":{"status":"Cancelled"}}`)
	if _, err := s.tekton.TektonV1().PipelineRuns(c.ns()).Patch(ctx, stuck.name, types.MergePatchType, cancel, metav1.PatchOptions{}); err != nil {
		t.Errorf("cancel %s: %v", stuck.name, err)
	}

	s.relaxResolutionRequestStatus(t, rr)
	r := s.create(t, c, file)
	pr = r.waitDone(t)
	cond = pr.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("PipelineRun %s referring to %s, status.refSource and status.source not required: %s", r.name, missing, condition(cond))
	if !failed(cond) || cond.Reason != v1.PipelineRunReasonCouldntGetPipeline.String() {
		t.Fatalf("want failed with reason %s, got %s", v1.PipelineRunReasonCouldntGetPipeline, condition(cond))
	}
	for _, want := range reason {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("the failure message lacks %q: %q", want, cond.Message)
		}
	}
	if trs, err := r.taskRuns(ctx); err != nil {
		t.Fatal(err)
	} else if len(trs) != 0 {
		t.Errorf("TaskRuns created for a Pipeline that does not resolve: %v", mapKeys(trs))
	}
}

// relaxResolutionRequestStatus removes the `required` list (data,
// refSource, source) from the v1beta1 status schema of Tekton's
// ResolutionRequest CRD until the end of t, then applies the released CRD
// again.
func (s *stack) relaxResolutionRequestStatus(t testing.TB, rr *resolutionv1beta1.ResolutionRequest) {
	t.Helper()
	const crd = "crd/resolutionrequests.resolution.tekton.dev"
	patch := `[{"op":"test","path":"/spec/versions/1/name","value":"v1beta1"},` +
		`{"op":"test","path":"/spec/versions/1/schema/openAPIV3Schema/properties/status/required","value":["data","refSource","source"]},` +
		`{"op":"remove","path":"/spec/versions/1/schema/openAPIV3Schema/properties/status/required"}]`
	if out, err := s.kubectl(t, "", "patch", crd, "--type=json", "-p", patch); err != nil {
		t.Fatalf("kubectl patch %s: %v\n%s", crd, err, out)
	}
	t.Cleanup(func() {
		file := filepath.Join(tektonConfigDir(t), "300-crds", "300-resolutionrequest.yaml")
		if out, err := s.kubectl(t, "", "apply", "--server-side", "--force-conflicts", "-f", file); err != nil {
			t.Errorf("restore %s: %v\n%s", crd, err, out)
		}
	})
	// The API server takes a CRD's new schema asynchronously: wait until
	// the status update it refused passes (a server-side dry run).
	client := resolution.NewForConfigOrDie(s.cfg).ResolutionV1beta1().ResolutionRequests(rr.Namespace)
	s.waitFor(t, "the relaxed ResolutionRequest schema in effect", 30*time.Second, func(ctx context.Context) (bool, error) {
		latest, err := client.Get(ctx, rr.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		latest.Status.MarkFailed("DryRun", "schema probe")
		_, err = client.UpdateStatus(ctx, latest, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil, err
	})
}

// resolutionRequestOf is the one ResolutionRequest the PipelineRun named
// owner has made.
func (s *stack) resolutionRequestOf(t testing.TB, ns, owner string) *resolutionv1beta1.ResolutionRequest {
	t.Helper()
	list, err := resolution.NewForConfigOrDie(s.cfg).ResolutionV1beta1().ResolutionRequests(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var found []*resolutionv1beta1.ResolutionRequest
	for i := range list.Items {
		for _, o := range list.Items[i].OwnerReferences {
			if o.Kind == "PipelineRun" && o.Name == owner {
				found = append(found, &list.Items[i])
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ResolutionRequests owned by PipelineRun %s, want 1", len(found), owner)
	}
	return found[0]
}

// runRemote runs the catalog's example, whose pipelineRef and the Pipeline's
// taskRefs only a resolver can satisfy (no Task or Pipeline is installed in
// its namespace), to success on the kwok nodes with the usual checks, then
// checks where Tekton says the Pipeline and each Task came from.
func (s *stack) runRemote(t testing.TB, c catalog, commit string) {
	ctx := context.Background()
	if tasks, err := s.tekton.TektonV1().Tasks(c.ns()).List(ctx, metav1.ListOptions{}); err != nil || len(tasks.Items) != 0 {
		t.Fatalf("namespace %s must hold no Task for this run: %v %v", c.ns(), err, tasks)
	}
	if ps, err := s.tekton.TektonV1().Pipelines(c.ns()).List(ctx, metav1.ListOptions{}); err != nil || len(ps.Items) != 0 {
		t.Fatalf("namespace %s must hold no Pipeline for this run: %v %v", c.ns(), err, ps)
	}
	t0 := time.Now()
	r := s.create(t, c, "examples/pipelinerun.yaml")
	s.driveToSuccess(t, r)
	t.Logf("%s run driven to success in %s", c.cfg.References.Mode, time.Since(t0).Round(time.Millisecond))

	pr, err := r.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkRefSource(t, "PipelineRun "+r.name, pr.Status.Provenance, pr.Spec.PipelineRef.ResolverRef, commit)
	pipeline := readPipeline(t, c)
	trs, err := r.taskRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range pipeline.Spec.Tasks {
		tr, ok := trs[pt.Name]
		if !ok {
			t.Errorf("no TaskRun for %s", pt.Name)
			continue
		}
		checkRefSource(t, "TaskRun "+tr.Name, tr.Status.Provenance, pt.TaskRef.ResolverRef, commit)
	}
}

// checkRefSource: the provenance Tekton records is the object the reference
// names: the bundle's repository and digest, or the git repository, the
// commit the test made, and the file's path.
func checkRefSource(t testing.TB, what string, got *v1.Provenance, ref v1.ResolverRef, commit string) {
	t.Helper()
	p := resolverParams(ref)
	var want v1.RefSource
	switch ref.Resolver {
	case "bundles":
		repo, digest, ok := strings.Cut(p["bundle"], "@sha256:")
		if !ok {
			t.Fatalf("%s: bundle %q is not by digest", what, p["bundle"])
		}
		want = v1.RefSource{URI: repo, Digest: map[string]string{"sha256": digest}, EntryPoint: p["name"]}
	case "git":
		want = v1.RefSource{URI: "git+" + p["url"], Digest: map[string]string{"sha1": commit}, EntryPoint: p["pathInRepo"]}
	default:
		t.Fatalf("%s: resolver %q", what, ref.Resolver)
	}
	if got == nil || got.RefSource == nil {
		t.Errorf("%s: no provenance.refSource; want %+v", what, want)
		return
	}
	g := got.RefSource
	if g.URI != want.URI || g.EntryPoint != want.EntryPoint || !mapsEqual(g.Digest, want.Digest) {
		t.Errorf("%s: provenance.refSource %+v, want %+v", what, *g, want)
	}
}

func resolverParams(ref v1.ResolverRef) map[string]string {
	m := map[string]string{}
	for _, p := range ref.Params {
		m[p.Name] = p.Value.StringVal
	}
	return m
}

func readExample(t testing.TB, c catalog) *v1.PipelineRun {
	t.Helper()
	var pr v1.PipelineRun
	readYAML(t, filepath.Join(c.dir, "examples", "pipelinerun.yaml"), &pr)
	return &pr
}

func readPipeline(t testing.TB, c catalog) *v1.Pipeline {
	t.Helper()
	var p v1.Pipeline
	readYAML(t, filepath.Join(c.dir, "pipelines", "multiarch-build", c.cfg.Catalog.Version, "multiarch-build.yaml"), &p)
	return &p
}

func readYAML(t testing.TB, file string, obj any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// startResolvers applies Tekton's config/resolvers/ from the module cache
// (its namespace, ServiceAccount, RBAC and ConfigMaps; not the Deployment
// and Service), and starts cmd/resolvers out of cluster, as that
// ServiceAccount (a token from the TokenRequest API), with the environment
// the Deployment gives it. Started by the subtest that needs it, stopped by
// PID at its end.
func (s *stack) startResolvers(t testing.TB) *proc {
	t.Helper()
	dir := filepath.Join(tektonConfigDir(t), "resolvers")
	glob := func(pattern string) []string { return globAll(t, dir, pattern) }
	s.applyFiles(t, false, filepath.Join(dir, "100-namespace.yaml"))
	s.applyFiles(t, false, append(glob("200-*.yaml"), glob("201-*.yaml")...)...)
	// resolvers-feature-flags, bundleresolver-config, git-resolver-config,
	// the other resolvers' configs, logging, observability, leader election.
	s.applyFiles(t, false, glob("*config*.yaml")...)

	ctx := context.Background()
	flags, err := s.kube.CoreV1().ConfigMaps(resolversNS).Get(ctx, "resolvers-feature-flags", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"enable-bundles-resolver", "enable-git-resolver"} {
		if flags.Data[f] != "true" {
			t.Fatalf("Tekton's resolvers-feature-flags has %s=%q; this test expects the release's default, true", f, flags.Data[f])
		}
	}

	t0 := time.Now()
	p := s.start(t, "tekton-resolvers", []string{
		"SYSTEM_NAMESPACE=" + resolversNS,
		"KUBERNETES_MIN_VERSION=v1.28.0",
		"CONFIG_LOGGING_NAME=config-logging",
		"CONFIG_OBSERVABILITY_NAME=config-observability",
		"CONFIG_FEATURE_FLAGS_NAME=feature-flags",
		"CONFIG_LEADERELECTION_NAME=config-leader-election-resolvers",
		"METRICS_DOMAIN=tekton.dev/resolution",
		// The pipelines controller has the default ports in this namespace.
		"METRICS_PROMETHEUS_HOST=127.0.0.1",
		"METRICS_PROMETHEUS_PORT=9104",
		"PROFILING_PORT=8104",
		// Nothing here asks the hub resolver: no hub is contacted.
		"TEKTON_HUB_API=",
	}, filepath.Join(s.bin, "resolvers"), "-kubeconfig="+s.tokenKubeconfig(t, resolversNS, resolversSA))
	// cmd/resolvers has no -disable-ha: like the Deployment, it takes its
	// leases (the Role in 200-role.yaml allows it) before it resolves.
	s.waitFor(t, "the resolvers controller's leases", 60*time.Second, func(ctx context.Context) (bool, error) {
		leases, err := s.kube.CoordinationV1().Leases(resolversNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		held := 0
		for _, l := range leases.Items {
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				held++
			}
		}
		return held > 0 && held == len(leases.Items), fmt.Errorf("%d of %d leases held", held, len(leases.Items))
	})
	t.Logf("resolvers controller leading in %s", time.Since(t0).Round(time.Millisecond))
	return p
}

// tokenKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount sa of ns with a token from the TokenRequest API, so a
// component runs with the RBAC its manifests give it, not as admin.
func (s *stack) tokenKubeconfig(t testing.TB, ns, sa string) string {
	t.Helper()
	tok, err := s.kube.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: func(i int64) *int64 { return &i }(3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s/%s: %v", ns, sa, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster-test"] = &clientcmdapi.Cluster{Server: apiServer, CertificateAuthorityData: s.pki.caPEM}
	kc.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["cluster-test"] = &clientcmdapi.Context{Cluster: "cluster-test", AuthInfo: sa}
	kc.CurrentContext = "cluster-test"
	kubeconfig := filepath.Join(s.pki.dir, "kubeconfig-"+ns+"-"+sa)
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// startCatalogRegistry runs Debian's docker-registry on catalogRegistry
// inside the namespace, where the resolvers controller and the CLI reach it.
func (s *stack) startCatalogRegistry(t testing.TB) {
	t.Helper()
	dir := filepath.Join(s.work, "catalog-registry")
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), catalogRegistry)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "config.yml"), []byte(cfg))
	s.start(t, "catalog-registry", nil, "docker-registry", "serve", filepath.Join(dir, "config.yml"))
	client := s.nsHTTP(nil)
	s.waitFor(t, "the catalog registry (http://"+catalogRegistry+"/v2/)", 30*time.Second, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+catalogRegistry+"/v2/", nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/v2/: %s", resp.Status)
	})
}

// bundlePush runs the real `tekton-multiarch bundle push` of the catalog's
// configuration inside the namespace (no credentials: an empty docker
// config) and returns the references it printed.
func (c *startCLI) bundlePush(t testing.TB, cat catalog) map[string]bool {
	t.Helper()
	repo := cat.cfg.References.Bundles.Repository
	cmd := exec.Command("nsenter", "--net="+c.s.nsPath, "--", c.bin, "bundle", "push", "--repository", repo, "--config", cat.cfgFile)
	cmd.Dir = c.s.repo
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + c.s.work, "DOCKER_CONFIG=" + t.TempDir()}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("tekton-multiarch bundle push --repository %s: %v\n%s%s", repo, err, stdout.String(), stderr.String())
	}
	t.Logf("$ tekton-multiarch bundle push --repository %s --config <variant> (%s)\n%s", repo, time.Since(t0).Round(time.Millisecond), stdout.String())
	pushed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			pushed[f[2]] = true
		}
	}
	if len(pushed) == 0 {
		t.Fatalf("bundle push printed no bundle:\n%s", stdout.String())
	}
	return pushed
}

// serveGit commits the generated tree as it stands (tasks/, pipelines/,
// examples/) to branch main of a repository `catalog`, serves it with git
// daemon on catalogGitAddr inside the namespace until the end of t, and
// returns the commit.
func (s *stack) serveGit(t testing.TB, c catalog) string {
	t.Helper()
	git := func(args ...string) string { return realbuild.FixtureGit(t, c.dir, s.work, args...) }
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("commit", "-q", "-m", "the generated catalog")
	commit := git("rev-parse", "HEAD")
	base := filepath.Dir(c.dir)
	if filepath.Base(c.dir) != "catalog" {
		t.Fatalf("the generated tree is %s; serveGit serves it as catalog", c.dir)
	}
	host, port, _ := strings.Cut(catalogGitAddr, ":")
	s.start(t, "catalog-git-daemon", nil, "git", "daemon", "--listen="+host, "--port="+port,
		"--base-path="+base, "--export-all", "--reuseaddr", "--informative-errors", base)
	url := "git://" + catalogGitAddr + "/catalog"
	s.waitFor(t, "git daemon serving "+url, 30*time.Second, func(ctx context.Context) (bool, error) {
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+s.nsPath, "--", "git", "ls-remote", url, "main").CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("git ls-remote %s: %v: %s", url, err, out)
		}
		return strings.HasPrefix(string(out), commit), fmt.Errorf("git ls-remote %s: %s", url, out)
	})
	return commit
}
