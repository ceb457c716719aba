package realbuild

import (
	"context"
	"fmt"
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
