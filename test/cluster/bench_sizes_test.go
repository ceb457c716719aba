package cluster

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

var (
	sizeList   = flag.String("sizes", "10,200,1000", "BenchmarkSizes: the build contexts' (and so the images' added layer's) sizes, in MB")
	sizeRounds = flag.Int("size-rounds", 1, "BenchmarkSizes: builds of each size by the TaskRun and by the raw build")
)

// sizesDockerfile copies the whole context into the image: the context's
// size is the layer's.
const sizesDockerfile = "ARG BASE\nFROM $BASE\nCOPY data /data\n"

// BenchmarkSizes is how a build's time grows with what it moves: for each
// size (-sizes, in MB), a repository holding that many MB of random data
// (incompressible, so the push sends what the layer holds) and a
// Dockerfile that copies it into the image, built by the buildah-build
// TaskRun and by the raw unprivileged build on the real node. It prints the
// phase table of each size, then the clone, COPY, commit and push of each
// size in MB/s and the time per MB from the smallest size to the largest,
// from which a node's build time can be estimated from its disk and network.
//
//	go test -run '^$' -bench BenchmarkSizes -benchtime 1x ./test/cluster/ -sizes=10,200,1000
func BenchmarkSizes(b *testing.B) {
	sizes := parseSizes(b, *sizeList)
	s, w, bw := startBenchWorld(b, "bench-sizes")
	c := generateVariant(b, s.repo, realNodeConfig(b, s.images, "real-node-builds", ""))
	s.install(b, c)
	s.installNodeProfiles(b, c)
	raw := s.newRawBuilder(b, c)
	ref := raw.unprivileged()
	repos := map[int]string{}
	for _, mb := range sizes {
		name := fmt.Sprintf("sizes-%d", mb)
		start := time.Now()
		makeSizedRepo(b, w.gitBase, name, mb)
		repos[mb] = w.gitURL(name + ".git")
		fmt.Printf("  repository of %d MB made in %.1f s\n", mb, time.Since(start).Seconds())
	}

	const taskRun = "TaskRun"
	kinds := []string{taskRun, ref.name()}
	var columns []string
	for _, mb := range sizes {
		for _, k := range kinds {
			columns = append(columns, sizeColumn(mb, k))
		}
	}
	table := newPhaseTable(columns...)
	loadStart := loadAverage()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < *sizeRounds; round++ {
			for _, mb := range sizes {
				for j := range kinds {
					kind := kinds[(j+round)%len(kinds)]
					name := fmt.Sprintf("size%d-%s-%d-%d", mb, strings.ToLower(kind), i, round)
					// A repository of its own for each build: the registry
					// must not already hold the layer, or the push sends nothing.
					image := fmt.Sprintf("%s/bench/%s:latest", w.registry, name)
					var tl timeline
					if kind == taskRun {
						tl = s.timedBuild(b, c, w, name, map[string]string{"GIT_URL": repos[mb], "IMAGE": image}, "BASE="+bw.busybox).tl
					} else {
						tl = raw.run(b, ref, name, rawSpec{repo: repos[mb], dockerfile: "Dockerfile", image: image, platform: "linux/amd64", buildArg: "BASE=" + bw.busybox}).tl
					}
					table.add(sizeColumn(mb, kind), tl)
					fmt.Printf("  %5d MB %-10s round %d: %7.2f s, COPY %6.2f s, commit %6.2f s, push %6.2f s\n",
						mb, kind, round+1, tl.total().Seconds(), tl.sumWhere(isCopy).Seconds(), tl.sum("build: commit").Seconds(), tl.sum(pushPhases...).Seconds())
				}
			}
		}
	}
	b.StopTimer()

	fmt.Printf("\nsizes on the real node (buildah %s), %d rounds; load average %s at the start, %s at the end\n%s",
		s.images.Ref(b, "BUILDAH_VERSION"), *sizeRounds*b.N, loadStart, loadAverage(), table)
	fmt.Printf("\n  how cost grows: MB/s at each size; the last column is the time per MB from %d MB to %d MB\n", sizes[0], sizes[len(sizes)-1])
	// A row's phases (nil: the whole build); the raw build's clone is its
	// init container, the TaskRun's its clone step.
	rows := []struct {
		name  string
		phase func(string) bool
	}{
		{"clone (git-sync, depth 1)", startsWith("clone: git-sync", "pod: init container")},
		{"COPY into the layer", isCopy},
		{"commit", startsWith("build: commit")},
		{"push (gzip, upload)", startsWith(pushPhases...)},
		{"whole", nil},
	}
	fmt.Printf("    %-44s", "phase")
	for _, mb := range sizes {
		fmt.Printf(" %14s", fmt.Sprintf("%d MB", mb))
	}
	fmt.Printf(" %16s\n", "ms per MB")
	for _, r := range rows {
		for _, kind := range kinds {
			fmt.Printf("    %-44s", r.name+", "+kind)
			var first, last float64
			for k, mb := range sizes {
				d := table.mean(sizeColumn(mb, kind)).Seconds()
				if r.phase != nil {
					d = table.meanWhere(sizeColumn(mb, kind), r.phase).Seconds()
				}
				if k == 0 {
					first = d
				}
				last = d
				fmt.Printf(" %14s", fmt.Sprintf("%.1f MB/s", float64(mb)/d))
			}
			perMB := (last - first) * 1000 / float64(sizes[len(sizes)-1]-sizes[0])
			fmt.Printf(" %16.2f\n", perMB)
			if r.phase == nil {
				b.ReportMetric(perMB, "ms/MB-"+strings.ToLower(kind))
			}
		}
	}
	for _, mb := range sizes {
		tr, rw := table.mean(sizeColumn(mb, taskRun)), table.mean(sizeColumn(mb, ref.name()))
		fmt.Printf("    %d MB: TaskRun / raw-unpriv %.2fx (%.2f s / %.2f s)\n", mb, ratio(tr, rw), tr.Seconds(), rw.Seconds())
	}
}

