package cluster

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

var storageRounds = flag.Int("storage-rounds", 3, "BenchmarkStorageModes: builds of each Dockerfile in each storage mode")

// benchEpoch is the SOURCE_DATE_EPOCH of every storage bench build: the same
// input must then build the same digest, whatever the mode.
const benchEpoch = "1700000000"

// BenchmarkStorageModes compares buildah's storage modes (the kernel's
// overlay, fuse-overlayfs, vfs) on the real node, as users run them: the
// generated buildah-build Task as a TaskRun with STORAGE set, in a pod the
// kubelet starts with the catalog's security context and seccomp profile;
// fuse-overlayfs from the catalog generated with build.storage:
// fuse-overlayfs, the one that asks the device plugin for /dev/fuse. The
// Dockerfiles are realbuild's (BenchIODockerfile, BenchCPUDockerfile,
// BenchBigBaseDockerfile), FROM bases pushed to the node's registry; the
// io-heavy one once more with a layer per step, which the Task does only
// with its layer cache on (CACHE=true, a cold cache repository of the
// build's own, so every step runs and its layer is pushed there too).
// Every round builds each Dockerfile in every mode, the modes' order
// rotated each round, so the machine's drifting load falls on all alike.
// It prints each build, then one line per Dockerfile: the mean and the
// fastest buildah bud time per mode (from the kubelet's log timestamps), the
// build step's mean (Tekton's step times, to the second), the ratios against
// fuse-overlayfs, and the pushed digests (SOURCE_DATE_EPOCH set: one per
// Dockerfile where the mode does not show in the layers; the kernel's
// overlay's differs where a layer deletes several files of lower layers,
// realbuild.SharedWhiteoutsDockerfile says why).
//
//	go test -run '^$' -bench BenchmarkStorageModes -benchtime 1x ./test/cluster/ -storage-rounds=3
func BenchmarkStorageModes(b *testing.B) {
	s, w, bw := startBenchWorld(b, "bench-storage")
	busybox, big, repo := bw.busybox, bw.big, bw.repo
	c := generateVariant(b, s.repo, realNodeConfig(b, s.images, "real-node-builds", ""))
	cf := generateVariant(b, s.repo, realNodeConfig(b, s.images, "real-node-fuse", "build:\n  storage: fuse-overlayfs\n"))
	s.install(b, c)
	s.install(b, cf)
	s.installNodeProfiles(b, c)

	dockerfiles := []struct {
		name, short, file, base string
		layers                  bool
	}{
		{"io-heavy", "io", "Dockerfile.io", busybox, false},
		{"io-heavy --layers", "iol", "Dockerfile.io", busybox, true},
		{"big-base", "big", "Dockerfile.big", big, false},
		{"cpu-heavy", "cpu", "Dockerfile.cpu", busybox, false},
	}
	modes := []string{"overlay", "fuse-overlayfs", "vfs"}
	type key struct{ dockerfile, mode string }
	builds := map[key][]buildTiming{}
	loadStart := loadAverage()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < *storageRounds; round++ {
			for _, df := range dockerfiles {
				for j := range modes {
					mode := modes[(j+round)%len(modes)]
					cat := c
					if mode == "fuse-overlayfs" {
						cat = cf
					}
					name := fmt.Sprintf("%s-%s-%d-%d", df.short, mode, i, round)
					params := map[string]string{
						"GIT_URL": repo, "DOCKERFILE": df.file, "STORAGE": mode, "SOURCE_DATE_EPOCH": benchEpoch,
						"IMAGE": w.registry + "/bench/storage:" + df.short,
					}
					if df.layers {
						params["CACHE"] = "true"
						params["CACHE_REPO"] = w.registry + "/bench/cache-" + name
					}
					bt := s.timedBuild(b, cat, w, name, params, "BASE="+df.base)
					checkBenchStorage(b, bt, mode, df.layers)
					k := key{df.name, mode}
					builds[k] = append(builds[k], bt)
					fmt.Printf("  %-17s %-14s round %d: buildah bud %6.2f s, build step %3.0f s, %s\n",
						df.name, mode, round+1, bt.bud.Seconds(), bt.step.Seconds(), bt.digest)
				}
			}
		}
	}
	b.StopTimer()

	mean := meanSeconds[buildTiming]
	// The fastest build of a mode is the least disturbed by other load on
	// this shared machine: printed beside the mean.
	fastest := func(bts []buildTiming) float64 {
		m := bts[0].bud
		for _, bt := range bts {
			m = min(m, bt.bud)
		}
		return m.Seconds()
	}
	bud := func(bt buildTiming) time.Duration { return bt.bud }
	step := func(bt buildTiming) time.Duration { return bt.step }
	fmt.Printf("storage modes on the real node (buildah %s in the catalog's pods), %d builds each; "+
		"mean buildah bud time (fastest) [build step's mean wall time]; ratios of the means (of the fastest); load average %s at the start, %s at the end:\n",
		s.images.Ref(b, "BUILDAH_VERSION"), *storageRounds*b.N, loadStart, loadAverage())
	for _, df := range dockerfiles {
		fuse := mean(builds[key{df.name, "fuse-overlayfs"}], bud)
		fuseFastest := fastest(builds[key{df.name, "fuse-overlayfs"}])
		line := fmt.Sprintf("  %-17s", df.name)
		var ratios []string
		digests := map[string][]string{}
		for _, m := range modes {
			bts := builds[key{df.name, m}]
			line += fmt.Sprintf("  %s %6.2f s (%.2f) [%3.0f s]", m, mean(bts, bud), fastest(bts), mean(bts, step))
			if m != "fuse-overlayfs" {
				ratios = append(ratios, fmt.Sprintf("%s/fuse-overlayfs %.2f (%.2f)", m, mean(bts, bud)/fuse, fastest(bts)/fuseFastest))
			}
			for _, bt := range bts {
				if ds := digests[bt.digest]; len(ds) == 0 || ds[len(ds)-1] != m {
					digests[bt.digest] = append(ds, m)
				}
			}
			metric := strings.ReplaceAll(df.name, " --", "-")
			b.ReportMetric(mean(bts, bud), metric+"-"+m+"-bud-s")
		}
		fmt.Printf("%s  %s  digests: %s\n", line, strings.Join(ratios, ", "), digestSummary(digests))
	}
}

