package realbuild

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testSBOM runs the build Task with SBOM "true": the sbom step's syft and
// the sbom-attach step's crane are the test's syft and crane images' own
// binaries (build-images.sh), run as processes against the real registry.
// The attachment is read back from the registry by its tag, as cosign
// download sbom reads it.
func testSBOM(ctx context.Context, t *testing.T, w *World) {
	bin := sbomTools(ctx, t, w.Repo)
	run := func(t *testing.T, name string, nv ...string) *TaskRun {
		t.Helper()
		r := w.Runner(t, w.Catalog)
		r.StepBin = map[string]string{"sbom": bin, "sbom-attach": bin}
		params := Params(append([]string{"GIT_URL", w.Fixture.URL, "IMAGE", w.Image("sbom"), "TAG_SUFFIX", "-amd64",
			"PLATFORM", "linux/amd64", "TLS_VERIFY", "false"}, nv...)...)
		return r.RunTask(ctx, TaskRunRequest{Name: "tr-sbom-" + name, Task: buildTask, Params: params})
	}

	t.Run("attached", func(t *testing.T) {
		tr := run(t, "attached", "SBOM", "true")
		if !tr.Succeeded() {
			t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
		}
		digest, _ := tr.Result("IMAGE_DIGEST")
		url, _ := tr.Result("SBOM_IMAGE_URL")
		sbomDigest, _ := tr.Result("SBOM_IMAGE_DIGEST")
		sbomRef, _ := tr.Result("SBOM_IMAGE_REF")
		wantTag := w.Repository() + ":sha256-" + strings.TrimPrefix(digest, "sha256:") + ".sbom"
		if url != wantTag || sbomRef != w.Repository()+"@"+sbomDigest {
			t.Fatalf("SBOM results URL %q REF %q DIGEST %q, want the tag %s and its digest", url, sbomRef, sbomDigest, wantTag)
		}
		raw, err := RawManifest(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != sbomDigest {
			t.Errorf("the tag %s holds %s, SBOM_IMAGE_DIGEST says %s", url, got, sbomDigest)
		}
		var m struct {
			MediaType string `json:"mediaType"`
			Layers    []struct {
				MediaType string `json:"mediaType"`
				Digest    string `json:"digest"`
			} `json:"layers"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(m.Layers) != 1 || m.Layers[0].MediaType != "text/spdx+json" {
			t.Fatalf("attachment manifest %s: want an OCI manifest with one text/spdx+json layer, as cosign attach sbom writes", raw)
		}
		doc, err := Blob(ctx, w.Repository(), m.Layers[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		var spdx struct {
			SPDXVersion string `json:"spdxVersion"`
			Packages    []struct {
				Name        string `json:"name"`
				VersionInfo string `json:"versionInfo"`
				Purpose     string `json:"primaryPackagePurpose"`
			} `json:"packages"`
			Files []struct {
				FileName string `json:"fileName"`
			} `json:"files"`
		}
		if err := json.Unmarshal(doc, &spdx); err != nil {
			t.Fatalf("the attached SBOM is not JSON: %v", err)
		}
		described := false
		for _, p := range spdx.Packages {
			described = described || (p.Purpose == "CONTAINER" && p.VersionInfo == digest)
		}
		if !strings.HasPrefix(spdx.SPDXVersion, "SPDX-2.") || !described || len(spdx.Files) == 0 {
			t.Errorf("SBOM %s: want an SPDX 2 document of the container %s listing its files", doc, digest)
		}
		t.Logf("SBOM of %s: %d packages, %d files; sbom step %s, sbom-attach %s", digest, len(spdx.Packages), len(spdx.Files),
			stepTime(tr, "sbom"), stepTime(tr, "sbom-attach"))
	})

	// The two-arch Pipeline with SBOM "true": each build's SBOM and the
	// index's, which lists each platform's image and SBOM.
	t.Run("index", func(t *testing.T) {
		r := w.Runner(t, w.Catalog)
		r.StepBin = map[string]string{"sbom": bin, "sbom-attach": bin, "sbom-index": bin}
		image := w.Image("sbom-index")
		pr := r.RunPipeline(ctx, PipelineRunRequest{
			Name: "pr-sbom-index", Pipeline: pipelineName,
			Params: Params("GIT_URL", w.Fixture.URL, "IMAGE", image, "TLS_VERIFY", "false", "ALLOW_EMULATION", "true", "SBOM", "true"),
		})
		if pr.Err != nil {
			for n, tr := range pr.TaskRuns {
				t.Logf("TaskRun %s:\n%s", n, tr.Log)
			}
			t.Fatal(pr.Err)
		}
		raw, err := RawManifest(ctx, image)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := ParseIndex(raw)
		if err != nil {
			t.Fatal(err)
		}
		sboms := map[string]string{}
		for _, arch := range []string{"amd64", "arm64"} {
			ref, _ := pr.TaskRuns["build-"+arch].Result("SBOM_IMAGE_REF")
			sboms["linux/"+arch] = ref
		}
		if want := sboms["linux/amd64"] + "," + sboms["linux/arm64"]; pr.Results["SBOMS"] != want {
			t.Errorf("Pipeline result SBOMS %q, want the builds' %q", pr.Results["SBOMS"], want)
		}
		index := pr.Results["IMAGE_DIGEST"]
		summary, err := CheckIndexSBOM(ctx, w.Repository(), index, idx.ByPlatform, sboms)
		if err != nil {
			t.Fatal(err)
		}
		if _, attachment, err := AttachedSBOM(ctx, w.Repository(), index); err != nil || pr.Results["INDEX_SBOM"] != w.Repository()+"@"+attachment {
			t.Errorf("Pipeline result INDEX_SBOM %q, the index's attachment %s (%v)", pr.Results["INDEX_SBOM"], attachment, err)
		}
		t.Log(summary)
	})

	// The manifest Task with SBOM "true" refuses an index whose builds
	// attached no SBOM, naming why, rather than attach a partial one.
	t.Run("index-without-build-sboms", func(t *testing.T) {
		r := w.Runner(t, w.Catalog)
		r.StepBin = map[string]string{"sbom-index": bin, "sbom-attach": bin}
		image := w.Image("sbom-index-missing")
		var refs []string
		for _, arch := range []string{"amd64", "arm64"} {
			tr := r.RunTask(ctx, TaskRunRequest{
				Name: "tr-sbom-missing-" + arch, Task: buildTask,
				Params: Params("GIT_URL", w.Fixture.URL, "IMAGE", image, "TAG_SUFFIX", "-"+arch, "PLATFORM", "linux/"+arch,
					"TLS_VERIFY", "false", "ALLOW_EMULATION", "true"),
			})
			if !tr.Succeeded() {
				t.Fatalf("build %s: %v\n%s", arch, tr.Err, tr.Log)
			}
			ref, _ := tr.Result("IMAGE_REF")
			refs = append(refs, ref)
		}
		tr := r.RunTask(ctx, TaskRunRequest{
			Name: "tr-sbom-index-missing", Task: manifestTask,
			Params: append(Params("IMAGE", image, "TLS_VERIFY", "false", "PLATFORMS", "linux/amd64,linux/arm64", "SBOM", "true"),
				ArrayParam("IMAGES", refs...), ArrayParam("SBOMS", "", "")),
		})
		if tr.Succeeded() {
			t.Fatalf("the manifest Task succeeded with SBOM=true and no build SBOMs:\n%s", tr.Log)
		}
		if n := len(tr.Steps); n == 0 || tr.Steps[n-1].Name != "sbom-index" {
			t.Errorf("steps %+v: want the sbom-index step to fail", tr.Steps)
		}
		if want := "error: a build reported no SBOM (an empty SBOM_IMAGE_REF): with SBOM=true every platform's build must attach one"; !strings.Contains(tr.Log, want) {
			t.Errorf("log lacks %q:\n%s", want, tr.Log)
		}
	})

	t.Run("push-false", func(t *testing.T) {
		tr := run(t, "push-false", "SBOM", "true", "PUSH", "false")
		if !tr.Succeeded() {
			t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
		}
		if !strings.Contains(tr.Log, "no SBOM: PUSH=false, so no image is in a registry to scan or attach an SBOM to") {
			t.Errorf("log does not say why there is no SBOM:\n%s", tr.Log)
		}
		if v, ok := tr.Result("SBOM_IMAGE_DIGEST"); !ok || v != "" {
			t.Errorf("SBOM_IMAGE_DIGEST = %q (written: %v), want written and empty", v, ok)
		}
	})

	t.Run("not-a-bool", func(t *testing.T) {
		tr := run(t, "not-a-bool", "SBOM", "yes")
		if tr.Succeeded() {
			t.Fatalf("TaskRun succeeded with SBOM=yes:\n%s", tr.Log)
		}
		if n := len(tr.Steps); n == 0 || tr.Steps[n-1].Name != "sbom" {
			t.Errorf("steps %+v: want the sbom step to fail", tr.Steps)
		}
		if !strings.Contains(tr.Log, "error: SBOM must be true or false, not 'yes'") {
			t.Errorf("log lacks the reason:\n%s", tr.Log)
		}
	})
}

func stepTime(tr *TaskRun, name string) string {
	for _, s := range tr.Steps {
		if s.Name == name {
			return s.Duration.Round(1e6).String()
		}
	}
	return "-"
}

// sbomTools extracts /syft from the test's syft image and /ko-app/crane from
// its crane image into one directory, for the SBOM steps' PATH.
func sbomTools(ctx context.Context, tb testing.TB, repo string) string {
	tb.Helper()
	imgs := BuildNodeImages(tb, repo)
	bin := filepath.Join(tb.TempDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, x := range []struct{ image, path, name string }{{"SYFT_IMAGE", "syft", "syft"}, {"CRANE_IMAGE", "ko-app/crane", "crane"}} {
		b := imageFile(ctx, tb, imgs.Archive(x.image), x.path)
		if err := os.WriteFile(filepath.Join(bin, x.name), b, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	return bin
}
