// Package bundles_test pushes the catalog as Tekton bundles to a real
// registry on loopback with the generator's command, and reads every object
// back with Tekton's own resolver code.
package bundles_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned/scheme"
	tektonbundle "github.com/tektoncd/pipeline/pkg/resolution/resolver/bundle"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/tekton-multiarch/tekton-multiarch/generator/bundle"
	"github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/cli"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// repoRoot is the checkout, where the committed catalog is.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// pushed is one line of `bundle push`: Kind name ref.
type pushed struct{ kind, name, ref string }

func push(t *testing.T, args ...string) ([]pushed, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(append([]string{"bundle", "push"}, args...), &out, &errOut)
	var ps []pushed
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			ps = append(ps, pushed{f[0], f[1], f[2]})
		}
	}
	return ps, errOut.String(), code
}

// committed is the object's committed file.
func committed(t *testing.T, kind, name, version string) []byte {
	t.Helper()
	dir := map[string]string{"Task": "tasks", "Pipeline": "pipelines"}[kind]
	b, err := os.ReadFile(filepath.Join(repoRoot(t), dir, name, version, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t *testing.T, kind string, data []byte) runtime.Object {
	t.Helper()
	var obj runtime.Object = &v1.Task{}
	if kind == "Pipeline" {
		obj = &v1.Pipeline{}
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return obj
}

func TestPushResolve(t *testing.T) {
	reg := realbuild.StartRegistry(t, t.TempDir())
	// No credentials for the open registry: an empty docker config.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	version := cfg.Catalog.Version
	repo := reg.Addr + "/tekton-multiarch/catalog"
	ps, stderr, code := push(t, "--repository", repo)
	if code != cli.ExitOK {
		t.Fatalf("bundle push: exit %d\n%s", code, stderr)
	}
	want, err := catalog.BundleObjects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != len(want) {
		t.Fatalf("bundle push printed %d bundles, want %d: %v", len(ps), len(want), ps)
	}
	ctx := context.Background()
	for i, o := range want {
		p := ps[i]
		t.Run(o.Kind+"/"+o.Name, func(t *testing.T) {
			// Printed by digest, and that digest is the one generate computes offline.
			digest, err := bundle.Digest(o)
			if err != nil {
				t.Fatal(err)
			}
			if p.kind != o.Kind || p.name != o.Name || p.ref != bundle.Ref(repo, o.Name, digest) {
				t.Fatalf("printed %v, want %s %s %s", p, o.Kind, o.Name, bundle.Ref(repo, o.Name, digest))
			}
			// The tag points at the same bundle.
			tags, err := reg.Tags("tekton-multiarch/catalog/" + o.Name)
			if err != nil || len(tags) != 1 || tags[0] != version {
				t.Fatalf("tags of %s: %v %v, want [%s]", o.Name, tags, err, version)
			}
			file := committed(t, o.Kind, o.Name, version)
			for _, ref := range []string{p.ref, repo + "/" + o.Name + ":" + version} {
				// The bundles resolver's own entry point, as the resolvers controller calls it.
				res, err := tektonbundle.GetEntry(ctx, authn.DefaultKeychain, tektonbundle.RequestOptions{Bundle: ref, EntryName: o.Name, Kind: strings.ToLower(o.Kind)})
				if err != nil {
					t.Fatalf("Tekton's bundles resolver on %s: %v", ref, err)
				}
				if !bytes.HasSuffix(file, res.Data()) || !bytes.HasPrefix(res.Data(), []byte("apiVersion: tekton.dev/v1\n")) {
					t.Errorf("%s: the resolved YAML is not the committed file's:\n%s", ref, res.Data())
				}
				if diff := cmp.Diff(decode(t, o.Kind, file), decode(t, o.Kind, res.Data())); diff != "" {
					t.Errorf("%s: resolved object differs from the committed one (-committed +resolved):\n%s", ref, diff)
				}
				if got := res.RefSource().Digest["sha256"]; "sha256:"+got != digest.String() {
					t.Errorf("%s: refSource digest %s, want %s", ref, got, digest)
				}
				wantAnn := map[string]string{tektonbundle.ResolverAnnotationKind: strings.ToLower(o.Kind), tektonbundle.ResolverAnnotationName: o.Name, tektonbundle.ResolverAnnotationAPIVersion: "v1"}
				if diff := cmp.Diff(wantAnn, res.Annotations()); diff != "" {
					t.Errorf("%s: resolver annotations (-want +got):\n%s", ref, diff)
				}
				// Decoded as the pipelines controller decodes resolved data: Tekton's scheme.
				obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(res.Data(), nil, nil)
				if err != nil {
					t.Fatalf("%s: Tekton's scheme cannot decode the resolved data: %v", ref, err)
				}
				if diff := cmp.Diff(decode(t, o.Kind, file), obj); diff != "" {
					t.Errorf("%s: decoded object differs from the committed one (-committed +resolved):\n%s", ref, diff)
				}
			}
			// Asking for another object in this bundle fails, naming it.
			if _, err := tektonbundle.GetEntry(ctx, authn.DefaultKeychain, tektonbundle.RequestOptions{Bundle: p.ref, EntryName: "nope", Kind: "task"}); err == nil || !strings.Contains(err.Error(), "could not find object in image with kind: task and name: nope") {
				t.Errorf("missing entry: %v", err)
			}
		})
	}
	// Pushing again changes no digest: the bundles are reproducible.
	again, stderr, code := push(t, "--repository", repo)
	if code != cli.ExitOK || cmp.Diff(ps, again, cmp.AllowUnexported(pushed{})) != "" {
		t.Errorf("second push: exit %d %s\n%v\nwant %v", code, stderr, again, ps)
	}
}

// authRegistry fronts the registry with HTTP basic auth, as a private
// registry does: 401 with a challenge unless user:password is given.
func authRegistry(t *testing.T, upstream, user, password string) string {
	t.Helper()
	target, _ := url.Parse("http://" + upstream)
	proxy := httputil.NewSingleHostReverseProxy(target)
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			rw.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(rw, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		proxy.ServeHTTP(rw, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestPushFails(t *testing.T) {
	reg := realbuild.StartRegistry(t, t.TempDir())
	refusing := realbuild.RefusingRegistry(t, reg.Addr)
	private := authRegistry(t, reg.Addr, "builder", "s3cret-pass")
	noCreds := t.TempDir()
	creds := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("builder:s3cret-pass"))
	if err := os.WriteFile(filepath.Join(creds, "config.json"), []byte(`{"auths":{"`+private+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("127.0.0.1:%d", realbuild.FreePort(t))
	for _, tc := range []struct {
		name, repository, dockerConfig string
		code                           int
		stderr                         []string
	}{
		{"malformed reference", "Registry.Example.com/UPPER", noCreds, cli.ExitUsage, []string{"--repository: ", "is not a valid image reference"}},
		{"no repository", "", noCreds, cli.ExitUsage, []string{"--repository is required"}},
		{"unreachable registry", closed + "/catalog", noCreds, cli.ExitFailed, []string{"pushing the Task git-sync bundle to " + closed + "/catalog/git-sync:0.1", "connection refused"}},
		{"refused push", refusing + "/catalog", noCreds, cli.ExitFailed, []string{"pushing the Task git-sync bundle", "DENIED", "this registry refuses the push"}},
		{"private registry without credentials", private + "/catalog", noCreds, cli.ExitFailed, []string{"pushing the Task git-sync bundle", "401 Unauthorized"}},
		{"private registry, docker config credentials", private + "/catalog", creds, cli.ExitOK, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", tc.dockerConfig)
			args := []string{"--timeout", "30s"}
			if tc.repository != "" {
				args = append(args, "--repository", tc.repository)
			}
			ps, stderr, code := push(t, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if strings.Contains(stderr, "s3cret-pass") || strings.Contains(stderr, auth) {
				t.Errorf("stderr shows the password:\n%s", stderr)
			}
			if tc.code != cli.ExitOK && len(ps) != 0 {
				t.Errorf("printed bundles although the first push failed: %v", ps)
			}
			if tc.code == cli.ExitOK && len(ps) != 5 {
				t.Errorf("pushed %v, want 5 bundles", ps)
			}
		})
	}
}

// TestBundlesMode: a catalog generated with references.mode bundles refers to
// bundles that the push of the same configuration makes, by digest: every
// reference in the pushed Pipelines, and start's pipelineRef, resolves.
func TestBundlesMode(t *testing.T) {
	reg := realbuild.StartRegistry(t, t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	repo := reg.Addr + "/bundles-mode"
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("references:\n  mode: bundles\n  bundles:\n    repository: "+repo+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, stderr, code := push(t, "--repository", repo, "--config", cfgFile)
	if code != cli.ExitOK {
		t.Fatalf("bundle push: exit %d\n%s", code, stderr)
	}
	var out, errOut bytes.Buffer
	if code := cli.Run([]string{"start", "--config", cfgFile, "--git-url", "https://example.com/app.git", "--ref", "main", "--image", "registry.example.com/app:v1", "--dry-run", "-o", "yaml"}, &out, &errOut); code != cli.ExitOK {
		t.Fatalf("start --dry-run: exit %d\n%s", code, errOut.String())
	}
	var pr v1.PipelineRun
	if err := yaml.Unmarshal(out.Bytes(), &pr); err != nil {
		t.Fatal(err)
	}
	resolve := func(ref *v1.ResolverRef) []byte {
		t.Helper()
		if ref.Resolver != "bundles" {
			t.Fatalf("resolver %q, want bundles", ref.Resolver)
		}
		opts := tektonbundle.RequestOptions{}
		for _, p := range ref.Params {
			switch p.Name {
			case "bundle":
				opts.Bundle = p.Value.StringVal
			case "name":
				opts.EntryName = p.Value.StringVal
			case "kind":
				opts.Kind = p.Value.StringVal
			}
		}
		if !strings.Contains(opts.Bundle, "@sha256:") {
			t.Errorf("bundle %q is not by digest", opts.Bundle)
		}
		res, err := tektonbundle.GetEntry(context.Background(), authn.DefaultKeychain, opts)
		if err != nil {
			t.Fatalf("resolving %+v: %v", opts, err)
		}
		return res.Data()
	}
	var p v1.Pipeline
	if err := yaml.UnmarshalStrict(resolve(&pr.Spec.PipelineRef.ResolverRef), &p); err != nil {
		t.Fatal(err)
	}
	if p.Name != "multiarch-build" {
		t.Errorf("start's pipelineRef resolved to %q", p.Name)
	}
	refs := map[string]bool{}
	for _, pt := range p.Spec.Tasks {
		var task v1.Task
		if err := yaml.UnmarshalStrict(resolve(&pt.TaskRef.ResolverRef), &task); err != nil {
			t.Fatal(err)
		}
		refs[task.Name] = true
	}
	if len(refs) != 2 || !refs["buildah-build"] || !refs["buildah-manifest"] {
		t.Errorf("the Pipeline's tasks resolved to %v", refs)
	}
	found := false
	for _, x := range ps {
		found = found || x.ref == pipelineBundle(pr)
	}
	if !found {
		t.Errorf("start refers to %s, which bundle push did not print: %v", pipelineBundle(pr), ps)
	}
}

func pipelineBundle(pr v1.PipelineRun) string {
	for _, p := range pr.Spec.PipelineRef.Params {
		if p.Name == "bundle" {
			return p.Value.StringVal
		}
	}
	return ""
}
