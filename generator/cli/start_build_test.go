package cli

import (
	"strings"
	"testing"
)

// buildOptionArgs are every build flag, for the golden dry runs
// (TestStartDryRun): the first four are params only.
var buildOptionArgs = []string{"--dry-run", "--no-push", "--target", "runtime",
	"--label", "org.opencontainers.image.vendor=Example, Inc.", "--label", "team=builds",
	"--annotation", "org.opencontainers.image.description=Hello, on every arch",
	"--ca-bundle", "configmap:corp-ca", "--build-secret", "npm-token"}

// Bad build flags are refused before any API call, naming the flag.
func TestStartRefusesBadBuildOptions(t *testing.T) {
	ok := []string{"start", "--git-url", "https://github.com/me/app.git", "--image", "registry.example.com/me/app:v1", "--kubeconfig", "/nonexistent"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"target with a space", []string{"--target", "my stage"}, `--target: "my stage" is not a stage name`},
		{"target starting with a digit", []string{"--target", "2nd"}, `--target: "2nd" is not a stage name`},
		{"label without =", []string{"--label", "vendor"}, `--label: "vendor" is not KEY=VALUE`},
		{"label without key", []string{"--label", "=x"}, `--label: "=x" is not KEY=VALUE`},
		{"label key with a space", []string{"--label", "my key=x"}, `--label: key "my key" holds a space`},
		{"label value with a newline", []string{"--label", "k=a\nb"}, "--label: the value of k holds a line break"},
		{"label twice", []string{"--label", "k=a", "--label", "k=b"}, "--label: k is given twice"},
		{"annotation without =", []string{"--annotation", "x"}, `--annotation: "x" is not KEY=VALUE`},
		{"ca-bundle without kind", []string{"--ca-bundle", "corp-ca"}, `--ca-bundle: "corp-ca" is not configmap:NAME or secret:NAME`},
		{"ca-bundle of another kind", []string{"--ca-bundle", "volume:corp-ca"}, `--ca-bundle: "volume:corp-ca" is not configmap:NAME or secret:NAME`},
		{"ca-bundle with a bad name", []string{"--ca-bundle", "secret:Corp_CA"}, `--ca-bundle: "secret:Corp_CA": the name is not a Kubernetes object name`},
		{"ca-bundle with no name", []string{"--ca-bundle", "configmap:"}, `--ca-bundle: "configmap:": the name is empty`},
		{"ca-bundle as a secret with a bad name", []string{"--ca-bundle", "secret:-ca"}, `--ca-bundle: "secret:-ca": the name is not a Kubernetes object name`},
		{"build-secret with a bad name", []string{"--build-secret", "NPM token"}, `--build-secret: "NPM token" is not a Kubernetes object name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(append(append([]string{}, ok...), tc.args...)...)
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
