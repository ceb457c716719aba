package realbuild

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tekton-multiarch/tekton-multiarch/generator/catalog"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// StorageDockerfile builds what tells buildah's storage modes apart, FROM
// the busybox base (build arg BASE): files many and small, then one of
// bigMiB, then copy-ups of both in a later RUN (appends, a chmod), and files
// deleted (a whiteout in /bin, a directory of the base copied up). Not an
// opaque directory: OpaqueDockerfile says why.
func StorageDockerfile(smallFiles, bigMiB int) string {
	return fmt.Sprintf(`ARG BASE
FROM ${BASE}
RUN mkdir -p /data/small && cd /data/small && i=0 && while [ $i -lt %[1]d ]; do echo "file $i" >f$i; i=$((i+1)); done
RUN dd if=/dev/zero of=/data/big bs=1M count=%[2]d 2>/dev/null
RUN for f in /data/small/f1*; do echo more >>"$f"; done && echo tail >>/data/big && chmod 600 /data/small/f2
RUN rm -f /bin/vi /data/small/f3*
`, smallFiles, bigMiB)
}

// SharedWhiteoutsDockerfile deletes two files of the base in one step. The
// kernel's overlay makes every whiteout of a mount a hard link to one inode
// (shared whiteouts, Linux 5.8 and later); containers/storage's tar writer
// takes the second for a hard link of the first (Linkname = the first's
// path), and its overlay whiteout converter then makes it a regular .wh.
// file without clearing Linkname. Readers ignore a regular file's Linkname:
// the same entries, other header bytes, another digest. fuse-overlayfs and
// vfs diff trees and write each whiteout on its own. Any layer that deletes
// two or more files of lower layers shows it: in the benchmarks,
// BenchIODockerfile with a layer per step (its last step deletes files an
// earlier layer made).
const SharedWhiteoutsDockerfile = `ARG BASE
FROM ${BASE}
RUN rm /bin/less /bin/vi
`

// OpaqueDockerfile deletes a directory of the base (its empty /root) and
// makes it again. The kernel's overlay marks such a directory opaque, and
// buildah's diff of it writes the marker (root/.wh..wh..opq) into the layer;
// fuse-overlayfs and vfs compare trees and write only root/made-again. The
// same files, another digest: the one place the storage mode shows.
const OpaqueDockerfile = `ARG BASE
FROM ${BASE}
RUN rm -rf /root && mkdir /root && echo new >/root/made-again
`

// Benchmark Dockerfiles, for comparing the storage modes on the cluster
// test's real node (its BenchmarkStorageModes), FROM the busybox base
// (build arg BASE).
var (
	// BenchIODockerfile is small-files and copy-up heavy: 3,000 small files,
	// a 200 MiB file, then copy-ups of both and deletions.
	BenchIODockerfile = StorageDockerfile(3000, 200)
	// BenchCPUDockerfile spends its time hashing in RUN steps and writes
	// almost nothing: 2 x 1 GiB of zeros through sha256sum and md5sum.
	BenchCPUDockerfile = `ARG BASE
FROM ${BASE}
RUN dd if=/dev/zero bs=1M count=1024 2>/dev/null | sha256sum >/sha256
RUN dd if=/dev/zero bs=1M count=1024 2>/dev/null | md5sum >/md5
`
)

// BenchBigBaseDockerfile builds small things FROM a big base (PushBigBase: a
// distribution-sized tree), as most real builds do: 1,000 new small files,
// and copy-ups of 1,111 of the base's small files (f1*). vfs copies the whole base
// to make the build container; the overlays copy up what changes.
const BenchBigBaseDockerfile = `ARG BASE
FROM ${BASE}
RUN mkdir -p /app && cd /app && i=0 && while [ $i -lt 1000 ]; do echo "file $i" >f$i; i=$((i+1)); done
RUN for f in /opt/small/f1*; do echo more >>"$f"; done
`

