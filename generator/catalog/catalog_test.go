package catalog

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/lint"
	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

var update = flag.Bool("update", false, "rewrite the golden files (the committed catalog and testdata/golden/*/want) from the generator")

// repoRoot is where the committed catalog lives.
const repoRoot = "../.."

type goldenCase struct {
	name string
	cfg  *config.Config
	dir  string // where its expected tree is
}

func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	cases := []goldenCase{{name: "default", cfg: config.Default(), dir: repoRoot}}
	dirs, err := filepath.Glob("testdata/golden/*/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(dirs)
	for _, p := range dirs {
		cfg, err := config.Load(p)
		if err != nil {
			t.Fatalf("golden config: %v", err)
		}
		cases = append(cases, goldenCase{name: filepath.Base(filepath.Dir(p)), cfg: cfg, dir: filepath.Join(filepath.Dir(p), "want")})
	}
	if len(cases) < 3 {
		t.Fatalf("want the default and at least two more golden configs, have %d", len(cases))
	}
	return cases
}

// TestGolden keeps the committed catalog (and each golden config's tree)
// equal to what the generator emits. Run with -update to rewrite them, then
// review the diff.
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			files, err := Generate(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := render.Write(tc.dir, files, Owned); err != nil {
					t.Fatal(err)
				}
				return
			}
			diff, err := render.Check(tc.dir, files, Owned)
			if err != nil {
				t.Fatal(err)
			}
			if diff != "" {
				t.Errorf("generated files differ from %s (go test ./generator/catalog -update to accept):\n%s", tc.dir, diff)
			}
		})
	}
}

// TestTektonValidation decodes every generated YAML file strictly into
// Tekton's v1 types and runs Tekton's own SetDefaults and Validate, then the
// project's lint, for every golden configuration.
func TestTektonValidation(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			files, err := Generate(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var all validate.Objects
			for _, p := range files.Paths() {
				if !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yaml.sample")) || strings.HasPrefix(p, "examples/cluster/") || strings.HasPrefix(p, "examples/triggers/") {
					continue
				}
				o, err := validate.Decode(p, files[p])
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.Check(o); err != nil {
					t.Errorf("%s: %v", p, err)
				}
				all.Add(o)
			}
			if len(all.Tasks) != 3 || len(all.Pipelines) != 2 || len(all.PipelineRuns) != 3 || len(all.TaskRuns) != 3 {
				t.Errorf("decoded %d tasks, %d pipelines, %d pipelineruns, %d taskruns; want 3, 2, 3, 3",
					len(all.Tasks), len(all.Pipelines), len(all.PipelineRuns), len(all.TaskRuns))
			}
			for _, e := range lint.Check(all) {
				t.Error(e)
			}
		})
	}
}

