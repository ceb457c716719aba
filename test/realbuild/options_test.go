package realbuild

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBuildOptions runs the build options of issue 17 through the generated
// Tasks and Pipeline: trusted CAs against a registry behind a CA the test
// makes, TARGET, build secrets, OCI labels and index annotations, and
// build-only runs.
func TestBuildOptions(t *testing.T) {
	w := NewWorld(t)
	ctx := context.Background()
	fx := w.Options(t)
	// wsDir lays files out as the kubelet's atomic writer does in a Secret
	// or ConfigMap volume, which is what these workspaces are bound to:
	// the files in a hidden timestamped directory, ..data a link to it, and
	// each key a link through ..data. The scripts must take the keys and
	// nothing of the rest.
	wsDir := func(t *testing.T, files map[string]string) string {
		d := t.TempDir()
		ts := "..2026_12_02_17_00_00.123456789"
		if err := os.Mkdir(filepath.Join(d, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ts, filepath.Join(d, "..data")); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(d, ts, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(d, name)); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	amd64 := func(image string, nv ...string) []string {
		return append([]string{"GIT_URL", fx.URL, "IMAGE", image, "PLATFORM", "linux/amd64"}, nv...)
	}
	failsWith := func(t *testing.T, tr *TaskRun, want string) {
		t.Helper()
		if tr.Succeeded() {
			t.Fatalf("TaskRun %s succeeded, want it to fail with %q:\n%s", tr.Object.Name, want, tr.Log)
		}
		if !strings.Contains(tr.Log, want) {
			t.Errorf("TaskRun %s failed, but its log lacks %q:\n%s", tr.Object.Name, want, tr.Log)
		}
	}

	t.Run("ca-bundle", func(t *testing.T) {
		dir := t.TempDir()
		ca := NewTestCA(t, dir)
		reg := StartTLSRegistry(t, filepath.Join(dir, "registry"), ca)
		caWS := wsDir(t, map[string]string{"ca.crt": string(ca.CertPEM), "README": "not a certificate, not a *.crt or *.pem key: ignored\n"})
		// A base on the TLS registry, for a FROM pull through the CA.
		base := reg.Addr + "/base/busybox:1.35"
		if _, err := Skopeo(ctx, "copy", "--quiet", "--src-tls-verify=false", "--dest-cert-dir", caWS, "docker://"+w.BusyboxBase(t), "docker://"+base); err != nil {
			t.Fatal(err)
		}
		image := reg.Addr + "/multiarch/app:v1"

		t.Run("without-the-ca", func(t *testing.T) {
			tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
				Name: "tr-no-ca", Task: buildTask, Params: Params(amd64(image+"-noca", "TLS_VERIFY", "true")...),
			})
			failsWith(t, tr, "certificate signed by unknown authority")
			if tags, err := reg.Tags("multiarch/app"); err != nil || len(tags) > 0 {
				t.Errorf("tags %v (%v) after a failed push, want none", tags, err)
			}
		})

		t.Run("from-pull", func(t *testing.T) {
			tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
				Name: "tr-ca-from", Task: buildTask,
				Params: append(Params(amd64(image+"-from", "TLS_VERIFY", "true", "DOCKERFILE", "./Dockerfile.frombase",
					"SOURCE_DATE_EPOCH", "1700000000")...), ArrayParam("BUILD_ARGS", "BASE="+base)),
				Workspaces: map[string]string{"ca-bundle": caWS},
			})
			if !tr.Succeeded() {
				t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
			}
			if want := "trusting the system's CAs and 1 more from workspace ca-bundle: ca.crt"; !strings.Contains(tr.Log, want) {
				t.Errorf("log lacks %q", want)
			}
			ref, _ := tr.Result("IMAGE_REF")
			if _, err := FileFromImage(ctx, ref, t.TempDir(), "/bin/busybox"); err != nil {
				t.Errorf("the base pulled through the CA is not in the image: %v", err)
			}
			labels, err := Labels(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			// SOURCE_DATE_EPOCH 1700000000 is 2023-11-14T22:13:20Z.
			if got := labels["org.opencontainers.image.created"]; got != "2023-11-14T22:13:20Z" {
				t.Errorf("created label %q, want 2023-11-14T22:13:20Z (SOURCE_DATE_EPOCH)", got)
			}
		})

		// The whole Pipeline against the TLS registry: both builds and the
		// manifest (push, and reading the index back) trust the CA. The
		// manifest step runs the image's buildah (v1.40.1), which annotates
		// an index; the host's 1.28 cannot.
		t.Run("pipeline-labels-annotations", func(t *testing.T) {
			r := w.Runner(t, w.Catalog)
			r.StepBin = map[string]string{"manifest": NodeBuildah(ctx, t, w.Repo)}
			start := time.Now().UTC().Truncate(time.Second)
			run := r.RunPipeline(ctx, PipelineRunRequest{
				Name: "pr-ca", Pipeline: pipelineName,
				Params: append(Params("GIT_URL", fx.URL, "IMAGE", image, "TLS_VERIFY", "true", "ALLOW_EMULATION", "true"),
					ArrayParam("LABELS", "com.example.team=payments", "org.opencontainers.image.title=app"),
					ArrayParam("ANNOTATIONS", "com.example.release=rc1")),
				Workspaces: map[string]string{"ca-bundle": caWS},
			})
			if run.Err != nil {
				for n, tr := range run.TaskRuns {
					t.Logf("%s:\n%s", n, tr.Log)
				}
				t.Fatalf("PipelineRun failed: %v", run.Err)
			}
			// Reproducible by default: with SOURCE_DATE_EPOCH unset, every
			// architecture and the index say they were created at the
			// commit's time, which the clone reports, not at the build's.
			commitTime, _ := run.TaskRuns["build-amd64"].Result("COMMIT_TIME")
			secs, err := strconv.ParseInt(commitTime, 10, 64)
			if err != nil {
				t.Fatalf("build-amd64 COMMIT_TIME %q is not seconds since the epoch: %v", commitTime, err)
			}
			wantCreated := time.Unix(secs, 0).UTC()
			if !wantCreated.Before(start) {
				t.Fatalf("the fixture's commit time %s is not before the run's start %s: the check could not tell them apart", wantCreated, start)
			}
			created := func(what, v string) {
				ts, err := time.Parse(time.RFC3339, v)
				if err != nil || !ts.Equal(wantCreated) {
					t.Errorf("%s created %q (%v): want the commit's time %s", what, v, err, wantCreated.Format(time.RFC3339))
				}
			}
			for _, arch := range arches {
				ref, _ := run.TaskRuns["build-"+arch].Result("IMAGE_REF")
				labels, err := Labels(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range map[string]string{
					"org.opencontainers.image.source":   fx.URL,
					"org.opencontainers.image.revision": fx.Commit,
					"org.opencontainers.image.title":    "app",
					"com.example.team":                  "payments",
				} {
					if labels[k] != v {
						t.Errorf("%s: label %s = %q, want %q (all: %v)", arch, k, labels[k], v, labels)
					}
				}
				created(arch, labels["org.opencontainers.image.created"])
			}
			digest := run.Results["IMAGE_DIGEST"]
			ann, err := IndexAnnotations(ctx, reg.Addr+"/multiarch/app@"+digest)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{
				"org.opencontainers.image.source":   fx.URL,
				"org.opencontainers.image.revision": fx.Commit,
				"com.example.release":               "rc1",
			} {
				if ann[k] != v {
					t.Errorf("index annotation %s = %q, want %q (all: %v)", k, ann[k], v, ann)
				}
			}
			created("index", ann["org.opencontainers.image.created"])
			raw, err := RawManifest(ctx, image)
			if err != nil {
				t.Fatal(err)
			}
			ix, err := ParseIndex(raw)
			if err != nil {
				t.Fatal(err)
			}
			if ix.Entries != 2 || ix.ByPlatform["linux/amd64"] == "" || ix.ByPlatform["linux/arm64"] == "" {
				t.Errorf("index %+v, want linux/amd64 and linux/arm64", ix)
			}
		})
	})

	t.Run("target", func(t *testing.T) {
		image := w.Image("target")
		tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-target", Task: buildTask,
			Params: Params(amd64(image, "TLS_VERIFY", "false", "DOCKERFILE", "./Dockerfile.stages", "TARGET", "one")...),
		})
		if !tr.Succeeded() {
			t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
		}
		ref, _ := tr.Result("IMAGE_REF")
		if got, err := FileFromImage(ctx, ref, t.TempDir(), "/stage-one"); err != nil || string(got) != "options fixture\n" {
			t.Errorf("/stage-one = %q (%v), want the fixture's stage.txt", got, err)
		}
		if _, err := FileFromImage(ctx, ref, t.TempDir(), "/stage-two"); err == nil {
			t.Error("the image has /stage-two: the last stage was built, not TARGET")
		}

		bad := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-target-unknown", Task: buildTask,
			Params: Params(amd64(w.Image("target-unknown"), "TLS_VERIFY", "false", "DOCKERFILE", "./Dockerfile.stages", "TARGET", "three")...),
		})
		failsWith(t, bad, "error: TARGET 'three' is not a stage of ./Dockerfile.stages: its named stages are: one two")
	})

	t.Run("build-secrets", func(t *testing.T) {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		secret := "s3cret-" + hex.EncodeToString(b)
		sum := sha256.Sum256([]byte(secret))
		ws := wsDir(t, map[string]string{"token": secret, "other.key": "another secret\n"})
		tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-secret", Task: buildTask,
			Params: append(Params(amd64(w.Image("secret"), "TLS_VERIFY", "false", "DOCKERFILE", "./Dockerfile.secret")...),
				ArrayParam("BUILD_ARGS", "BASE="+w.BusyboxBase(t))),
			Workspaces: map[string]string{"build-secrets": ws},
		})
		if !tr.Succeeded() {
			t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
		}
		if want := "build secrets (RUN --mount=type=secret,id=...): other.key token"; !strings.Contains(tr.Log, want) {
			t.Errorf("log lacks %q", want)
		}
		ref, _ := tr.Result("IMAGE_REF")
		got, err := FileFromImage(ctx, ref, t.TempDir(), "/token.sha256")
		if err != nil {
			t.Fatal(err)
		}
		if want := hex.EncodeToString(sum[:]) + "\n"; string(got) != want {
			t.Fatalf("/token.sha256 = %q, want %q: the RUN step did not read the secret", got, want)
		}
		holds, err := ImageHolds(ctx, ref, t.TempDir(), []byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		if len(holds) > 0 {
			t.Errorf("the secret is in the pushed image's blobs %v", holds)
		}
		if strings.Contains(tr.Log, secret) {
			t.Error("the secret is in the TaskRun's log")
		}
		for _, r := range tr.Object.Status.Results {
			if strings.Contains(r.Value.StringVal, secret) {
				t.Errorf("the secret is in result %s", r.Name)
			}
		}

		badWS := wsDir(t, map[string]string{"bad key": "x"})
		bad := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-secret-bad-key", Task: buildTask,
			Params:     Params(amd64(w.Image("secret-bad"), "TLS_VERIFY", "false")...),
			Workspaces: map[string]string{"build-secrets": badWS},
		})
		failsWith(t, bad, "error: workspace build-secrets: key 'bad key' cannot be a build secret id")
		if strings.Contains(bad.Log, "STEP 1/") {
			t.Errorf("buildah ran with a bad secret key:\n%s", bad.Log)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-bad-label", Task: buildTask,
			Params: append(Params(amd64(w.Image("bad-label"), "TLS_VERIFY", "false")...), ArrayParam("LABELS", "a=b", "novalue")),
		})
		failsWith(t, tr, "error: LABELS entry 'novalue' is not KEY=VALUE")
		m := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-bad-annotation", Task: manifestTask,
			Params: append(Params("IMAGE", w.Image("bad-annotation"), "PLATFORMS", "linux/amd64", "TLS_VERIFY", "false"),
				ArrayParam("IMAGES", w.Repository()+"@sha256:"+strings.Repeat("a", 64)), ArrayParam("ANNOTATIONS", "=empty-key")),
		})
		failsWith(t, m, "error: ANNOTATIONS entry '=empty-key' is not KEY=VALUE")
		e := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-bad-index-epoch", Task: manifestTask,
			Params: append(Params("IMAGE", w.Image("bad-epoch"), "PLATFORMS", "linux/amd64", "TLS_VERIFY", "false", "SOURCE_DATE_EPOCH", "1.5e9"),
				ArrayParam("IMAGES", w.Repository()+"@sha256:"+strings.Repeat("a", 64))),
		})
		failsWith(t, e, "error: SOURCE_DATE_EPOCH must be empty (the commit's time, the default), a whole number of seconds since 1970-01-01 UTC (e.g. git log -1 --format=%ct) or now (the build's own time), not '1.5e9'")
	})

	// The source annotation drops the credentials a URL may carry; shown
	// by the manifest's build-only listing (no registry needed), with
	// digests that exist nowhere: PUSH=false reads none.
	t.Run("source-without-credentials", func(t *testing.T) {
		a, b := w.Repository()+"@sha256:"+strings.Repeat("a", 64), w.Repository()+"@sha256:"+strings.Repeat("b", 64)
		m := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-source-url", Task: manifestTask,
			Params: append(Params("IMAGE", w.Image("source-url"), "PLATFORMS", "linux/amd64,linux/arm64", "PUSH", "false",
				"GIT_URL", "https://builder:tok3n@git.example.com/me/app.git", "SOURCE_COMMITS", fx.Commit+" "+fx.Commit,
				"SOURCE_DATE_EPOCH", "0"), ArrayParam("IMAGES", a, b)),
		})
		if !m.Succeeded() {
			t.Fatalf("TaskRun failed: %v\n%s", m.Err, m.Log)
		}
		for _, want := range []string{
			"  linux/amd64 " + a + "\n", "  linux/arm64 " + b + "\n",
			"  org.opencontainers.image.source=https://git.example.com/me/app.git\n",
			"  org.opencontainers.image.revision=" + fx.Commit + "\n",
			"  org.opencontainers.image.created=1970-01-01T00:00:00Z\n",
		} {
			if !strings.Contains(m.Log, want) {
				t.Errorf("log lacks %q:\n%s", want, m.Log)
			}
		}
		if strings.Contains(m.Log, "tok3n") {
			t.Errorf("the URL's password is in the log:\n%s", m.Log)
		}
		if got, _ := m.Result("IMAGE_DIGEST"); got != "" {
			t.Errorf("IMAGE_DIGEST %q, want empty", got)
		}
		dup := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-dup-digest", Task: manifestTask,
			Params: append(Params("IMAGE", w.Image("dup"), "PLATFORMS", "linux/amd64,linux/arm64", "PUSH", "false"), ArrayParam("IMAGES", a, a)),
		})
		failsWith(t, dup, "error: IMAGES holds sha256:"+strings.Repeat("a", 64)+" twice")
	})

	// Build-only: both architectures built and checked, with the layer
	// cache on (read only), and the registry exactly as before.
	t.Run("build-only", func(t *testing.T) {
		before, err := w.Registry.Contents()
		if err != nil {
			t.Fatal(err)
		}
		image := w.Image("pr-1")
		run := w.Runner(t, w.Catalog).RunPipeline(ctx, PipelineRunRequest{
			Name: "pr-build-only", Pipeline: pipelineName,
			Params: Params("GIT_URL", fx.URL, "IMAGE", image, "TLS_VERIFY", "false", "ALLOW_EMULATION", "true", "PUSH", "false", "CACHE", "true"),
		})
		if run.Err != nil {
			for n, tr := range run.TaskRuns {
				t.Logf("%s:\n%s", n, tr.Log)
			}
			t.Fatalf("PipelineRun failed: %v", run.Err)
		}
		after, err := w.Registry.Contents()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(before, after) {
			t.Errorf("the registry changed in a build-only run:\nbefore %v\nafter  %v", before, after)
		}
		digests := map[string]bool{}
		for _, arch := range arches {
			tr := run.TaskRuns["build-"+arch]
			d, _ := tr.Result("IMAGE_DIGEST")
			ref, _ := tr.Result("IMAGE_REF")
			if want := fmt.Sprintf("built %s@%s (linux/%s), not pushed (PUSH=false)", w.Repository(), d, arch); !strings.Contains(tr.Log, want) || ref != w.Repository()+"@"+d {
				t.Errorf("build-%s: IMAGE_REF %q, log lacks %q:\n%s", arch, ref, want, tr.Log)
			}
			if !strings.Contains(tr.Log, "read only (PUSH=false") || strings.Contains(tr.Log, "Pushing cache") {
				t.Errorf("build-%s: the cache was not read-only:\n%s", arch, tr.Log)
			}
			digests[d] = true
		}
		if len(digests) != 2 {
			t.Errorf("build digests %v, want two different ones", digests)
		}
		m := run.TaskRuns["manifest"]
		if !strings.Contains(m.Log, "build-only (PUSH=false): nothing pushed; the index would hold:") {
			t.Errorf("manifest log:\n%s", m.Log)
		}
		if got := run.Results["IMAGE_DIGEST"]; got != "" {
			t.Errorf("Pipeline IMAGE_DIGEST %q, want empty: no index exists", got)
		}
	})
}
