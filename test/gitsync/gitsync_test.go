package gitsync

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The stand-in must refuse what git-sync v4 would refuse, and what a Task
// step must not pass, or the clone step's args would go unchecked.
func TestFlags(t *testing.T) {
	base := []string{"--repo=git://127.0.0.1:1/r", "--root=/tmp/x", "--one-time"}
	for _, c := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"minimal", base, ""},
		{"separate values", []string{"--repo", "git://127.0.0.1:1/r", "--root", "/tmp/x", "--one-time", "--depth", "1", "--ref", "main"}, ""},
		{"unknown flag", append(base, "--frobnicate=1"), "unknown flag: --frobnicate"},
		{"v3 flag", append(base, "--branch=main"), "--branch is a deprecated git-sync v3 flag: use --ref"},
		{"v3 dest", append(base, "--dest=checkout"), "--dest is a deprecated git-sync v3 flag: use --link"},
		{"not implemented", append(base, "--period=10s"), "--period is a git-sync v4 flag this stand-in does not implement"},
		{"no one-time", base[:2], "--one-time is required"},
		{"no repo", base[1:], "required flag: --repo"},
		{"relative root", []string{"--repo=x", "--root=rel", "--one-time"}, "--root \"rel\" must be absolute"},
		{"bad depth", append(base, "--depth=deep"), "invalid argument \"deep\" for --depth"},
		{"bad bool", append(base, "--ssh-known-hosts=maybe"), "invalid argument \"maybe\" for --ssh-known-hosts"},
		{"username alone", append(base, "--username=u"), "--username requires --password or --password-file"},
		{"missing key file", append(base, "--ssh-key-file=/nonexistent/key"), "--ssh-key-file: stat /nonexistent/key"},
		{"positional", append(base, "main"), "unexpected argument \"main\""},
		{"twice", append(base, "--ref=a", "--ref=b"), "--ref given twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseArgs(c.args)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// One sync from a local repository, by branch, tag and full SHA: git-sync v4's
// layout, <root>/.git, <root>/.worktrees/<sha> and <root>/<link> -> .worktrees/<sha>.
func TestSync(t *testing.T) {
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", ".")
	if err := os.WriteFile(filepath.Join(repo, "a.txt"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "a.txt")
	git("commit", "-q", "-m", "a")
	git("tag", "-a", "-m", "v1", "v1")
	sha := git("rev-parse", "HEAD")

	for _, ref := range []string{"main", "v1", sha} {
		t.Run(ref[:min(len(ref), 8)], func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "src")
			var out, errb strings.Builder
			rc := Main([]string{"--repo=file://" + repo, "--ref=" + ref, "--root=" + root, "--link=checkout", "--one-time", "--depth=1"}, &out, &errb)
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, errb.String())
			}
			if target, err := os.Readlink(filepath.Join(root, "checkout")); err != nil || target != filepath.Join(".worktrees", sha) {
				t.Fatalf("link: %q, %v; want .worktrees/%s", target, err, sha)
			}
			if b, err := os.ReadFile(filepath.Join(root, ".worktrees", sha, "a.txt")); err != nil || string(b) != "a\n" {
				t.Fatalf("a.txt: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
				t.Fatal(err)
			}
		})
	}
	var errb strings.Builder
	if rc := Main([]string{"--repo=file://" + repo, "--ref=nope", "--root=" + t.TempDir(), "--one-time"}, io.Discard, &errb); rc != 1 || !strings.Contains(errb.String(), `remote ref \"nope\" not found`) {
		t.Fatalf("unknown ref: exit %d, %s", rc, errb.String())
	}
}
