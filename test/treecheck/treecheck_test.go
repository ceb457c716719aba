package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The check passes on this repository as it stands.
func TestRepositoryIsClean(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := check(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s", p)
	}
}

// A planted file of each kind fails the check, naming the file.
func TestPlanted(t *testing.T) {
	self, err := os.Executable() // a real compiled binary: this test's own
	if err != nil {
		t.Fatal(err)
	}
	binary, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		path  string
		data  []byte
		track bool     // git add it; otherwise left untracked (and not ignored)
		want  []string // each problem, by its start
	}{
		{"tracked binary at the top", "warm", binary, true, []string{"warm: not part of the design's top level", "warm: an ELF binary"}},
		{"untracked binary deep down", "generator/cli/cli", binary, false, []string{"generator/cli/cli: an ELF binary"}},
		{"binary with a text name", "test/fixture.txt", binary, true, []string{"test/fixture.txt: an ELF binary"}},
		{"unknown top-level file", "notes.txt", []byte("hello\n"), true, []string{"notes.txt: not part of the design's top level"}},
		{"unknown top-level directory", "scripts/run.sh", []byte("#!/bin/sh\n"), false, []string{"scripts: not part of the design's top level"}},
		{"too large", "examples/big.yaml", []byte(strings.Repeat("a: b\n", maxSize/5+1)), true, []string{"examples/big.yaml: 524290 bytes, over the 524288-byte limit"}},
		{"gzip archive", "test/data.tgz", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}, true, []string{"test/data.tgz: a gzip archive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := cleanRepo(t)
			if got := mustCheck(t, dir); len(got) != 0 {
				t.Fatalf("clean tree: problems %v", got)
			}
			path := filepath.Join(dir, tc.path)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.track {
				git(t, dir, "add", tc.path)
			}
			got := mustCheck(t, dir)
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i].String(), tc.want[i])
			}
			if !ok {
				t.Fatalf("problems = %q, want them to start %q", got, tc.want)
			}
		})
	}
}

// An ignored build output is not the repository's: the check lets it be.
func TestIgnoredOutputPasses(t *testing.T) {
	dir := cleanRepo(t)
	if err := os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("/warm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "warm"), []byte("\x7fELF\x02\x01\x01"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := mustCheck(t, dir); len(got) != 0 {
		t.Fatalf("problems = %v, want none", got)
	}
}

func mustCheck(t *testing.T, dir string) []problem {
	t.Helper()
	got, err := check(dir)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// cleanRepo is a git repository with the design's layout and nothing else.
func cleanRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	for _, f := range []string{"go.mod", "README.md", "Makefile", "generator/main.go", "tasks/a/0.1/a.yaml", "test/README.md"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, "add", ".")
	return dir
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}
