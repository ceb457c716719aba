package realbuild

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkTwoArch measures, in one run of the committed catalog's Pipeline:
// the two builds one after the other against both at once, and the whole
// Pipeline against its slowest build alone (what the Pipeline adds over the
// physical limit). Every build starts from empty storage, as a fresh pod would.
//
//	go test -run '^$' -bench BenchmarkTwoArch -benchtime 1x ./test/realbuild/
func BenchmarkTwoArch(b *testing.B) {
	w := NewWorld(b)
	ctx := context.Background()
	r := &Runner{Catalog: w.Catalog, WorkDir: w.Work, GitSync: w.self, Timeout: 4 * time.Minute}
	run := func(name string, only ...string) *PipelineRun {
		b.Helper()
		pr := r.RunPipeline(ctx, PipelineRunRequest{
			Name: name, Pipeline: pipelineName, Only: only,
			Params: Params("GIT_URL", w.Fixture.URL, "IMAGE", w.Image(name), "TLS_VERIFY", "false", "ALLOW_EMULATION", "true"),
		})
		if pr.Err != nil {
			for n, tr := range pr.TaskRuns {
				b.Logf("TaskRun %s:\n%s", n, tr.Log)
			}
			b.Fatalf("%s: %v", name, pr.Err)
		}
		return pr
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run(fmt.Sprintf("warmup-%d", i), "build-amd64") // page cache, binaries: not counted

		start := time.Now()
		amd := run(fmt.Sprintf("seq-amd64-%d", i), "build-amd64").Duration()
		arm := run(fmt.Sprintf("seq-arm64-%d", i), "build-arm64").Duration()
		seq := time.Since(start)
		par := run(fmt.Sprintf("par-%d", i), "build-amd64", "build-arm64").Duration()
		pipe := run(fmt.Sprintf("pipeline-%d", i)).Duration()
		slowest, slowestName := amd, "amd64"
		if arm > amd {
			slowest, slowestName = arm, "arm64"
		}

		line := func(label, format string, a ...any) {
			fmt.Printf("%-52s "+format+"\n", append([]any{label + ":"}, a...)...)
		}
		line(fmt.Sprintf("two-arch, sequential (amd64 %s + arm64 %s)", amd.Round(time.Millisecond), arm.Round(time.Millisecond)), "%s", seq.Round(time.Millisecond))
		line("two-arch, parallel", "%s", par.Round(time.Millisecond))
		line("sequential / parallel", "%.2fx", seq.Seconds()/par.Seconds())
		line("pipeline (builds in parallel, then manifest)", "%s", pipe.Round(time.Millisecond))
		line("slowest single-arch build alone ("+slowestName+")", "%s", slowest.Round(time.Millisecond))
		line("pipeline / slowest build", "%.2fx (overhead %s)", pipe.Seconds()/slowest.Seconds(), (pipe - slowest).Round(time.Millisecond))
		b.ReportMetric(seq.Seconds(), "seq-s")
		b.ReportMetric(par.Seconds(), "par-s")
		b.ReportMetric(seq.Seconds()/par.Seconds(), "seq/par")
		b.ReportMetric(pipe.Seconds(), "pipeline-s")
		b.ReportMetric(pipe.Seconds()/slowest.Seconds(), "pipeline/slowest")
	}
}

// benchWork is the layer-cache benchmark's cost: MiB hashed by each of the
// fixture's two expensive steps (a few seconds each here).
const benchWork = 512

// BenchmarkLayerCache measures the layer cache, in one run, on the layers
// fixture built for amd64 as the Pipeline's build-amd64 (its RUN steps run
// natively here): a cold build with the cache on (empty cache repository), a
// warm one (same source, a new TaskRun, so empty storage, as a new pod), a
// warm one with the cache off, and one after a change to the late layer with
// the cache on. Times are whole TaskRuns (clone, probe, build, push).
//
//	go test -run '^$' -bench BenchmarkLayerCache -benchtime 1x ./test/realbuild/
func BenchmarkLayerCache(b *testing.B) {
	w := NewWorld(b)
	ctx := context.Background()
	lay := w.Layers(b, benchWork)
	base := w.BusyboxBase(b)
	r := &Runner{Catalog: w.Catalog, WorkDir: w.Work, GitSync: w.self, Timeout: 4 * time.Minute}
	run := func(repo, name, ref, cache string) *TaskRun {
		b.Helper()
		params := Params("GIT_URL", lay.URL, "GIT_REF", ref, "IMAGE", repo+":"+name, "TLS_VERIFY", "false", "CACHE", cache)
		params = append(params, ArrayParam("BUILD_ARGS", "BASE="+base))
		pr := r.RunPipeline(ctx, PipelineRunRequest{Name: "bench-cache-" + name, Pipeline: pipelineName, Only: []string{"build-amd64"}, Params: params})
		tr := pr.TaskRuns["build-amd64"]
		if pr.Err != nil || tr == nil {
			if tr != nil {
				b.Logf("build-amd64:\n%s", tr.Log)
			}
			b.Fatalf("%s: %v", name, pr.Err)
		}
		return tr
	}
	ran := func(tr *TaskRun) int { return strings.Count(tr.Log, "\nran: ") }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A repository per iteration: its cache starts empty.
		repo := fmt.Sprintf("%s/bench-%d/app", w.Registry.Addr, i)
		run(repo, fmt.Sprintf("warmup-%d", i), "main", "false") // page cache, binaries: not counted

		cold := run(repo, fmt.Sprintf("cold-%d", i), "main", "true")
		warm := run(repo, fmt.Sprintf("warm-%d", i), "main", "true")
		off := run(repo, fmt.Sprintf("off-%d", i), "main", "false")
		late := run(repo, fmt.Sprintf("late-%d", i), "late-change", "true")
		// The numbers mean something only if the cache did what it should.
		if n := [4]int{ran(cold), ran(warm), ran(off), ran(late)}; n != [4]int{3, 0, 3, 1} {
			b.Fatalf("RUN steps run (cold, warm, off, late) = %v, want [3 0 3 1]", n)
		}

		c, wm, o, l := cold.Duration(), warm.Duration(), off.Duration(), late.Duration()
		line := func(label, format string, a ...any) {
			fmt.Printf("%-56s "+format+"\n", append([]any{label + ":"}, a...)...)
		}
		ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
		line(fmt.Sprintf("layer cache on, cold (empty cache; 2 x %d MiB hashed)", benchWork), "%s", ms(c))
		line("layer cache on, warm (unchanged source)", "%s", ms(wm))
		line("layer cache off, warm (unchanged source)", "%s", ms(o))
		line("layer cache on, late layer changed", "%s", ms(l))
		line("cold / warm, cache on", "%.2fx", c.Seconds()/wm.Seconds())
		line("warm cache off / warm cache on", "%.2fx", o.Seconds()/wm.Seconds())
		line("cold cache on / cache off (cost of filling the cache)", "%.2fx", c.Seconds()/o.Seconds())
		line("cache off / late layer changed, cache on", "%.2fx", o.Seconds()/l.Seconds())
		b.ReportMetric(c.Seconds(), "cold-s")
		b.ReportMetric(wm.Seconds(), "warm-s")
		b.ReportMetric(o.Seconds(), "off-s")
		b.ReportMetric(l.Seconds(), "late-s")
		b.ReportMetric(c.Seconds()/wm.Seconds(), "cold/warm")
		b.ReportMetric(o.Seconds()/wm.Seconds(), "off/warm")
	}
}
