package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestGenerateThenCheck(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run("generate", "--out", out)
	if code != ExitOK {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "wrote 36 files") {
		t.Errorf("stdout = %q", stdout)
	}
	for _, p := range []string{
		"tasks/git-sync/0.1/git-sync.yaml", "tasks/buildah-build/0.1/buildah-build.yaml",
		"tasks/buildah-manifest/0.1/buildah-manifest.yaml", "pipelines/multiarch-build/0.1/multiarch-build.yaml",
		"tasks/buildah-build/0.1/README.md", "tasks/buildah-build/0.1/samples/taskrun.yaml.sample", "examples/pipelinerun.yaml",
		"examples/cluster/apparmor/containerized-buildah", "examples/cluster/README.md",
		"examples/cluster/seccomp/buildah.json", "examples/cluster/node-profiles/node-profile-loader.yaml",
		"examples/cluster/arch-pinning.yaml", "examples/cluster/node-loss.yaml", "pipelines/multiarch-build-matrix/0.1/multiarch-build-matrix.yaml",
		"tasks/artifacthub-repo.yml", "pipelines/artifacthub-repo.yml",
	} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	// The default storage (auto) needs no /dev/fuse: no fuse device plugin.
	if _, err := os.Stat(filepath.Join(out, "examples/cluster/fuse-device-plugin.yaml")); !os.IsNotExist(err) {
		t.Errorf("examples/cluster/fuse-device-plugin.yaml with the default storage: %v, want no such file", err)
	}
	if code, stdout, _ := run("generate", "--check", "--out", out); code != ExitOK || !strings.Contains(stdout, "up to date") {
		t.Errorf("check of a fresh tree: exit %d, %q", code, stdout)
	}

	// A hand edit makes the tree stale: exit 1 and a diff naming the file and line.
	p := filepath.Join(out, "tasks/buildah-build/0.1/buildah-build.yaml")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(b, []byte("default: ./Dockerfile"), []byte("default: ./Containerfile"), 1), 0o644)
	code, stdout, stderr = run("generate", "--check", "--out", out)
	if code != ExitFailed {
		t.Errorf("check of a stale tree: exit %d, want %d", code, ExitFailed)
	}
	if !strings.Contains(stdout, "stale: tasks/buildah-build/0.1/buildah-build.yaml") || !strings.Contains(stdout, "Containerfile") {
		t.Errorf("diff does not show the edit:\n%s", stdout)
	}
	if !strings.Contains(stderr, "make generate") {
		t.Errorf("stderr does not say how to fix: %q", stderr)
	}
	after, _ := os.ReadFile(p)
	if !bytes.Contains(after, []byte("Containerfile")) {
		t.Error("--check rewrote the file")
	}
}

func TestConfigPrintsTheDefault(t *testing.T) {
	code, stdout, _ := run("config")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	c, err := config.Parse([]byte(stdout), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Architectures) != 2 || !strings.Contains(stdout, "# ") {
		t.Errorf("config output is not the commented default:\n%s", stdout)
	}
}

// Bad configurations exit 2, name the field and the fix, and write nothing.
func TestBadConfigWritesNothing(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown arch", "architectures: [{name: amd64}, {name: mips}]", "architectures[1].name: \"mips\" is not a known architecture"},
		{"duplicate arch", "architectures: [{name: arm64}, {name: arm64}]", "architectures[1]: duplicate of architectures[0]"},
		{"empty image", "images: {gitSync: \"\"}", "images.gitSync: empty"},
		{"bad resource", "build: {fuseResource: \"/dev/fuse\"}", "build.fuseResource:"},
		{"bad version", "catalog: {version: latest}", "catalog.version: \"latest\" is not a catalog version"},
		{"unknown field", "apparmor: {profil: x}", "apparmor.profil: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "my.yaml")
			os.WriteFile(cfg, []byte(tc.yaml), 0o644)
			out := filepath.Join(dir, "out")
			code, stdout, stderr := run("generate", "--config", cfg, "--out", out)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, cfg) {
				t.Errorf("stderr lacks %q or the file name:\n%s", tc.want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("something was written under %s", out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"generate", "--nope"},
		{"generate", "extra-arg"},
		{"generate", "--config", "/does/not/exist.yaml"},
	} {
		code, _, stderr := run(args...)
		if code != ExitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}
