package catalog

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// TestArtifactHubLayout reads the committed tasks/ and pipelines/ as Artifact
// Hub's Tekton tracker reads a directory-based catalog
// (github.com/artifacthub/hub internal/tracker/source/tekton): every
// directory is a package, every version directory under it a semver holding
// <name>.yaml, whose name, app.kubernetes.io/version label and description
// it requires, and whose artifacthub.io/* annotations must parse.
func TestArtifactHubLayout(t *testing.T) {
	semverish := regexp.MustCompile(`^\d+\.\d+(\.\d+)?$`)
	categories := []string{"ai-machine-learning", "database", "integration-delivery", "monitoring-logging", "networking", "security", "storage", "streaming-messaging", "skip-prediction"}
	for _, tc := range []struct {
		dir  string
		want []string
		obj  func() (metav1.Object, func() string)
	}{
		{"tasks", []string{"buildah-build", "buildah-manifest", "git-sync"}, func() (metav1.Object, func() string) {
			t := &v1.Task{}
			return t, func() string { return t.Spec.Description }
		}},
		{"pipelines", []string{"multiarch-build", "multiarch-build-matrix"}, func() (metav1.Object, func() string) {
			p := &v1.Pipeline{}
			return p, func() string { return p.Spec.Description }
		}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			root := filepath.Join("..", "..", tc.dir)
			entries, err := os.ReadDir(root)
			if err != nil {
				t.Fatal(err)
			}
			var pkgs []string
			for _, e := range entries {
				if !e.IsDir() {
					if e.Name() != ArtifactHubRepoFile {
						t.Errorf("%s/%s: Artifact Hub ignores it; only %s belongs beside the packages", tc.dir, e.Name(), ArtifactHubRepoFile)
					}
					continue
				}
				pkgs = append(pkgs, e.Name())
				versions, err := os.ReadDir(filepath.Join(root, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range versions {
					if !v.IsDir() || !semverish.MatchString(v.Name()) {
						t.Errorf("%s/%s/%s: not a version directory", tc.dir, e.Name(), v.Name())
						continue
					}
					file := filepath.Join(root, e.Name(), v.Name(), e.Name()+".yaml")
					data, err := os.ReadFile(file)
					if err != nil {
						t.Errorf("the manifest Artifact Hub reads: %v", err)
						continue
					}
					obj, desc := tc.obj()
					if err := yaml.Unmarshal(data, obj); err != nil {
						t.Fatalf("%s: %v", file, err)
					}
					if obj.GetName() != e.Name() {
						t.Errorf("%s: name %q, Artifact Hub wants the directory's name %q", file, obj.GetName(), e.Name())
					}
					if got := obj.GetLabels()["app.kubernetes.io/version"]; got != v.Name() {
						t.Errorf("%s: app.kubernetes.io/version %q, want the directory's %q", file, got, v.Name())
					}
					if strings.TrimSpace(desc()) == "" {
						t.Errorf("%s: no spec.description (Artifact Hub refuses the package)", file)
					}
					ann := obj.GetAnnotations()
					for _, k := range []string{"tekton.dev/displayName", "tekton.dev/tags", "tekton.dev/platforms", "tekton.dev/pipelines.minVersion"} {
						if ann[k] == "" {
							t.Errorf("%s: no %s", file, k)
						}
					}
					if !slices.Contains(categories, ann["artifacthub.io/category"]) {
						t.Errorf("%s: artifacthub.io/category %q", file, ann["artifacthub.io/category"])
					}
					var links []struct{ Name, URL string }
					if err := yaml.UnmarshalStrict([]byte(ann["artifacthub.io/links"]), &links); err != nil || len(links) != 1 || links[0].URL == "" {
						t.Errorf("%s: artifacthub.io/links %q: %v", file, ann["artifacthub.io/links"], err)
					}
				}
			}
			if !slices.Equal(pkgs, tc.want) {
				t.Errorf("packages %v, want %v", pkgs, tc.want)
			}
			var repo map[string]any
			data, err := os.ReadFile(filepath.Join(root, ArtifactHubRepoFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(data, &repo); err != nil {
				t.Fatalf("%s: %v", ArtifactHubRepoFile, err)
			}
			for k := range repo {
				if !slices.Contains([]string{"repositoryID", "owners", "ignore"}, k) {
					t.Errorf("%s: unknown key %q", ArtifactHubRepoFile, k)
				}
			}
		})
	}
}

// TestArtifactHubOwners: owners and repository IDs reach the metadata file
// and the maintainers annotation; a bad e-mail is a configuration error.
func TestArtifactHubOwners(t *testing.T) {
	cfg, err := config.Parse([]byte("artifactHub:\n  taskRepositoryID: 0f6e1c2a-1111-2222-3333-444455556666\n  license: Apache-2.0\n  owners:\n    - name: Ada\n      email: ada@example.com\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var repo struct {
		RepositoryID string
		Owners       []config.Owner
	}
	if err := yaml.UnmarshalStrict(files["tasks/"+ArtifactHubRepoFile], &repo); err != nil {
		t.Fatal(err)
	}
	if repo.RepositoryID != "0f6e1c2a-1111-2222-3333-444455556666" || len(repo.Owners) != 1 || repo.Owners[0].Email != "ada@example.com" {
		t.Errorf("tasks/%s: %+v", ArtifactHubRepoFile, repo)
	}
	var task v1.Task
	if err := yaml.Unmarshal(files["tasks/git-sync/0.1/git-sync.yaml"], &task); err != nil {
		t.Fatal(err)
	}
	if task.Annotations["artifacthub.io/license"] != "Apache-2.0" || !strings.Contains(task.Annotations["artifacthub.io/maintainers"], "email: ada@example.com") {
		t.Errorf("annotations: %v", task.Annotations)
	}
	for _, bad := range []string{"artifactHub:\n  owners:\n    - name: Ada\n      email: not-an-address\n", "artifactHub:\n  category: builds\n"} {
		if _, err := config.Parse([]byte(bad), "bad.yaml"); err == nil || !strings.Contains(err.Error(), "artifactHub.") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
