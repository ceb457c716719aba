package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestYAMLDropsNoiseKeepsMeaning(t *testing.T) {
	type param struct {
		Name        string   `json:"name"`
		Description string   `json:"description"`
		Default     *string  `json:"default,omitempty"`
		List        []string `json:"list"`
	}
	type obj struct {
		Kind       string            `json:"kind"`
		APIVersion string            `json:"apiVersion"`
		Meta       map[string]any    `json:"metadata"`
		Params     []param           `json:"params"`
		Status     struct{}          `json:"status"`
		Resources  map[string]string `json:"computeResources"`
		Script     string            `json:"script"`
	}
	empty := ""
	got, err := YAML(obj{
		Kind: "Task", APIVersion: "tekton.dev/v1",
		Meta:   map[string]any{"name": "t", "creationTimestamp": nil},
		Params: []param{{Name: "A", Default: &empty, List: []string{}}, {Name: "B", List: []string{""}}},
		Script: "#!/bin/sh\necho hi\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: t
params:
  - name: A
    default: ""
    list: []
  - name: B
    list:
      - ""
script: |
  #!/bin/sh
  echo hi
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("YAML (-want +got):\n%s", diff)
	}
}

func TestWriteIsAllOrNothingAndRemovesStale(t *testing.T) {
	root := t.TempDir()
	owned := Owned{"tasks", "examples"}
	if err := Write(root, Files{"tasks/a/1.yaml": []byte("a1"), "tasks/b/1.yaml": []byte("b1")}, owned); err != nil {
		t.Fatal(err)
	}
	// b disappears from the set: its file and now-empty directory go.
	if err := Write(root, Files{"tasks/a/1.yaml": []byte("a2"), "examples/x.yaml": []byte("x")}, owned); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "tasks/a/1.yaml")); string(b) != "a2" {
		t.Errorf("tasks/a/1.yaml = %q, want a2", b)
	}
	if _, err := os.Stat(filepath.Join(root, "tasks/b")); !os.IsNotExist(err) {
		t.Errorf("stale tasks/b still there: %v", err)
	}
	// A file outside the owned directories is refused before anything is written.
	err := Write(root, Files{"tasks/a/1.yaml": []byte("a3"), "README.md": []byte("no")}, owned)
	if err == nil || !strings.Contains(err.Error(), "outside the generated directories") {
		t.Fatalf("Write outside owned = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "tasks/a/1.yaml")); string(b) != "a2" {
		t.Errorf("a refused Write changed tasks/a/1.yaml to %q", b)
	}
	// A failing write (a directory where a file must go) leaves old content and no temp files.
	if err := os.MkdirAll(filepath.Join(root, "examples/dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(root, Files{"tasks/a/1.yaml": []byte("a4"), "examples/dir.yaml": []byte("d")}, owned); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "tasks/a/1.yaml")); string(b) != "a2" && string(b) != "a4" {
		t.Errorf("tasks/a/1.yaml = %q", b)
	}
	filepath.WalkDir(root, func(p string, _ os.DirEntry, _ error) error {
		if strings.Contains(filepath.Base(p), ".tmp") {
			t.Errorf("temp file left behind: %s", p)
		}
		return nil
	})
}

func TestCheck(t *testing.T) {
	root := t.TempDir()
	owned := Owned{"tasks"}
	files := Files{"tasks/a.yaml": []byte("one\ntwo\n")}
	if err := Write(root, files, owned); err != nil {
		t.Fatal(err)
	}
	if diff, err := Check(root, files, owned); err != nil || diff != "" {
		t.Fatalf("fresh tree: diff %q, err %v", diff, err)
	}
	os.WriteFile(filepath.Join(root, "tasks/a.yaml"), []byte("one\nTWO\n"), 0o644)
	os.WriteFile(filepath.Join(root, "tasks/old.yaml"), []byte("x"), 0o644)
	diff, err := Check(root, Files{"tasks/a.yaml": files["tasks/a.yaml"], "tasks/new.yaml": []byte("n")}, owned)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stale: tasks/a.yaml", "TWO", "missing: tasks/new.yaml", "extra: tasks/old.yaml"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
}
