package realbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// testLayerCache builds the layers fixture for amd64 (its RUN steps run
// natively here) through the Pipeline's own wiring, build-amd64 alone, with
// CACHE "true": the cache repository is the one the Pipeline and the Task
// make of IMAGE and the per-arch suffix. What is asserted is buildah's own
// account of each step and the pushed layers, never time.
func testLayerCache(ctx context.Context, t *testing.T, w *World) {
	lay := w.Layers(t, 16)
	base := w.BusyboxBase(t)
	repo := w.Registry.Addr + "/layers/app"
	cacheRepo := repo + "-cache-amd64" // IMAGE's repository + -cache + TAG_SUFFIX
	build := func(t *testing.T, tag, ref string, nv ...string) *TaskRun {
		t.Helper()
		params := Params(append([]string{"GIT_URL", lay.URL, "GIT_REF", ref, "IMAGE", repo + ":" + tag, "TLS_VERIFY", "false"}, nv...)...)
		params = append(params, ArrayParam("BUILD_ARGS", "BASE="+base))
		pr := w.Runner(t, w.Catalog).RunPipeline(ctx, PipelineRunRequest{
			Name: "pr-cache-" + tag, Pipeline: pipelineName, Only: []string{"build-amd64"}, Params: params,
		})
		tr := pr.TaskRuns["build-amd64"]
		if pr.Err != nil || tr == nil {
			if tr != nil {
				t.Logf("build-amd64:\n%s", tr.Log)
			}
			t.Fatalf("the build failed: %v", pr.Err)
		}
		return tr
	}
	ranSteps := func(log string) []string {
		var ran []string
		for _, m := range regexp.MustCompile(`(?m)^ran: (\w+)$`).FindAllStringSubmatch(log, -1) {
			ran = append(ran, m[1])
		}
		return ran
	}
	// cached lists, per instruction (FROM left out, and the LABEL steps
	// buildah adds for the OCI labels), whether buildah took it from a cache.
	cached := func(log string) map[string]bool {
		got := map[string]bool{}
		for _, s := range BuildSteps(log) {
			if strings.HasPrefix(s.Instruction, "FROM ") || strings.HasPrefix(s.Instruction, "LABEL ") {
				continue
			}
			got[strings.Fields(s.Instruction)[0]+" "+stepName(s.Instruction)] = s.UsedCache()
		}
		return got
	}
	digest := func(t *testing.T, tr *TaskRun) string {
		t.Helper()
		d, ok := tr.Result("IMAGE_DIGEST")
		if !ok {
			t.Fatal("no IMAGE_DIGEST")
		}
		return d
	}

	var cold *TaskRun
	var coldLayers []string
	t.Run("cold", func(t *testing.T) {
		cold = build(t, "cold", "main", "CACHE", "true")
		if !strings.Contains(cold.Log, "layer cache: "+cacheRepo+" (buildah bud --layers") {
			t.Errorf("the build did not announce the cache %s:\n%s", cacheRepo, cold.Log)
		}
		if strings.Contains(cold.Log, "warning:") {
			t.Errorf("an empty cache is a miss, not a failure; the build warned:\n%s", cold.Log)
		}
		want := map[string]bool{"RUN deps": false, "RUN compile": false, "COPY late.txt": false, "RUN late": false}
		if got := cached(cold.Log); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("steps taken from a cache: %v, want %v", got, want)
		}
		if got := ranSteps(cold.Log); !slices.Equal(got, []string{"deps", "compile", "late"}) {
			t.Errorf("steps that ran: %v", got)
		}
		// What buildah says it pushed is what the cache repository holds.
		pushed := regexp.MustCompile(`(?m)^--> Pushing cache `+regexp.QuoteMeta(cacheRepo)+`:([0-9a-f]{64})$`).FindAllStringSubmatch(cold.Log, -1)
		tags, err := w.Registry.Tags(strings.TrimPrefix(cacheRepo, w.Registry.Addr+"/"))
		if err != nil {
			t.Fatal(err)
		}
		want2 := []string{"cache-probe"}
		for _, m := range pushed {
			want2 = append(want2, m[1])
		}
		slices.Sort(want2)
		if len(pushed) < 4 || !slices.Equal(tags, want2) {
			t.Errorf("cache repository tags %v, want the probe's and the %d cache keys buildah pushed: %v", tags, len(pushed), want2)
		}
		coldLayers = imageLayers(ctx, t, repo+"@"+digest(t, cold))
	})
	if cold == nil || t.Failed() {
		t.Fatal("the cold build failed: the rest depends on it")
	}

	t.Run("warm-unchanged", func(t *testing.T) {
		// A new TaskRun, so empty storage, as a new pod: every layer comes
		// from the registry.
		warm := build(t, "warm", "main", "CACHE", "true")
		want := map[string]bool{"RUN deps": true, "RUN compile": true, "COPY late.txt": true, "RUN late": true}
		if got := cached(warm.Log); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("steps taken from the cache: %v, want all: %v\n%s", got, want, warm.Log)
		}
		if got := ranSteps(warm.Log); len(got) > 0 {
			t.Errorf("steps ran again: %v", got)
		}
		if !strings.Contains(warm.Log, "Cache pulled from remote "+cacheRepo+":") {
			t.Errorf("buildah did not pull from %s:\n%s", cacheRepo, warm.Log)
		}
		// The very layers, random bytes and all: nothing was rebuilt. The
		// digest differs: without SOURCE_DATE_EPOCH the
		// org.opencontainers.image.created label is each build's own time.
		if got := imageLayers(ctx, t, repo+"@"+digest(t, warm)); !slices.Equal(got, coldLayers) {
			t.Errorf("warm image layers %v differ from the cold ones %v", got, coldLayers)
		}
	})

	t.Run("late-change", func(t *testing.T) {
		late := build(t, "late", "late-change", "CACHE", "true")
		want := map[string]bool{"RUN deps": true, "RUN compile": true, "COPY late.txt": false, "RUN late": false}
		if got := cached(late.Log); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("steps taken from the cache: %v, want %v\n%s", got, want, late.Log)
		}
		if got := ranSteps(late.Log); !slices.Equal(got, []string{"late"}) {
			t.Errorf("steps that ran: %v, want only late", got)
		}
		got := imageLayers(ctx, t, repo+"@"+digest(t, late))
		// base, deps, compile: the cold build's; late.txt and late.sum: new.
		if len(got) != 5 || len(coldLayers) != 5 {
			t.Fatalf("layers: cold %v, late %v; want 5 each", coldLayers, got)
		}
		for i := range got {
			if same := got[i] == coldLayers[i]; same != (i < 3) {
				t.Errorf("layer %d: cold %s, late %s; want the first 3 shared and the rest rebuilt", i, coldLayers[i], got[i])
			}
		}
	})

	t.Run("cache-unreachable", func(t *testing.T) {
		dead := fmt.Sprintf("127.0.0.1:%d/cache", FreePort(t))
		tr := build(t, "unreachable", "main", "CACHE", "true", "CACHE_REPO", dead)
		for _, want := range []string{
			"warning: cannot push to the layer cache " + dead + "-amd64, building without it: ",
			"connection refused",
		} {
			if !strings.Contains(tr.Log, want) {
				t.Errorf("log lacks %q:\n%s", want, tr.Log)
			}
		}
		if strings.Contains(tr.Log, "--cache-from") || strings.Contains(tr.Log, "Pushing cache") || strings.Contains(tr.Log, "Using cache") {
			t.Errorf("the build still used the cache:\n%s", tr.Log)
		}
		if got := ranSteps(tr.Log); !slices.Equal(got, []string{"deps", "compile", "late"}) {
			t.Errorf("steps that ran: %v", got)
		}
		imageLayers(ctx, t, repo+"@"+digest(t, tr))
	})

	t.Run("cache-push-refused-mid-build", func(t *testing.T) {
		// The probe may push, buildah's cache pushes are refused: buildah
		// fails the build, and the step builds again without the cache.
		refusing := RefusingRegistry(t, w.Registry.Addr) + "/refused/cache"
		tr := build(t, "refused", "main", "CACHE", "true", "CACHE_REPO", refusing)
		for _, want := range []string{
			"layer cache: " + refusing + "-amd64 (buildah bud --layers",
			"failed pushing cache to", // buildah's own error
			"warning: the layer cache " + refusing + "-amd64 failed during the build (above): building again without it",
		} {
			if !strings.Contains(tr.Log, want) {
				t.Errorf("log lacks %q:\n%s", want, tr.Log)
			}
		}
		// The second attempt takes deps from this pod's storage: it ran once.
		if got := ranSteps(tr.Log); !slices.Equal(got, []string{"deps", "compile", "late"}) {
			t.Errorf("steps that ran: %v, want each once", got)
		}
		imageLayers(ctx, t, repo+"@"+digest(t, tr))
	})
}

// stepName is what names a fixture step in its instruction: the s=NAME of a
// RUN, the source of a COPY.
func stepName(instruction string) string {
	if m := regexp.MustCompile(`^RUN s=(\w+);`).FindStringSubmatch(instruction); m != nil {
		return m[1]
	}
	if f := strings.Fields(instruction); len(f) > 1 {
		return f[1]
	}
	return ""
}

// imageLayers lists an image's layer digests as the registry serves them.
func imageLayers(ctx context.Context, t *testing.T, ref string) []string {
	t.Helper()
	raw, err := RawManifest(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	if len(ds) == 0 {
		t.Fatalf("%s has no layers:\n%s", ref, raw)
	}
	return ds
}