func sizeColumn(mb int, kind string) string { return fmt.Sprintf("%d MB %s", mb, kind) }

// isCopy accepts a COPY Dockerfile step's phase.
func isCopy(name string) bool {
	return strings.HasPrefix(name, "build: STEP ") && strings.HasSuffix(name, " COPY")
}

func parseSizes(tb testing.TB, list string) []int {
	tb.Helper()
	var sizes []int
	for _, f := range strings.Split(list, ",") {
		mb, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || mb <= 0 || (len(sizes) > 0 && mb <= sizes[len(sizes)-1]) {
			tb.Fatalf("-sizes %q: want sizes in MB, rising, such as 10,200,1000", list)
		}
		sizes = append(sizes, mb)
	}
	if len(sizes) < 2 {
		tb.Fatalf("-sizes %q: want two sizes at least, to tell the time per MB", list)
	}
	return sizes
}

// makeSizedRepo makes the bare repository name.git under base: a
// Dockerfile (sizesDockerfile) and mb MB of random data in data/, in files
// of 16 MB at most. Git stores and serves it without compression
// (core.compression 0) and without looking for deltas
// (core.bigFileThreshold): the git server runs on this machine too, and
// its work must not be what the clone measures.
func makeSizedRepo(tb testing.TB, base, name string, mb int) {
	tb.Helper()
	src := filepath.Join(filepath.Dir(base), name+"-src")
	if err := os.MkdirAll(filepath.Join(src, "data"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte(sizesDockerfile), 0o644); err != nil {
		tb.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{byte(mb), byte(mb >> 8), byte(mb >> 16)})
	const chunk = 16 << 20
	buf := make([]byte, chunk)
	for left, n := int64(mb)<<20, 0; left > 0; n++ {
		size := min(left, chunk)
		_, _ = rng.Read(buf[:size])
		if err := os.WriteFile(filepath.Join(src, "data", fmt.Sprintf("part-%04d", n)), buf[:size], 0o644); err != nil {
			tb.Fatal(err)
		}
		left -= size
	}
	git := func(dir string, args ...string) string {
		return realbuild.FixtureGit(tb, dir, filepath.Dir(base), args...)
	}
	git(src, "init", "-q", "-b", "main")
	git(src, "config", "core.compression", "0")
	git(src, "add", ".")
	git(src, "commit", "-q", "-m", name)
	bare := filepath.Join(base, name+".git")
	git(src, "clone", "-q", "--bare", src, bare)
	git(bare, "config", "core.compression", "0")
	// No delta search either: on files of random data it finds nothing
	// and cost the server over 100 s per GB (the first run).
	git(bare, "config", "core.bigFileThreshold", "1m")
	// The data lives on in the bare repository only.
	if err := os.RemoveAll(src); err != nil {
		tb.Fatal(err)
	}
}