// benchWorld is what the real-node benchmarks build: the storage bench's
// Dockerfiles (realbuild's BenchIODockerfile, BenchBigBaseDockerfile,
// BenchCPUDockerfile) in a git repository, and their FROM bases (the
// busybox base and a distribution-sized one) in the node's registry.
type benchWorld struct {
	busybox, big, repo string
	node               *realNode
}

// startBenchWorld starts the stack with the real node and makes the bench
// repository name.
func startBenchWorld(b *testing.B, name string) (*stack, *nodeWorld, benchWorld) {
	return startBenchWorldWith(b, name, stackOptions{})
}

func startBenchWorldWith(b *testing.B, name string, opts stackOptions) (*stack, *nodeWorld, benchWorld) {
	p := &realNodeProvider{}
	s := startStackWith(b, opts, kwokNodes{}, p)
	w := s.startNodeWorld(b)
	bw := benchWorld{busybox: w.registry + "/base/busybox:1.35", big: w.registry + "/base/big:1", repo: w.gitURL(name + ".git"), node: p.node}
	realbuild.PushBusyboxBase(b, bw.busybox)
	realbuild.PushBigBase(b, bw.busybox, bw.big)
	realbuild.MakeGitRepo(b, w.gitBase, name, map[string]string{
		"Dockerfile.io":  realbuild.BenchIODockerfile,
		"Dockerfile.big": realbuild.BenchBigBaseDockerfile,
		"Dockerfile.cpu": realbuild.BenchCPUDockerfile,
	})
	return s, w, bw
}

// loadAverage is the machine's load averages (1, 5, 15 min), which the
// benchmarks print at their start and end.
func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

// meanSeconds is the mean of f over xs, in seconds.
func meanSeconds[T any](xs []T, f func(T) time.Duration) float64 {
	var sum time.Duration
	for _, x := range xs {
		sum += f(x)
	}
	return sum.Seconds() / float64(len(xs))
}

// digestSummary says which modes built which digest (digest -> modes).
func digestSummary(digests map[string][]string) string {
	if len(digests) == 1 {
		for d := range digests {
			return "one, " + short(d)
		}
	}
	var parts []string
	for d, modes := range digests {
		parts = append(parts, fmt.Sprintf("%s %s", strings.Join(modes, "+"), short(d)))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d: %s", len(digests), strings.Join(parts, "; "))
}

func short(digest string) string {
	if len(digest) > len("sha256:")+12 {
		return digest[:len("sha256:")+12]
	}
	return digest
}

// checkBenchStorage checks that a bench build ran in the mode asked for
// (build.sh's storage line; for the kernel's overlay, build.sh itself fails
// a build that containers/storage moved to fuse-overlayfs), and with the
// layer cache exactly when asked: the figures must be the mode's.
func checkBenchStorage(tb testing.TB, bt buildTiming, mode string, layers bool) {
	tb.Helper()
	if want := regexp.MustCompile(`(?m)^storage: ` + regexp.QuoteMeta(mode) + ` \(STORAGE=` + regexp.QuoteMeta(mode)); !want.MatchString(bt.log) {
		tb.Fatalf("TaskRun %s: no line %q in the build log:\n%s", bt.tr.Name, want, head(bt.log, 10))
	}
	if cached := strings.Contains(bt.log, "\nlayer cache: "); cached != layers {
		tb.Fatalf("TaskRun %s: layer cache used %t, want %t:\n%s", bt.tr.Name, cached, layers, head(bt.log, 10))
	}
}
