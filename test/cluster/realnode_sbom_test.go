package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// realSBOM runs the two-arch Pipeline on the real node with SBOM "true"
// (arm64 under emulation) and reads each architecture's SBOM back from the
// registry by its cosign tag: each lists its own architecture's copy of the
// fixture's cross-compiled binary (by SHA-256) and not the other's.
func (s *stack) realSBOM(t *testing.T, c catalog, n *realNode, w *nodeWorld) {
	ctx := context.Background()
	r, _ := s.runOnRealNode(t, c, n, w, "sbom", map[string]string{"ALLOW_EMULATION": "true", "SBOM": "true"})
	pr, trs := s.succeededRealRun(t, r)
	t.Logf("SBOM run took %s", pr.Status.CompletionTime.Sub(pr.Status.StartTime.Time).Round(1e9))
	repo := w.registry + "/multiarch/app"
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	var refs []string
	children, sboms := map[string]string{}, map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		res := taskRunResults(trs["build-"+arch])
		digest := res["IMAGE_DIGEST"]
		children["linux/"+arch], sboms["linux/"+arch] = digest, res["SBOM_IMAGE_REF"]
		tag := repo + ":sha256-" + strings.TrimPrefix(digest, "sha256:") + ".sbom"
		if res["SBOM_IMAGE_URL"] != tag || res["SBOM_IMAGE_REF"] != repo+"@"+res["SBOM_IMAGE_DIGEST"] {
			t.Fatalf("build-%s SBOM results %v, want the tag %s", arch, res, tag)
		}
		refs = append(refs, res["SBOM_IMAGE_REF"])
		raw, err := realbuild.RawManifest(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		if got := "sha256:" + sum(raw); got != res["SBOM_IMAGE_DIGEST"] {
			t.Errorf("%s holds %s, SBOM_IMAGE_DIGEST says %s", tag, got, res["SBOM_IMAGE_DIGEST"])
		}
		var m struct {
			Layers []struct{ MediaType, Digest string } `json:"layers"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 || m.Layers[0].MediaType != "text/spdx+json" {
			t.Fatalf("%s: %s (%v): want one text/spdx+json layer", tag, raw, err)
		}
		doc, err := realbuild.Blob(ctx, repo, m.Layers[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		var spdx struct {
			Packages []struct {
				Name, VersionInfo string
				ExternalRefs      []struct{ ReferenceLocator string } `json:"externalRefs"`
			} `json:"packages"`
			Files []struct {
				FileName  string
				Checksums []struct{ Algorithm, ChecksumValue string }
			} `json:"files"`
		}
		if err := json.Unmarshal(doc, &spdx); err != nil {
			t.Fatal(err)
		}
		fileSums := map[string]string{}
		for _, f := range spdx.Files {
			for _, c := range f.Checksums {
				if c.Algorithm == "SHA256" {
					fileSums[c.ChecksumValue] = f.FileName
				}
			}
		}
		other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[arch]
		own, theirs := sum(w.fixture.Binaries[arch]), sum(w.fixture.Binaries[other])
		if fileSums[own] == "" || fileSums[theirs] != "" {
			t.Errorf("%s SBOM files %v: want bin/app-%s's SHA-256 %s and not bin/app-%s's %s", arch, fileSums, arch, own, other, theirs)
		}
		var purls []string
		for _, p := range spdx.Packages {
			for _, e := range p.ExternalRefs {
				if strings.HasPrefix(e.ReferenceLocator, "pkg:oci/") || strings.HasPrefix(e.ReferenceLocator, "pkg:golang/") {
					purls = append(purls, e.ReferenceLocator)
				}
			}
		}
		root := fmt.Sprintf("arch=%s", arch)
		found := false
		for _, p := range purls {
			found = found || (strings.HasPrefix(p, "pkg:oci/") && strings.Contains(p, strings.TrimPrefix(digest, "sha256:")) && strings.HasSuffix(p, root))
		}
		if !found {
			t.Errorf("%s SBOM purls %v: want the image pkg:oci/...@%s?%s", arch, purls, digest, root)
		}
		t.Logf("%s SBOM %s (%d bytes): %s is %s; purls %v", arch, res["SBOM_IMAGE_REF"], len(doc), fileSums[own], own, purls)
	}
	t.Logf("per-arch SBOMs: %v", refs)
	// The index's SBOM, made by the manifest pod's sbom-index step in the
	// crane image (busybox's sed, tr and sha1sum).
	index := taskRunResults(trs["manifest"])["IMAGE_DIGEST"]
	summary, err := realbuild.CheckIndexSBOM(ctx, repo, index, children, sboms)
	if err != nil {
		t.Fatalf("%v\nsbom-index step:\n%s", err, s.stepLog(t, c.ns(), trs["manifest"], "step-sbom-index"))
	}
	t.Log(summary)
	indexSBOM := taskRunResults(trs["manifest"])["SBOM_IMAGE_REF"]
	for _, r := range pr.Status.Results {
		if r.Name == "INDEX_SBOM" && r.Value.StringVal != indexSBOM {
			t.Errorf("PipelineRun result INDEX_SBOM %q, the manifest's SBOM_IMAGE_REF %q", r.Value.StringVal, indexSBOM)
		}
	}

	// The attachments are signed by Chains as the images are (it signs every
	// *IMAGE_URL/*IMAGE_DIGEST result pair): cosign verifies the arm64
	// image's SBOM and the index's with the public key.
	ch := s.startChains(t, c.ns())
	ch.waitSigned(t, "the SBOM run's TaskRuns", func(ctx context.Context) (map[string]map[string]string, error) {
		list, err := r.taskRuns(ctx)
		if err != nil {
			return nil, err
		}
		m := map[string]map[string]string{}
		for _, task := range []string{"build-amd64", "build-arm64", "manifest"} {
			if list[task] == nil {
				return nil, fmt.Errorf("no TaskRun for %s", task)
			}
			m["TaskRun "+list[task].Name] = list[task].Annotations
		}
		return m, nil
	})
	for _, ref := range []string{sboms["linux/arm64"], indexSBOM} {
		digest := ref[strings.LastIndex(ref, "@")+1:]
		out, _, err := ch.verify(t, "verify", ref)
		if err != nil {
			t.Errorf("cosign verify %s (an attached SBOM): %v\n%s\nChains' errors and warnings:\n%s", ref, err, out, ch.errorLines())
		} else if !strings.Contains(out, `"docker-manifest-digest":"`+digest+`"`) {
			t.Errorf("cosign verify %s: no signed payload names %s:\n%s", ref, digest, out)
		} else {
			t.Logf("cosign verify %s (an attached SBOM): payload %s", ref, strings.TrimSpace(out))
		}
	}
}
