package cluster

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

var (
	phaseRounds      = flag.Int("phase-rounds", 3, "BenchmarkPhases: rounds of each build")
	phaseDockerfiles = flag.String("phase-dockerfiles", "io,cpu", "BenchmarkPhases: which Dockerfiles to build, of io and cpu")
)

// BenchmarkPhases is where a build pod's time goes on the real node, and
// how far it is from the same build without Tekton. In one run, rounds
// interleaved (each round rotates the order):
//
//   - the buildah-build Task as a TaskRun (timedBuild), against the raw
//     build: the same buildah image running buildah bud and push of the same
//     Dockerfile in a bare pod on the same node, git-sync as its init
//     container (rawbuild.sh), once as the catalog's build step runs
//     (raw-unpriv: its security context, seccomp profile and resources) and
//     once as root in a privileged container (raw-priv, a reference only);
//     on the storage bench's io-heavy and cpu-heavy Dockerfiles
//     (realbuild's, FROM the busybox base);
//   - the two-arch Pipeline (amd64 native, arm64 under qemu on the one real
//     node), against both raw builds (raw-unpriv) started at once, on the
//     fixture's io-heavy and cpu-heavy Dockerfiles, which build for either.
//
// It prints the mean time of each phase (phases_test.go: the pod's start,
// each step from the lines its script prints, each Dockerfile step, commit,
// push, results) and the ratios TaskRun / raw-unpriv (whole and bud + push),
// raw-unpriv / raw-priv, and Pipeline wall / slowest raw build.
//
//	go test -run '^$' -bench BenchmarkPhases -benchtime 1x ./test/cluster/ -phase-rounds=3
func BenchmarkPhases(b *testing.B) {
	realbuild.EnsureArm64Emulation(b)
	s, w, bw := startBenchWorldWith(b, "bench-phases", stackOptions{allowPrivileged: true})
	c := generateVariant(b, s.repo, realNodeConfig(b, s.images, "real-node-builds", ""))
	s.install(b, c)
	s.installNodeProfiles(b, c)
	raw := s.newRawBuilder(b, c)
	refs := []reference{raw.unprivileged(), raw.privileged()}

	var single []struct{ name, short, file string }
	for _, df := range []struct{ name, short, file string }{
		{"io-heavy", "io", "Dockerfile.io"},
		{"cpu-heavy", "cpu", "Dockerfile.cpu"},
	} {
		if slices.Contains(strings.Split(*phaseDockerfiles, ","), df.short) {
			single = append(single, df)
		}
	}
	if len(single) == 0 {
		b.Fatalf("-phase-dockerfiles %q names neither io nor cpu", *phaseDockerfiles)
	}
	const taskRun = "TaskRun"
	kinds := []string{taskRun, refs[0].name(), refs[1].name()}
	tables := map[string]*phaseTable{}
	pipeTables := map[string]*phaseTable{}
	critical := map[string]*phaseTable{}
	type walls struct{ pipeline, raw []time.Duration }
	pipeWalls := map[string]*walls{}
	for _, df := range single {
		tables[df.name] = newPhaseTable(kinds...)
		pipeTables[df.name] = newPhaseTable("build-amd64", "build-arm64", "manifest", "raw amd64", "raw arm64")
		critical[df.name] = newPhaseTable("PipelineRun")
		pipeWalls[df.name] = &walls{}
	}
	loadStart := loadAverage()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < *phaseRounds; round++ {
			for _, df := range single {
				for j := range kinds {
					kind := kinds[(j+round)%len(kinds)]
					name := fmt.Sprintf("%s-%s-%d-%d", df.short, strings.ToLower(kind), i, round)
					// A repository of its own for each build: the TaskRun's
					// builds are reproducible, and a registry that holds a
					// layer already is sent nothing.
					image := w.registry + "/bench/phases-" + name + ":latest"
					var tl timeline
					if kind == taskRun {
						bt := s.timedBuild(b, c, w, name, map[string]string{
							"GIT_URL": bw.repo, "DOCKERFILE": df.file, "IMAGE": image,
						}, "BASE="+bw.busybox)
						tl = bt.tl
					} else {
						ref := refs[0]
						if kind == refs[1].name() {
							ref = refs[1]
						}
						tl = raw.run(b, ref, name, rawSpec{
							repo: bw.repo, dockerfile: df.file, image: image, platform: "linux/amd64", buildArg: "BASE=" + bw.busybox,
						}).tl
					}
					tables[df.name].add(kind, tl)
					fmt.Printf("  %-9s %-10s round %d: %6.2f s, bud %6.2f s, push %5.2f s\n",
						df.name, kind, round+1, tl.total().Seconds(), tl.sum(budPhases...).Seconds(), tl.sum(pushPhases...).Seconds())
				}

				// The two-arch Pipeline and the two raw builds at once,
				// alternating which goes first.
				pipeline := func() {
					tag := fmt.Sprintf("phases-%s-%d-%d", df.short, i, round)
					r, _ := s.runOnRealNode(b, c, bw.node, w, tag, map[string]string{"ALLOW_EMULATION": "true", "DOCKERFILE": df.file})
					pr, tls := s.runTimelines(b, r)
					for _, task := range []string{"build-amd64", "build-arm64", "manifest"} {
						pipeTables[df.name].add(task, tls[task])
					}
					crit, slowest := pipelineTimeline(pr, map[string]timeline{"build-amd64": tls["build-amd64"], "build-arm64": tls["build-arm64"]}, tls["manifest"])
					critical[df.name].add("PipelineRun", crit)
					pipeWalls[df.name].pipeline = append(pipeWalls[df.name].pipeline, crit.total())
					fmt.Printf("  %-9s Pipeline   round %d: %6.2f s (slowest: %s %6.2f s, manifest %5.2f s)\n",
						df.name, round+1, crit.total().Seconds(), slowest, tls[slowest].total().Seconds(), tls["manifest"].total().Seconds())
					s.deleteRun(b, r)
				}
				rawPair := func() {
					var specs []rawSpec
					for _, arch := range []string{"amd64", "arm64"} {
						specs = append(specs, rawSpec{
							repo: w.fixture.URL, dockerfile: df.file, platform: "linux/" + arch,
							image: fmt.Sprintf("%s/bench/phases-raw:%s-%s", w.registry, df.short, arch),
						})
					}
					rbs := raw.runAll(b, refs[0], fmt.Sprintf("pair-%s-%d-%d", df.short, i, round), specs)
					var wall time.Duration
					for k, arch := range []string{"amd64", "arm64"} {
						pipeTables[df.name].add("raw "+arch, rbs[k].tl)
						wall = max(wall, rbs[k].tl.total())
					}
					pipeWalls[df.name].raw = append(pipeWalls[df.name].raw, wall)
					fmt.Printf("  %-9s raw pair   round %d: %6.2f s (amd64 %6.2f s, arm64 %6.2f s)\n",
						df.name, round+1, wall.Seconds(), rbs[0].tl.total().Seconds(), rbs[1].tl.total().Seconds())
				}
				if round%2 == 0 {
					pipeline()
					rawPair()
				} else {
					rawPair()
					pipeline()
				}
			}
		}
	}
	b.StopTimer()

	fmt.Printf("\nphases on the real node (buildah %s), %d rounds; load average %s at the start, %s at the end\n",
		s.images.Ref(b, "BUILDAH_VERSION"), *phaseRounds*b.N, loadStart, loadAverage())
	for _, df := range single {
		t := tables[df.name]
		fmt.Printf("\n  %s, one architecture (linux/amd64): the buildah-build TaskRun against the raw build\n%s", df.name, t)
		tr, unpriv, priv := t.mean(taskRun), t.mean(kinds[1]), t.mean(kinds[2])
		budPush := append(append([]string{}, budPhases...), pushPhases...)
		trBP, unprivBP, privBP := t.meanOf(taskRun, budPush...), t.meanOf(kinds[1], budPush...), t.meanOf(kinds[2], budPush...)
		fmt.Printf("    TaskRun / raw-unpriv: %.2fx whole (%.2f s / %.2f s), %.2fx bud + push (%.2f s / %.2f s)\n",
			ratio(tr, unpriv), tr.Seconds(), unpriv.Seconds(), ratio(trBP, unprivBP), trBP.Seconds(), unprivBP.Seconds())
		fmt.Printf("    raw-unpriv / raw-priv: %.2fx whole (%.2f s / %.2f s), %.2fx bud + push (%.2f s / %.2f s)\n",
			ratio(unpriv, priv), unpriv.Seconds(), priv.Seconds(), ratio(unprivBP, privBP), unprivBP.Seconds(), privBP.Seconds())
		b.ReportMetric(ratio(tr, unpriv), df.short+"-TaskRun/raw-unpriv")
		b.ReportMetric(ratio(unpriv, priv), df.short+"-raw-unpriv/raw-priv")

		pw := pipeWalls[df.name]
		fmt.Printf("\n  %s, two architectures (amd64 native, arm64 under qemu): the Pipeline's TaskRuns and the raw builds started at once\n%s",
			df.name, pipeTables[df.name])
		fmt.Printf("    the Pipeline's critical path:\n%s", critical[df.name])
		pipe, slowest := meanDuration(pw.pipeline), meanDuration(pw.raw)
		fmt.Printf("    Pipeline wall / slowest raw build: %.2fx (%.2f s / %.2f s)\n", ratio(pipe, slowest), pipe.Seconds(), slowest.Seconds())
		b.ReportMetric(ratio(pipe, slowest), df.short+"-Pipeline/slowest-raw")
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func meanDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// runTimelines reads the phases of a finished run's TaskRuns, by pipeline
// task, and the run.
func (s *stack) runTimelines(tb testing.TB, r *prRun) (*v1.PipelineRun, map[string]timeline) {
	tb.Helper()
	pr, trs := s.succeededRealRun(tb, r)
	out := map[string]timeline{}
	for task, tr := range trs {
		var logs map[string]string
		out[task], logs = s.taskRunPhases(tb, r.c.ns(), tr)
		// A push far slower than the others is the registry's or the
		// network's doing, not a phase of the build: its lines say which.
		if d := out[task].sum(pushPhases...); d > slowPush {
			fmt.Printf("  %s: the push took %.1f s; the build step's log from the push on:\n%s", tr.Name, d.Seconds(), fromLine(logs["step-build"], "pushing "))
		}
	}
	return pr, out
}

// slowPush is a push time that BenchmarkPhases explains with the log.
const slowPush = 5 * time.Second

// fromLine is a log (kubectl logs --timestamps) from its first line whose
// text starts with prefix, each line indented.
func fromLine(log, prefix string) string {
	var b strings.Builder
	on := false
	for _, line := range strings.SplitAfter(log, "\n") {
		_, text, _ := strings.Cut(line, " ")
		on = on || strings.HasPrefix(text, prefix)
		if on && line != "" {
			b.WriteString("    " + line)
		}
	}
	return b.String()
}

// deleteRun deletes a run and waits until its pods are gone, so that their
// storage does not linger into the next build's measurement.
func (s *stack) deleteRun(tb testing.TB, r *prRun) {
	tb.Helper()
	ctx := context.Background()
	trs, err := r.taskRuns(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.tekton.TektonV1().PipelineRuns(r.c.ns()).Delete(ctx, r.name, metav1.DeleteOptions{}); err != nil {
		tb.Fatal(err)
	}
	for _, tr := range trs {
		s.waitPodGone(tb, r.c.ns(), tr.Status.PodName)
	}
}