// TestKubernetesValidation decodes every generated examples/cluster/ object strictly
// into its k8s.io/api type and runs the offline checks, for every golden
// configuration.
func TestKubernetesValidation(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			files, err := Generate(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, p := range files.Paths() {
				if !(strings.HasPrefix(p, "examples/cluster/") || strings.HasPrefix(p, "examples/triggers/")) || !strings.Contains(p, ".yaml") {
					continue
				}
				objs, err := validate.DecodeKubernetes(p, files[p])
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.CheckKubernetes(objs); err != nil {
					t.Errorf("%s: %v", p, err)
				}
				for _, o := range objs {
					kinds[fmt.Sprintf("%T", o.Object)]++
				}
			}
			want := map[string]int{
				"*v1.DaemonSet": 1, "*v1.ConfigMap": 2 /* the profile loader's, chains-config */, "*v1.Role": 1, "*cluster.AppArmorProfile": 1,
				"*v1beta1.EventListener": 1, "*v1beta1.TriggerBinding": 1, "*v1beta1.TriggerTemplate": 1,
				"*v1.RoleBinding": 1, "*v1.ClusterRole": 1 /* the arch policy's reader */, "*v1.ClusterRoleBinding": 1,
				"*v1beta1.MutatingAdmissionPolicy": 1, "*v1beta1.MutatingAdmissionPolicyBinding": 1,
			}
			if !tc.cfg.LoadsAppArmorProfile() {
				want["*cluster.AppArmorProfile"] = 0
			}
			// The pull-request trigger's own binding and template.
			if tc.cfg.Triggers.PullRequests.Enabled {
				want["*v1beta1.TriggerBinding"]++
				want["*v1beta1.TriggerTemplate"]++
				// And the canceller's: a binding, a template, its Role and the policy.
				if tc.cfg.Triggers.PullRequests.CancelSuperseded {
					want["*v1beta1.TriggerBinding"]++
					want["*v1beta1.TriggerTemplate"]++
					want["*v1.Role"]++
					want["*v1.RoleBinding"]++
					want["*v1.ValidatingAdmissionPolicy"]++
					want["*v1.ValidatingAdmissionPolicyBinding"]++
				}
			}
			// The pruner: its Role and binding, the policy, the CronJob.
			if tc.cfg.Prune.Enabled {
				want["*v1.Role"]++
				want["*v1.RoleBinding"]++
				want["*v1.ValidatingAdmissionPolicy"]++
				want["*v1.ValidatingAdmissionPolicyBinding"]++
				want["*v1.CronJob"]++
			}
			if _, ok := files[PruneFile]; ok != tc.cfg.Prune.Enabled {
				t.Errorf("%s generated: %v, want %v (prune.enabled)", PruneFile, ok, tc.cfg.Prune.Enabled)
			}
			// The node-loss watcher: its Roles and bindings, the policy, the CronJob.
			if tc.cfg.NodeLoss.Enabled {
				want["*v1.ClusterRole"]++
				want["*v1.ClusterRoleBinding"]++
				want["*v1.Role"]++
				want["*v1.RoleBinding"]++
				want["*v1.ValidatingAdmissionPolicy"]++
				want["*v1.ValidatingAdmissionPolicyBinding"]++
				want["*v1.CronJob"]++
			}
			if _, ok := files[NodeLossFile]; ok != tc.cfg.NodeLoss.Enabled {
				t.Errorf("%s generated: %v, want %v (nodeLoss.enabled)", NodeLossFile, ok, tc.cfg.NodeLoss.Enabled)
			}
			// The fuse device plugin only where the build asks for /dev/fuse.
			if tc.cfg.Build.NeedsFuse() {
				want["*v1.DaemonSet"]++
			}
			// The user-namespace policy only with build.userNamespaces.
			if tc.cfg.Build.UserNamespaces {
				want["*v1beta1.MutatingAdmissionPolicy"]++
				want["*v1beta1.MutatingAdmissionPolicyBinding"]++
			}
			if _, ok := files[UsernsPolicyFile]; ok != tc.cfg.Build.UserNamespaces {
				t.Errorf("%s generated: %v, want %v (build.userNamespaces)", UsernsPolicyFile, ok, tc.cfg.Build.UserNamespaces)
			}
			if _, ok := files[FusePluginFile]; ok != tc.cfg.Build.NeedsFuse() {
				t.Errorf("%s generated: %v, want %v (build.storage %s)", FusePluginFile, ok, tc.cfg.Build.NeedsFuse(), tc.cfg.Build.Storage)
			}
			for k, n := range want {
				if kinds[k] != n {
					t.Errorf("%d %s objects, want %d (all: %v)", kinds[k], k, n, kinds)
				}
			}
		})
	}
}

