package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-cmp/cmp"
)

// Files is a generated tree: slash-separated relative path -> content.
type Files map[string][]byte

// Paths returns the paths in order.
func (f Files) Paths() []string {
	ps := make([]string, 0, len(f))
	for p := range f {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// Owned says which files on disk the generator owns: everything under the
// given directories. A file there that the new set lacks is stale: Write
// removes it and Check reports it.
type Owned []string

func (o Owned) owns(rel string) bool {
	for _, d := range o {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

// existing lists the files under root that o owns.
func (o Owned) existing(root string) ([]string, error) {
	var found []string
	for _, d := range o {
		err := filepath.WalkDir(filepath.Join(root, filepath.FromSlash(d)), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if e.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			found = append(found, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(found)
	return found, nil
}

// Write puts files under root. Every file is first written next to its
// target and renamed over it only once all of them are written, so a failure
// leaves the old tree in place. Owned files that the set lacks are removed.
func Write(root string, files Files, owned Owned) error {
	for _, p := range files.Paths() {
		if !owned.owns(p) {
			return fmt.Errorf("render: %s is outside the generated directories %v", p, owned)
		}
	}
	stale, err := owned.existing(root)
	if err != nil {
		return err
	}
	var temps []string
	cleanup := func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}
	for _, p := range files.Paths() {
		dst := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			cleanup()
			return err
		}
		tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
		if err != nil {
			cleanup()
			return err
		}
		temps = append(temps, tmp.Name())
		_, werr := tmp.Write(files[p])
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
			cleanup()
			return err
		}
	}
	for i, p := range files.Paths() {
		if err := os.Rename(temps[i], filepath.Join(root, filepath.FromSlash(p))); err != nil {
			cleanup()
			return err
		}
	}
	for _, s := range stale {
		if _, ok := files[s]; ok {
			continue
		}
		if err := os.Remove(filepath.Join(root, filepath.FromSlash(s))); err != nil {
			return err
		}
		removeEmptyParents(root, filepath.Dir(filepath.Join(root, filepath.FromSlash(s))))
	}
	return nil
}

func removeEmptyParents(root, dir string) {
	for dir != root && strings.HasPrefix(dir, root) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// Check compares files with what is under root and returns a readable diff,
// or "" when the tree is up to date.
func Check(root string, files Files, owned Owned) (string, error) {
	var b strings.Builder
	for _, p := range files.Paths() {
		have, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(&b, "missing: %s\n", p)
			continue
		}
		if err != nil {
			return "", err
		}
		if string(have) != string(files[p]) {
			fmt.Fprintf(&b, "stale: %s (-on disk +generated):\n%s\n", p, cmp.Diff(strings.Split(string(have), "\n"), strings.Split(string(files[p]), "\n")))
		}
	}
	existing, err := owned.existing(root)
	if err != nil {
		return "", err
	}
	for _, p := range existing {
		if _, ok := files[p]; !ok {
			fmt.Fprintf(&b, "extra: %s (not generated any more; regenerate to remove it)\n", p)
		}
	}
	return b.String(), nil
}
