package cli

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

var update = flag.Bool("update", false, "rewrite the start --dry-run golden files")

// Bad input is refused before any API call (there is no cluster here: a
// call would fail differently), naming the flag.
func TestStartRefusesBadInput(t *testing.T) {
	ok := []string{"start", "--git-url", "https://github.com/me/app.git", "--image", "registry.example.com/me/app:v1", "--kubeconfig", "/nonexistent"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"empty git url", []string{"start", "--git-url", "", "--image", "registry.example.com/me/app:v1"}, "--git-url: empty"},
		{"no git url", []string{"start", "--image", "registry.example.com/me/app:v1"}, "--git-url: empty"},
		{"not a git url", []string{"start", "--git-url", "github.com me/app", "--image", "registry.example.com/me/app:v1"}, "--git-url: \"github.com me/app\" is not a git URL"},
		{"unknown arch", append(ok, "--arch", "amd64,mips"), "--arch: \"mips\" is not an architecture of this catalog; it builds amd64, arm64"},
		{"uname arch", append(ok, "--arch", "x86_64,arm64"), "--arch: \"x86_64\" is not an architecture"},
		{"duplicate arch", append(ok, "--arch", "arm64,linux/arm64"), "--arch: \"linux/arm64\" is listed twice"},
		{"subset of arches", append(ok, "--arch", "arm64"), "--arch: the Pipeline builds amd64, arm64 and a run cannot skip one"},
		{"image without tag", []string{"start", "--git-url", "https://github.com/me/app.git", "--image", "registry.example.com/me/app"}, "--image: \"registry.example.com/me/app\" is not an image reference with a tag"},
		{"image by digest", []string{"start", "--git-url", "https://github.com/me/app.git", "--image", "registry.example.com/me/app@sha256:" + strings.Repeat("a", 64)}, "--image: \"registry.example.com/me/app@sha256:"},
		{"malformed image", []string{"start", "--git-url", "https://github.com/me/app.git", "--image", "Registry Example/app:v1"}, "--image:"},
		{"unknown pipeline", append(ok, "--pipeline", "multiarch-build-matrx"), "--pipeline: \"multiarch-build-matrx\" is not a Pipeline of this catalog"},
		{"ref with a space", append(ok, "--ref", "my branch"), "--ref: \"my branch\" is not a valid git ref"},
		{"bad namespace", append(ok, "--namespace", "Builds_NS"), "--namespace: \"Builds_NS\""},
		{"output without dry-run", append(ok, "-o", "yaml"), "--output: prints the PipelineRun instead of creating it, so it needs --dry-run"},
		{"bad output", append(ok, "--dry-run", "-o", "xml"), "--output: \"xml\" is not a format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(tc.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q lacks %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}

// --dry-run prints the PipelineRun without a cluster; golden, and it passes
// Tekton's validation.
func TestStartDryRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"start-dry-run.yaml", []string{"--dry-run"}},
		{"start-dry-run.json", []string{"--dry-run", "-o", "json"}},
		{"start-dry-run-matrix-arm64.yaml", []string{"--dry-run", "--pipeline", "multiarch-build-matrix", "--arch", "arm64"}},
		{"start-dry-run-flags.yaml", []string{"--dry-run", "--ref", "v1.2.3", "--arch", "linux/arm64,amd64", "-n", "ci", "--service-account", "ci-builder", "--registry-secret", "ci-registry"}},
		{"start-dry-run-build-options.yaml", buildOptionArgs},
		{"start-dry-run-build-options-matrix.yaml", append([]string{"--pipeline", "multiarch-build-matrix", "--arch", "arm64"}, buildOptionArgs[:4]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"start", "--git-url", "https://github.com/me/app.git", "--image", "registry.example.com/me/app:v1", "--kubeconfig", "/nonexistent"}, tc.args...)
			code, stdout, stderr := run(args...)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			golden := filepath.Join("testdata", tc.name)
			if *update {
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(stdout, "\n")); diff != "" {
				t.Errorf("%s (-want +got; -update to accept):\n%s", golden, diff)
			}
			// JSON is YAML too: one decoder serves both outputs.
			o, err := validate.Decode(tc.name, []byte(stdout))
			if err != nil {
				t.Fatal(err)
			}
			if len(o.PipelineRuns) != 1 {
				t.Fatalf("%d PipelineRuns printed", len(o.PipelineRuns))
			}
			if err := validate.Check(o); err != nil {
				t.Error(err)
			}
		})
	}
}
