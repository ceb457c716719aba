package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-multiarch/tekton-multiarch/test/realbuild"
)

// statement is the part of an in-toto statement with an SLSA v0.2
// predicate (Chains' slsa/v1 format) that the test checks.
type statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate struct {
		BuildType string `json:"buildType"`
		Materials []struct {
			URI    string            `json:"uri"`
			Digest map[string]string `json:"digest"`
		} `json:"materials"`
		BuildConfig struct {
			Tasks []struct {
				Name    string             `json:"name"`
				Results []v1.TaskRunResult `json:"results"`
			} `json:"tasks"`
		} `json:"buildConfig"`
	} `json:"predicate"`
}

// chainsSigned runs Chains against the two-arch run emulated-arm64 made (r,
// pushed to w.image(tag)), then checks with the real cosign CLI, offline,
// with the public key: the index and every per-arch image verify, their
// SLSA provenance verifies and names that digest, the git URL and the
// commit cloned, the PipelineRun's provenance records the build tasks'
// results, and a tag moved to an image the catalog did not build fails.
func (s *stack) chainsSigned(t *testing.T, r *prRun, w *nodeWorld, tag string) {
	ctx := context.Background()
	ch := s.startChains(t, r.c.ns())
	_, trs := s.succeededRealRun(t, r)
	ch.waitSigned(t, "the PipelineRun and its TaskRuns", func(ctx context.Context) (map[string]map[string]string, error) {
		got, err := r.get(ctx)
		if err != nil {
			return nil, err
		}
		list, err := r.taskRuns(ctx)
		if err != nil {
			return nil, err
		}
		m := map[string]map[string]string{"PipelineRun " + got.Name: got.Annotations}
		for _, task := range []string{"build-amd64", "build-arm64", "manifest"} {
			tr := list[task]
			if tr == nil {
				return nil, fmt.Errorf("no TaskRun for %s", task)
			}
			m["TaskRun "+tr.Name] = tr.Annotations
		}
		return m, nil
	})

	repo := w.registry + "/multiarch/app"
	index := taskRunResults(trs["manifest"])["IMAGE_DIGEST"]
	arch := map[string]string{
		"amd64": taskRunResults(trs["build-amd64"])["IMAGE_DIGEST"],
		"arm64": taskRunResults(trs["build-arm64"])["IMAGE_DIGEST"],
	}
	// IMAGES, the children Chains signs from the manifest TaskRun (it does not
	// recurse into an index), must name each build's image; with or without
	// the index itself (both forms are Chains' IMAGES).
	images := taskRunResults(trs["manifest"])["IMAGES"]
	for a, d := range arch {
		if !strings.Contains(images, repo+"@"+d) {
			t.Errorf("manifest IMAGES %q does not list the %s image %s@%s", images, a, repo, d)
		}
	}

	// One platform as README.md shows it: its digest read from the index.
	raw, err := realbuild.RawManifest(ctx, w.image(tag))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := realbuild.ParseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	if idx.ByPlatform["linux/arm64"] != arch["arm64"] {
		t.Errorf("the index's linux/arm64 digest %s, the arm64 build's %s", idx.ByPlatform["linux/arm64"], arch["arm64"])
	}

	commit, gitURL := w.fixture.Commit, w.fixture.URL
	wantBuiltOn := map[string][2]string{"amd64": {"x86_64", "false"}, "arm64": {"x86_64", "true"}}
	refs := []string{repo + "@" + index, repo + "@" + arch["amd64"], repo + "@" + arch["arm64"]}
	for _, ref := range refs {
		digest := ref[strings.LastIndex(ref, "@")+1:]
		out, _, err := ch.verify(t, "verify", ref)
		if err != nil {
			t.Errorf("cosign verify %s: %v\n%s", ref, err, out)
		} else if !strings.Contains(out, `"docker-manifest-digest":"`+digest+`"`) {
			t.Errorf("cosign verify %s: no signed payload names %s:\n%s", ref, digest, out)
		} else {
			t.Logf("cosign verify %s: payload %s", ref, strings.TrimSpace(out))
		}
		out, _, err = ch.verify(t, "verify-attestation", ref, "--type", "slsaprovenance")
		if err != nil {
			t.Errorf("cosign verify-attestation --type slsaprovenance %s: %v\n%s\nChains' errors and warnings:\n%s", ref, err, out, ch.errorLines())
			continue
		}
		sts := decodeStatements(t, out)
		if len(sts) == 0 {
			t.Errorf("cosign verify-attestation %s: no attestation", ref)
		}
		var git, buildResults, native bool
		for _, st := range sts {
			var subjects []string
			for _, sub := range st.Subject {
				subjects = append(subjects, sub.Name+"@sha256:"+sub.Digest["sha256"])
			}
			if !slices.Contains(subjects, ref) {
				t.Errorf("%s: an attestation (%s) has subjects %v, not this image", ref, st.Predicate.BuildType, subjects)
			}
			var materials []string
			for _, m := range st.Predicate.Materials {
				for alg, d := range m.Digest {
					materials = append(materials, m.URI+"@"+alg+":"+d)
				}
				if strings.Contains(m.URI, gitURL) && m.Digest["sha1"] == commit {
					git = true
				}
			}
			t.Logf("%s: provenance %s: subjects %v, materials %v", ref, st.Predicate.BuildType, subjects, materials)
			for _, task := range st.Predicate.BuildConfig.Tasks {
				if !strings.HasPrefix(task.Name, "build-") {
					continue
				}
				res := map[string]string{}
				for _, r := range task.Results {
					res[r.Name] = r.Value.StringVal
				}
				a := strings.TrimPrefix(task.Name, "build-")
				if res["IMAGE_DIGEST"] == arch[a] {
					buildResults = true
				}
				// What a policy reads to refuse an emulated build: the node's
				// own architecture as the build step saw it, and whether the
				// image is for another. This run builds arm64 on the amd64
				// node, under emulation.
				if want := wantBuiltOn[a]; res["BUILD_ARCH"] != want[0] || res["EMULATED"] != want[1] {
					t.Errorf("%s: provenance of %s records BUILD_ARCH %q, EMULATED %q; want %q, %q", ref, task.Name, res["BUILD_ARCH"], res["EMULATED"], want[0], want[1])
				} else {
					native = true
				}
			}
		}
		if !native {
			t.Errorf("%s: no provenance records the builds' BUILD_ARCH and EMULATED results", ref)
		}
		if !git {
			t.Errorf("%s: no provenance names the git material %s at commit %s", ref, gitURL, commit)
		}
		if !buildResults {
			t.Errorf("%s: no provenance (the PipelineRun's, deep inspection) records the build tasks' IMAGE_DIGEST results", ref)
		}
	}

	// A tag moved to an image the catalog did not build: its digest has no
	// signature by this key, so cosign refuses the tag.
	realbuild.PushBusyboxBase(t, w.image(tag))
	out, stderr, err := ch.verify(t, "verify", w.image(tag))
	if err == nil {
		t.Errorf("cosign verify %s passed after the tag was moved to an unsigned busybox image:\n%s", w.image(tag), out)
	} else if !strings.Contains(stderr, "no signatures found") && !strings.Contains(stderr, "no matching signatures") {
		t.Errorf("cosign verify %s failed, but not for want of a signature: %v\n%s", w.image(tag), err, stderr)
	}
}

// decodeStatements reads cosign verify-attestation's output: one DSSE
// envelope per line, its payload the base64 of an in-toto statement.
func decodeStatements(t testing.TB, out string) []statement {
	t.Helper()
	var sts []statement
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var env struct {
			PayloadType string `json:"payloadType"`
			Payload     string `json:"payload"`
		}
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Fatalf("cosign verify-attestation output: %v\n%s", err, line)
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatalf("attestation payload: %v", err)
		}
		var st statement
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatalf("attestation statement: %v\n%s", err, raw)
		}
		if st.PredicateType != "https://slsa.dev/provenance/v0.2" {
			t.Errorf("predicate type %q, want SLSA v0.2 (Chains' slsa/v1)", st.PredicateType)
		}
		sts = append(sts, st)
	}
	return sts
}
