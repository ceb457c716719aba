// Command treecheck fails when the repository holds what it must not: a
// compiled binary, a file over the size limit, or a top-level entry the
// design does not name. make lint runs it, so CI does.
//
//	go run ./test/treecheck [DIR]     # DIR defaults to the current directory
//
// It checks the files git tracks plus the untracked ones git does not
// ignore: what the next `git add -A` would commit is caught before it is.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// topLevel is the design's top level, the one place it is written down.
// Anything else at the top of the tree fails the check.
var topLevel = map[string]bool{
	"generator": true, "tasks": true, "pipelines": true, "examples": true, "test": true,
	"go.mod": true, "go.sum": true, "Makefile": true, "README.md": true,
	// Repository plumbing, not product.
	".ci": true, ".gitignore": true, ".gitattributes": true, ".github": true, "LICENSE": true,
}

// maxSize is generous for source, YAML and golden files (the largest today
// is go.sum, about 43 KB) and far below any binary or image archive.
const maxSize = 512 << 10

// magics are the first bytes of compiled or archived binaries.
var magics = []struct {
	kind  string
	magic []byte
}{
	{"an ELF binary", []byte("\x7fELF")},
	{"a Mach-O binary", []byte{0xcf, 0xfa, 0xed, 0xfe}},
	{"a Mach-O binary", []byte{0xce, 0xfa, 0xed, 0xfe}},
	{"a Mach-O universal binary", []byte{0xca, 0xfe, 0xba, 0xbe}},
	{"a Windows PE binary", []byte("MZ")},
	{"a WebAssembly module", []byte("\x00asm")},
	{"a static library (ar archive)", []byte("!<arch>\n")},
	{"a gzip archive", []byte{0x1f, 0x8b}},
	{"a zip archive", []byte("PK\x03\x04")},
}

// problem is one thing wrong with one path.
type problem struct{ path, why string }

func (p problem) String() string { return p.path + ": " + p.why }

// files lists what git tracks under dir plus untracked files it does not
// ignore, relative to dir.
func files(dir string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s: %v: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	var list []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			list = append(list, f)
		}
	}
	return list, nil
}

// check returns every problem in the tree at dir, sorted by path.
func check(dir string) ([]problem, error) {
	list, err := files(dir)
	if err != nil {
		return nil, err
	}
	var problems []problem
	seenTop := map[string]bool{}
	for _, f := range list {
		top, _, _ := strings.Cut(f, "/")
		if !topLevel[top] && !seenTop[top] {
			seenTop[top] = true
			problems = append(problems, problem{top, "not part of the design's top level (generator, tasks, pipelines, examples, test, go.mod, go.sum, Makefile, README.md, .ci, .gitignore): move it under one of them, or add it to topLevel in test/treecheck/treecheck.go if the design changed"})
		}
		p, err := checkFile(filepath.Join(dir, f))
		if err != nil {
			if os.IsNotExist(err) { // tracked but deleted in the work tree
				continue
			}
			return nil, err
		}
		if p != "" {
			problems = append(problems, problem{f, p})
		}
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].path < problems[j].path })
	return problems, nil
}

// checkFile says what is wrong with one file, or "".
func checkFile(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 8)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", err
	}
	head = head[:n]
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			return fmt.Sprintf("%s (%d bytes): build outputs do not belong in the repository; git rm --cached it and ignore it in .gitignore", m.kind, fi.Size()), nil
		}
	}
	if fi.Size() > maxSize {
		return fmt.Sprintf("%d bytes, over the %d-byte limit: generate it at test time or keep it outside the repository", fi.Size(), maxSize), nil
	}
	return "", nil
}

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	problems, err := check(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "treecheck:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "treecheck:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