// PushBigBase makes a distribution-sized base FROM base (the busybox base):
// /opt/big (256 MiB) and /opt/small (4,000 small files), and pushes it to
// ref, on any plain-HTTP registry (behind SkopeoPrefix, as
// PushBusyboxBase).
func PushBigBase(tb testing.TB, base, ref string) {
	tb.Helper()
	dir := tb.TempDir()
	tree := filepath.Join(dir, "opt")
	if err := os.MkdirAll(filepath.Join(tree, "small"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < 4000; i++ {
		if err := os.WriteFile(filepath.Join(tree, "small", fmt.Sprintf("f%d", i)), []byte(fmt.Sprintf("base file %d\n", i)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	// Real blocks, not a sparse file: the copies must cost what they cost.
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(tree, "big"), "bs=1M", "count=256").CombinedOutput(); err != nil {
		tb.Fatalf("dd: %v\n%s", err, out)
	}
	bah := scratchBuildah(tb, dir)
	ctr := bah("from", "--quiet", "--tls-verify=false", base)
	bah("copy", ctr, tree, "/opt")
	bah("commit", "--quiet", "--rm", ctr, "localhost/big-base")
	bah("push", "--quiet", "--tls-verify=false", "localhost/big-base", "docker://"+ref)
}

// GitRepo makes a repository of files (path -> content) in one commit on
// main, serves it from the World's git daemon under name.git, and returns
// its URL.
func (w *World) GitRepo(tb testing.TB, name string, files map[string]string) string {
	tb.Helper()
	MakeGitRepo(tb, w.gitBase, name, files)
	url := w.Git.URL(name + ".git")
	w.Git.WaitReady(tb, url)
	return url
}

// MakeGitRepo makes a repository of files (path -> content) in one commit
// on main, as the bare repository base/name.git, for a git daemon serving
// base (its work tree goes beside base, as name-src), and returns the commit.
func MakeGitRepo(tb testing.TB, base, name string, files map[string]string) string {
	tb.Helper()
	src := filepath.Join(filepath.Dir(base), name+"-src")
	for p, content := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	git := func(args ...string) string { return FixtureGit(tb, src, filepath.Dir(base), args...) }
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", name)
	if out, err := exec.Command("git", "clone", "-q", "--bare", src, filepath.Join(base, name+".git")).CombinedOutput(); err != nil {
		tb.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	return git("rev-parse", "HEAD")
}

// FixtureGit runs git in dir as the fixtures' author, with no system
// configuration and home as HOME (so no user's either), and returns its
// trimmed output; a failure fails tb.
func FixtureGit(tb testing.TB, dir, home string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=fixture", "GIT_AUTHOR_EMAIL=fixture@example.com",
		"GIT_COMMITTER_NAME=fixture", "GIT_COMMITTER_EMAIL=fixture@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+home)
	b, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return strings.TrimSpace(string(b))
}

// GenerateCatalog generates the catalog of a configuration (YAML on top of
// the default, as a user's file) into a temporary directory and loads it.
func GenerateCatalog(tb testing.TB, configYAML string) *Catalog {
	tb.Helper()
	cfg, err := config.Parse([]byte(configYAML), "test configuration")
	if err != nil {
		tb.Fatal(err)
	}
	files, err := catalog.Generate(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	for p, b := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	c, err := LoadCatalog(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BuildahVersion is the host buildah's major and minor version.
func BuildahVersion(tb testing.TB) (string, int, int) {
	tb.Helper()
	out, err := exec.Command("buildah", "--version").Output()
	if err != nil {
		tb.Fatal(err)
	}
	v := strings.Fields(strings.TrimPrefix(string(out), "buildah version "))[0]
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		tb.Fatalf("buildah version %q: %v", v, err)
	}
	return v, major, minor
}

// LayerHeaders reads the tar headers of an image's last layer, from the
// registry, each name without a leading "./".
func LayerHeaders(ctx context.Context, ref, tmp string) ([]*tar.Header, error) {
	dir, layers, err := copyImage(ctx, ref, tmp)
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("manifest of %s: no layers", ref)
	}
	f, err := os.Open(filepath.Join(dir, strings.TrimPrefix(layers[len(layers)-1], "sha256:")))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	var hs []*tar.Header
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs, nil
		}
		if err != nil {
			return nil, err
		}
		h.Name = strings.TrimPrefix(h.Name, "./")
		hs = append(hs, h)
	}
}