func TestKubernetesValidationRejectsBrokenObjects(t *testing.T) {
	cfg, err := config.Parse([]byte("build: {storage: fuse-overlayfs}"), "fuse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ds := string(files[FusePluginFile])
	id := string(files["examples/cluster/build-identity.yaml"])
	tr := string(files["examples/triggers/triggers.yaml"])
	pol := string(files[ArchPolicyFile])
	for _, tc := range []struct{ name, path, yaml, want string }{
		{"typo", "ds", strings.Replace(ds, "      volumes:", "      volumess:", 1), `unknown field "spec.template.spec.volumess"`},
		{"selector does not match", "ds", strings.Replace(ds, "        app.kubernetes.io/name: fuse-device-plugin\n        app.kubernetes.io/part-of", "        app.kubernetes.io/name: other\n        app.kubernetes.io/part-of", 1), "must match spec.selector"},
		{"mount of no volume", "ds", strings.Replace(ds, "- name: dev-fuse\n              readOnly", "- name: dev-fuze\n              readOnly", 1), `Not found: "dev-fuze"`},
		{"bad name", "id", strings.Replace(id, "name: multiarch-builder", "name: Multiarch_Builder", 1), "RFC 1123"},
		{"unknown kind", "id", strings.Replace(id, "kind: Role", "kind: Rol", 1), "not a kind this project generates"},
		{"listener without its template", "tr", strings.Replace(tr, "      template:\n        ref: multiarch-build\n", "", 1), "expected exactly one"},
		{"template param undeclared", "tr", strings.Replace(tr, "$(tt.params.git-revision)", "$(tt.params.git-sha)", 1), "git-sha"},
		{"interceptor typo", "tr", strings.Replace(tr, "interceptors:", "interceptor:", 1), `unknown field "spec.triggers[0].interceptor"`},
		{"policy typo", "pol", strings.Replace(pol, "matchConditions:", "matchCondition:", 1), `unknown field "spec.matchCondition"`},
		{"policy lets unpinned pods through", "pol", strings.Replace(pol, "failurePolicy: Fail", "failurePolicy: Ignore", 1), "spec.failurePolicy"},
		{"policy touches every pod", "pol", strings.Replace(pol, "    objectSelector:\n      matchLabels:\n        tekton-multiarch.dev/task: buildah-build\n", "", 1), "spec.matchConstraints.objectSelector"},
		{"binding of another policy", "pol", strings.Replace(pol, "policyName: multiarch-build-arch", "policyName: multiarch-build-arc", 1), "spec.policyName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.yaml == ds || tc.yaml == id || tc.yaml == tr || tc.yaml == pol {
				t.Fatal("the replacement did not apply; the test is stale")
			}
			objs, err := validate.DecodeKubernetes(tc.path, []byte(tc.yaml))
			if err == nil {
				err = validate.CheckKubernetes(objs)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// The validation above must be able to fail: broken objects are rejected.
func TestValidationRejectsBrokenObjects(t *testing.T) {
	files, err := Generate(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	task := string(files["tasks/buildah-build/0.1/buildah-build.yaml"])
	pipe := string(files["pipelines/multiarch-build/0.1/multiarch-build.yaml"])
	for _, tc := range []struct {
		name, path, yaml, want string
	}{
		{"case matters", "task", strings.Replace(task, "      volumeMounts:", "      VolumeMounts:", 1), `unknown field "spec.steps[0].VolumeMounts"`},
		{"typo in a field", "task", strings.Replace(task, "    - name: build\n      image:", "    - name: build\n      imag:", 1), `unknown field "spec.steps[1].imag"`},
		{"undeclared param", "task", strings.Replace(task, "value: $(params.PLATFORM)", "value: $(params.PLATFROM)", 1), "non-existent variable"},
		{"duplicate step", "task", strings.Replace(task, "    - name: build\n", "    - name: clone\n", 1), "spec.steps[1].name"},
		{"unknown pipeline task in runAfter", "pipeline", strings.Replace(pipe, "    - name: manifest\n", "    - name: manifest\n      runAfter: [build-mips]\n", 1), "build-mips"},
		{"bad result name", "task", strings.Replace(task, "- name: IMAGE_REF\n", "- name: IMAGE REF\n", 1), "invalid key name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := validate.Decode(tc.path, []byte(tc.yaml))
			if err == nil {
				err = validate.Check(o)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// Every generated Task carries the metadata Tekton Hub and Artifact Hub read.
func TestHubMetadata(t *testing.T) {
	for _, tc := range goldenCases(t) {
		o, err := NewObjects(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		wantPlatforms := ""
		for i, a := range tc.cfg.Architectures {
			if i > 0 {
				wantPlatforms += ","
			}
			wantPlatforms += a.Platform()
		}
		for _, m := range []struct {
			name        string
			labels, ann map[string]string
		}{
			{o.GitSync.Name, o.GitSync.Labels, o.GitSync.Annotations},
			{o.Build.Name, o.Build.Labels, o.Build.Annotations},
			{o.Manifest.Name, o.Manifest.Labels, o.Manifest.Annotations},
			{o.Pipeline.Name, o.Pipeline.Labels, o.Pipeline.Annotations},
		} {
			if m.labels["app.kubernetes.io/version"] != tc.cfg.Catalog.Version {
				t.Errorf("%s/%s: version label %q", tc.name, m.name, m.labels["app.kubernetes.io/version"])
			}
			if m.ann["tekton.dev/platforms"] != wantPlatforms {
				t.Errorf("%s/%s: platforms %q, want %q", tc.name, m.name, m.ann["tekton.dev/platforms"], wantPlatforms)
			}
			for _, k := range []string{"tekton.dev/pipelines.minVersion", "tekton.dev/categories", "tekton.dev/tags", "tekton.dev/displayName"} {
				if m.ann[k] == "" {
					t.Errorf("%s/%s: annotation %s missing", tc.name, m.name, k)
				}
			}
		}
	}
}

// The README's tkn command is TknStartCommand's, which the cluster test
// runs with the real tkn.
func TestReadmeTknCommand(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(data), "")
	for _, want := range []string{TknStartCommand(config.Default()), TknStartMatrixCommand(config.Default())} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not show the tested tkn command:\n%s", want)
		}
	}
}

func TestGenerateLeavesNoTempFilesInGolden(t *testing.T) {
	entries, err := os.ReadDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temp file in repo root: %s", e.Name())
		}
	}
}
