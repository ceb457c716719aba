package cluster

import (
	"flag"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var syftRE = regexp.MustCompile(`syft \d+\.\d+\.\d+`)

var sbomRounds = flag.Int("sbom-rounds", 2, "BenchmarkSBOM: builds of each Dockerfile with SBOM off and on")

// BenchmarkSBOM is what decides SBOM's default: the generated buildah-build
// Task on the real node, SBOM "false" against "true", on the storage
// bench's Dockerfiles (io-heavy, big-base, cpu-heavy; FROM bases in the
// node's registry), off and on alternating first each round. It times, from
// the kubelet's log timestamps, the build step (its first to last line) and
// the build with its SBOM steps (the build step's first line to the
// sbom-attach step's last): with SBOM off the two SBOM steps only start,
// say so and end, so the ratio on/off of the second is what an SBOM costs a
// user's build, pod start-up aside. The SBOM part alone (the build step's
// last line to sbom-attach's last) is printed too.
//
//	go test -run '^$' -bench BenchmarkSBOM -benchtime 1x ./test/cluster/ -sbom-rounds=2
func BenchmarkSBOM(b *testing.B) {
	s, w, bw := startBenchWorld(b, "bench-sbom")
	busybox, big, repo := bw.busybox, bw.big, bw.repo
	c := generateVariant(b, s.repo, realNodeConfig(b, s.images, "real-node-builds", ""))
	s.install(b, c)
	s.installNodeProfiles(b, c)

	dockerfiles := []struct{ name, short, file, base string }{
		{"io-heavy", "io", "Dockerfile.io", busybox},
		{"big-base", "big", "Dockerfile.big", big},
		{"cpu-heavy", "cpu", "Dockerfile.cpu", busybox},
	}
	type key struct{ dockerfile, sbom string }
	type timing struct{ build, withSBOM, sbomPart time.Duration }
	times := map[key][]timing{}
	loadStart := loadAverage()
	syft := "syft"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < *sbomRounds; round++ {
			for _, df := range dockerfiles {
				for j := 0; j < 2; j++ {
					sbom := []string{"false", "true"}[(j+round)%2]
					name := fmt.Sprintf("sbom-%s-%s-%d-%d", df.short, sbom, i, round)
					bt := s.timedBuild(b, c, w, name, map[string]string{
						"GIT_URL": repo, "DOCKERFILE": df.file, "SBOM": sbom, "SOURCE_DATE_EPOCH": benchEpoch,
						"IMAGE": w.registry + "/bench/sbom:" + df.short,
					}, "BASE="+df.base)
					build, attach := bt.spans["build"], bt.spans["sbom-attach"]
					if build.first.IsZero() || attach.last.IsZero() {
						b.Fatalf("TaskRun %s: no log lines of the build or sbom-attach step (%v)", bt.tr.Name, bt.spans)
					}
					sbomLog := bt.spans["sbom"].text
					if made := strings.Contains(sbomLog, "SBOM of "); made != (sbom == "true") {
						b.Fatalf("TaskRun %s: SBOM=%s, but the sbom step's log says an SBOM was made: %t\n%s", bt.tr.Name, sbom, made, sbomLog)
					}
					if m := syftRE.FindString(sbomLog); m != "" {
						syft = m
					}
					tm := timing{build: build.last.Sub(build.first), withSBOM: attach.last.Sub(build.first), sbomPart: attach.last.Sub(build.last)}
					times[key{df.name, sbom}] = append(times[key{df.name, sbom}], tm)
					fmt.Printf("  %-10s SBOM=%-5s round %d: build step %6.2f s, build + SBOM steps %6.2f s (SBOM steps %5.2f s)\n",
						df.name, sbom, round+1, tm.build.Seconds(), tm.withSBOM.Seconds(), tm.sbomPart.Seconds())
				}
			}
		}
	}
	b.StopTimer()

	mean := meanSeconds[timing]
	build := func(t timing) time.Duration { return t.build }
	withSBOM := func(t timing) time.Duration { return t.withSBOM }
	sbomPart := func(t timing) time.Duration { return t.sbomPart }
	fmt.Printf("SBOM cost on the real node (%s), %d builds each; means; load average %s at the start, %s at the end:\n",
		syft, *sbomRounds*b.N, loadStart, loadAverage())
	for _, df := range dockerfiles {
		off, on := times[key{df.name, "false"}], times[key{df.name, "true"}]
		ratio := mean(on, withSBOM) / mean(off, withSBOM)
		fmt.Printf("  %-10s build + SBOM steps: off %6.2f s, on %6.2f s: on/off %.2fx; build step alone off %6.2f s, on %6.2f s; the SBOM steps %5.2f s off, %5.2f s on\n",
			df.name, mean(off, withSBOM), mean(on, withSBOM), ratio, mean(off, build), mean(on, build), mean(off, sbomPart), mean(on, sbomPart))
		b.ReportMetric(ratio, df.short+"-on/off")
	}
}
