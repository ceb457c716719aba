package cluster

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// features pins the kernel feature set to compile against: this machine's
// kernel has no AppArmor, and without -M apparmor_parser silently drops
// mount rules, which would make every mount assertion here vacuous.
const features = "/usr/share/apparmor-features/features"

func parser(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("apparmor_parser")
	if err != nil {
		t.Fatal("apparmor_parser is not installed: apt-get install -y apparmor (.ci/run does)")
	}
	if _, err := os.Stat(features); err != nil {
		t.Fatalf("%s missing (it comes with Debian's apparmor package): %v", features, err)
	}
	return p
}

// compile compiles profile text and returns the binary policy.
func compile(t *testing.T, text string, extra ...string) ([]byte, string, error) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "profile")
	out := filepath.Join(dir, "profile.bin")
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-Q", "-K"}, extra...)
	args = append(args, "-o", out, src)
	msg, err := exec.Command(parser(t), args...).CombinedOutput()
	if err != nil {
		return nil, string(msg), err
	}
	bin, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	return bin, string(msg), nil
}

func preprocess(t *testing.T, text string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "profile")
	os.WriteFile(src, []byte(text), 0o644)
	out, err := exec.Command(parser(t), "-Q", "-K", "-M", features, "-p", src).Output()
	if err != nil {
		t.Fatalf("apparmor_parser -p: %v", err)
	}
	return string(out)
}

var denyRule = regexp.MustCompile(`(?m)^\s*(deny [^#\n]*,)`)

func TestProfileCompilesAllowsMountKeepsDenials(t *testing.T) {
	ours, err := Profile("containerized-buildah")
	if err != nil {
		t.Fatal(err)
	}
	oursBin, msg, err := compile(t, ours, "-M", features)
	if err != nil {
		t.Fatalf("the build profile does not compile: %v\n%s", err, msg)
	}
	defaultBin, msg, err := compile(t, ContainerDefaultProfile(), "-M", features)
	if err != nil {
		t.Fatalf("the engines' default profile does not compile: %v\n%s", err, msg)
	}

	// Rule level: mount allowed, no deny mount, every other denial of the
	// default still there (after includes are expanded).
	pre := preprocess(t, ours)
	if !regexp.MustCompile(`(?m)^\s*mount,`).MatchString(pre) || regexp.MustCompile(`(?m)^\s*deny mount`).MatchString(pre) {
		t.Errorf("preprocessed profile does not allow mount:\n%s", pre)
	}
	defaultDenials := denyRule.FindAllStringSubmatch(ContainerDefaultProfile(), -1)
	if len(defaultDenials) < 10 {
		t.Fatalf("found only %d deny rules in the default profile", len(defaultDenials))
	}
	for _, d := range defaultDenials {
		if d[1] == "deny mount," {
			continue
		}
		if !strings.Contains(pre, d[1]) {
			t.Errorf("the build profile lost the default's %q", d[1])
		}
	}

	// Compiled level: the mount rule is in the binary policy. Removing it
	// changes the policy, and so does the default's deny mount.
	withoutMount := strings.Replace(ours, "\n  mount,\n", "\n", 1)
	if withoutMount == ours {
		t.Fatal("could not find the mount rule to remove")
	}
	noMountBin, msg, err := compile(t, withoutMount, "-M", features)
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	if bytes.Equal(oursBin, noMountBin) {
		t.Error("the compiled policy is the same with and without `mount,`: the rule was dropped")
	}
	if bytes.Equal(oursBin, defaultBin) {
		t.Error("the compiled build profile equals the default's")
	}
	// The reason -M is always passed: without it the mount rule vanishes.
	a, _, err1 := compile(t, ours)
	b, _, err2 := compile(t, withoutMount)
	if err1 == nil && err2 == nil && !bytes.Equal(a, b) {
		t.Log("note: this parser kept mount rules even without -M")
	}

	// The profile loads under the configured name.
	names, err := exec.Command(parser(t), "-Q", "-K", "-M", features, "-N", writeTemp(t, ours)).Output()
	if err != nil || strings.TrimSpace(string(names)) != "containerized-buildah" {
		t.Errorf("profile names = %q (%v), want containerized-buildah", names, err)
	}
}

func TestBrokenProfileIsRejected(t *testing.T) {
	ours, err := Profile("containerized-buildah")
	if err != nil {
		t.Fatal(err)
	}
	for name, broken := range map[string]string{
		"bad rule":        strings.Replace(ours, "  mount,\n", "  mount with nonsense\n", 1),
		"unclosed brace":  strings.TrimSuffix(strings.TrimSpace(ours), "}"),
		"unknown include": strings.Replace(ours, "#include <abstractions/base>", "#include <abstractions/no-such-file>", 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, msg, err := compile(t, broken, "-M", features)
			if err == nil {
				t.Fatal("apparmor_parser accepted a broken profile")
			}
			if !strings.Contains(msg, "AppArmor parser error") && !strings.Contains(msg, "Could not open") {
				t.Errorf("unexpected message: %s", msg)
			}
		})
	}
}

func TestProfileRefusesAnUnexpectedBase(t *testing.T) {
	saved := containerDefault
	defer func() { containerDefault = saved }()
	containerDefault = strings.Replace(saved, "  deny mount,\n", "", 1)
	if _, err := Profile("x"); err == nil || !strings.Contains(err.Error(), "changed shape") {
		t.Errorf("Profile on a base without deny mount: %v", err)
	}
}

func writeTemp(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "profile")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The loader writes local/<profile>: a comment everywhere, `userns,` only
// where the node's parser is 4 or newer. This parser (3.x, as on Debian 12
// and Ubuntu 22.04 nodes) shows why the guard matters.
func TestLocalInclude(t *testing.T) {
	const name = "containerized-buildah"
	ours, err := Profile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ours, "include if exists <local/"+name+">") {
		t.Fatal("the profile does not include its node-local file")
	}
	version, _ := exec.Command(parser(t), "--version").Output()
	for _, tc := range []struct {
		local string
		ok    bool
	}{
		{"# Written by the tekton-multiarch apparmor-loader; rewritten on every load.\n", true},
		{"# Written by the tekton-multiarch apparmor-loader; rewritten on every load.\nuserns,\n", !strings.Contains(string(version), "version 3.")},
	} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "local"), 0o755)
		os.WriteFile(filepath.Join(dir, "local", name), []byte(tc.local), 0o644)
		_, msg, err := compile(t, ours, "-M", features, "-I", dir)
		if (err == nil) != tc.ok {
			t.Errorf("local file %q: compiled=%v, want %v (%s)", tc.local, err == nil, tc.ok, msg)
		}
	}
}
