package realbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// TestMain makes the test binary double as the git-sync stand-in (the harness
// links it as <TaskRun>/bin/git-sync and points the clone step's GIT_SYNC at
// it) and as the step confinement wrapper (<TaskRun>/bin/step-confine).
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case GitSyncName:
		os.Exit(GitSyncMain(os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
	case ConfineName:
		os.Exit(ConfineMain(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

const (
	pipelineName  = "multiarch-build"
	buildTask     = "buildah-build"
	manifestTask  = "buildah-manifest"
	gitSyncTask   = "git-sync"
	guardMessage  = "this node is linux/amd64 but PLATFORM is linux/arm64: building here would need emulation"
	emulationWarn = "warning: building linux/arm64 on a linux/amd64 node under emulation (ALLOW_EMULATION=true)"
)

var arches = []string{"amd64", "arm64"}

func TestRealBuild(t *testing.T) {
	w := NewWorld(t)
	ctx := context.Background()

	t.Run("pipeline", func(t *testing.T) {
		// The Pipeline passes no STORAGE: build.storage, the Task's default, is
		// how a mode reaches a PipelineRun. The committed catalog is auto; the
		// golden annotation-vfs tree is vfs (kept equal to the generator's
		// output by the golden tests); the other two are generated here. On
		// this machine the steps run as root, so auto takes the kernel's overlay.
		vfs, err := LoadCatalog(filepath.Join(w.Repo, "generator", "catalog", "testdata", "golden", "annotation-vfs", "want"))
		if err != nil {
			t.Fatal(err)
		}
		overlay := GenerateCatalog(t, "build: {storage: overlay}")
		fuse := GenerateCatalog(t, "build: {storage: fuse-overlayfs}")
		for _, c := range []*Catalog{vfs, overlay, fuse} {
			sameScripts(t, w.Catalog, c)
		}
		for _, c := range []struct {
			storage, took, driver string
			cat                   *Catalog
		}{
			{"auto", "overlay", "overlay", w.Catalog},
			{"overlay", "overlay", "overlay", overlay},
			{"fuse-overlayfs", "fuse-overlayfs", "overlay", fuse},
			{"vfs", "vfs", "vfs", vfs},
		} {
			t.Run(c.storage, func(t *testing.T) {
				if got := paramDefault(c.cat, buildTask, "STORAGE"); got != c.storage {
					t.Fatalf("catalog %s: buildah-build's STORAGE default is %q, want %q", c.cat.Dir, got, c.storage)
				}
				image := w.Image("v1-" + c.storage)
				run := w.Runner(t, c.cat).RunPipeline(ctx, PipelineRunRequest{
					Name: "pr-" + c.storage, Pipeline: pipelineName,
					// This machine is amd64: the arm64 build needs the emulation opt-in
					// (the Dockerfile has no RUN step, so nothing is emulated).
					Params: Params("GIT_URL", w.Fixture.URL, "IMAGE", image, "TLS_VERIFY", "false", "ALLOW_EMULATION", "true"),
				})
				checkTwoArchRun(ctx, t, w, run, image, c.took, c.driver)
			})
		}
	})

	t.Run("arch-guard", func(t *testing.T) {
		image := w.Image("guard")
		run := w.Runner(t, w.Catalog).RunPipeline(ctx, PipelineRunRequest{
			Name: "pr-guard", Pipeline: pipelineName,
			Params: Params("GIT_URL", w.Fixture.URL, "IMAGE", image, "TLS_VERIFY", "false"),
		})
		if run.Err == nil {
			t.Fatal("the PipelineRun succeeded, but building arm64 on amd64 without ALLOW_EMULATION must fail")
		}
		arm := run.TaskRuns["build-arm64"]
		if arm == nil || arm.Succeeded() {
			t.Fatalf("build-arm64 did not fail: %+v", arm)
		}
		if !strings.Contains(arm.Log, guardMessage) {
			t.Errorf("build-arm64's log lacks the guard's message %q:\n%s", guardMessage, arm.Log)
		}
		if got := arm.StepNames(); !slices.Equal(got, []string{"clone", "build"}) || arm.Steps[1].ExitCode != 1 {
			t.Errorf("build-arm64 steps %v (%+v), want clone then build exiting 1", got, arm.Steps)
		}
		if strings.Contains(arm.Log, "STEP 1/") {
			t.Errorf("buildah ran although the guard refused:\n%s", arm.Log)
		}
		amd := run.TaskRuns["build-amd64"]
		if amd == nil || !amd.Succeeded() {
			t.Fatalf("build-amd64 is native here and must succeed without ALLOW_EMULATION: %+v", amd)
		}
		if strings.Contains(amd.Log, "under emulation") {
			t.Errorf("the native amd64 build warned about emulation:\n%s", amd.Log)
		}
		if _, ok := run.TaskRuns["manifest"]; ok {
			t.Error("manifest ran after a failed build")
		}
		tags, err := w.Registry.Tags("multiarch/app")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(tags, "guard-amd64") || slices.Contains(tags, "guard") || slices.Contains(tags, "guard-arm64") {
			t.Errorf("registry tags %v: want guard-amd64 pushed, neither guard nor guard-arm64", tags)
		}
	})

	t.Run("arm64-run-step-under-emulation", func(t *testing.T) {
		EnsureArm64Emulation(t)
		image := w.Image("run")
		tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
			Name: "tr-run-arm64", Task: buildTask,
			Params: Params("GIT_URL", w.Fixture.URL, "IMAGE", image, "TAG_SUFFIX", "-arm64", "PLATFORM", "linux/arm64",
				"ALLOW_EMULATION", "true", "DOCKERFILE", "./Dockerfile.run", "TLS_VERIFY", "false"),
		})
		if !tr.Succeeded() {
			t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
		}
		if !strings.Contains(tr.Log, emulationWarn) {
			t.Errorf("log lacks %q", emulationWarn)
		}
		ref, _ := tr.Result("IMAGE_REF")
		cfg, err := Config(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != "arm64" || cfg.OS != "linux" {
			t.Errorf("config says %s/%s, want linux/arm64", cfg.OS, cfg.Architecture)
		}
		got, err := FileFromImage(ctx, ref, t.TempDir(), "/built-on")
		if err != nil {
			t.Fatal(err)
		}
		// Written by the arm64 binary during the build: it ran, and the kernel
		// (through qemu-user) told it it was on aarch64.
		if string(got) != "arm64 aarch64\n" {
			t.Errorf("/built-on = %q, want %q", got, "arm64 aarch64\n")
		}
	})

	t.Run("layer-cache", func(t *testing.T) { testLayerCache(ctx, t, w) })
	t.Run("sbom", func(t *testing.T) { testSBOM(ctx, t, w) })

	// Reproducible by default: two builds of one commit in fresh storage,
	// no SOURCE_DATE_EPOCH, give one digest; "now" another.
	t.Run("source-date-epoch", func(t *testing.T) {
		build := func(name string, nv ...string) (string, *TaskRun) {
			tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
				Name: "tr-epoch-" + name, Task: buildTask,
				Params: Params(append([]string{"GIT_URL", w.Fixture.URL, "IMAGE", w.Image("epoch-" + name), "PLATFORM", "linux/amd64", "TLS_VERIFY", "false"}, nv...)...),
			})
			if !tr.Succeeded() {
				t.Fatalf("%s: %v\n%s", name, tr.Err, tr.Log)
			}
			d, _ := tr.Result("IMAGE_DIGEST")
			return d, tr
		}
		first, tr := build("first")
		again, _ := build("again")
		ct, _ := tr.Result("COMMIT_TIME")
		if want := "SOURCE_DATE_EPOCH: " + ct + " ("; ct == "" || !strings.Contains(tr.Log, want) {
			t.Errorf("COMMIT_TIME %q; log lacks %q:\n%s", ct, want, tr.Log)
		}
		now, trNow := build("now", "SOURCE_DATE_EPOCH", "now")
		if !strings.Contains(trNow.Log, "SOURCE_DATE_EPOCH: none, the build's own time (SOURCE_DATE_EPOCH=now)") {
			t.Errorf("the now build's log does not say so:\n%s", trNow.Log)
		}
		t.Logf("commit time %s: %s and %s; now: %s", ct, first, again, now)
		if first != again || now == first {
			t.Errorf("digests: default %s and %s (want equal), now %s (want another)", first, again, now)
		}
	})

	t.Run("storage", func(t *testing.T) { testStorage(ctx, t, w) })

	// The Tasks as multiarch-build-matrix calls them: each build derives its
	// tag suffix from PLATFORM, and the manifest takes the platforms and
	// commits as arrays (a matrix's results), checking them the same way.
	t.Run("matrix-params", func(t *testing.T) {
		r := w.Runner(t, w.Catalog)
		image := w.Image("matrix")
		var refs, commits []string
		for _, platform := range []string{"linux/amd64", "linux/arm64"} {
			arch := strings.TrimPrefix(platform, "linux/")
			tr := r.RunTask(ctx, TaskRunRequest{
				Name: "tr-matrix-" + arch, Task: buildTask,
				Params: Params("GIT_URL", w.Fixture.URL, "IMAGE", image, "PLATFORM", platform, "PLATFORM_TAG_SUFFIX", "true",
					"TLS_VERIFY", "false", "ALLOW_EMULATION", "true"),
			})
			if !tr.Succeeded() {
				t.Fatalf("build %s: %v\n%s", platform, tr.Err, tr.Log)
			}
			if got, _ := tr.Result("IMAGE_URL"); got != image+"-"+arch {
				t.Errorf("build %s pushed %q, want %q (PLATFORM_TAG_SUFFIX)", platform, got, image+"-"+arch)
			}
			ref, _ := tr.Result("IMAGE_REF")
			commit, _ := tr.Result("COMMIT")
			refs, commits = append(refs, ref), append(commits, commit)
		}
		manifest := func(name string, commits ...string) *TaskRun {
			return r.RunTask(ctx, TaskRunRequest{
				Name: name, Task: manifestTask,
				Params: append(Params("IMAGE", image, "TLS_VERIFY", "false"), ArrayParam("IMAGES", refs...),
					ArrayParam("PLATFORM_LIST", "linux/amd64", "linux/arm64"), ArrayParam("SOURCE_COMMIT_LIST", commits...)),
			})
		}
		if tr := manifest("tr-matrix-manifest-other-commit", commits[0], strings.Repeat("0", 40)); tr.Succeeded() {
			t.Errorf("manifest succeeded with two different SOURCE_COMMIT_LIST commits:\n%s", tr.Log)
		} else if !strings.Contains(tr.Log, "error: the architectures were built from different commits") {
			t.Errorf("manifest failed, but not on the commits:\n%s", tr.Log)
		}
		tr := manifest("tr-matrix-manifest", commits...)
		if !tr.Succeeded() {
			t.Fatalf("manifest with PLATFORM_LIST and SOURCE_COMMIT_LIST: %v\n%s", tr.Err, tr.Log)
		}
		got, _ := tr.Result("IMAGES")
		for _, ref := range refs {
			if !strings.Contains(got, ref) {
				t.Errorf("index IMAGES %q lacks %s", got, ref)
			}
		}
	})

	t.Run("bad-input", func(t *testing.T) {
		dead := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		short := w.Fixture.Commit[:12]
		build := func(nv ...string) TaskRunRequest {
			base := Params("GIT_URL", w.Fixture.URL, "IMAGE", w.Image("bad"), "TAG_SUFFIX", "-amd64", "PLATFORM", "linux/amd64", "TLS_VERIFY", "false")
			for _, p := range Params(nv...) {
				i := slices.IndexFunc(base, func(b v1.Param) bool { return b.Name == p.Name })
				if i >= 0 {
					base[i] = p
				} else {
					base = append(base, p)
				}
			}
			return TaskRunRequest{Task: buildTask, Params: base}
		}
		for _, c := range []struct {
			name     string
			req      TaskRunRequest
			lastStep string
			want     []string
		}{
			{
				name: "unreachable-registry", req: build("IMAGE", dead+"/multiarch/app:bad"), lastStep: "build",
				want: []string{"(1/3)", "(2/3)", "(3/3)", "connection refused",
					"error: pushing " + dead + "/multiarch/app:bad-amd64 failed after 3 retries: check that the registry is reachable"},
			},
			{
				name: "missing-dockerfile", req: build("DOCKERFILE", "./docker/Dockerfile.missing"), lastStep: "build",
				want: []string{"error: DOCKERFILE './docker/Dockerfile.missing' does not exist in the repository at commit " + w.Fixture.Commit +
					" (top level: Dockerfile Dockerfile.cpu Dockerfile.io Dockerfile.mem Dockerfile.run NOTES bin go.mod main.go )"},
			},
			{
				name: "cache-not-a-bool", req: build("CACHE", "yes"), lastStep: "build",
				want: []string{"error: CACHE must be true or false, not 'yes'"},
			},
			{
				name: "cache-repo-with-tag", req: build("CACHE", "true", "CACHE_REPO", w.Registry.Addr+"/cache:v1"), lastStep: "build",
				want: []string{"error: CACHE_REPO '" + w.Registry.Addr + "/cache:v1' has a tag: give the repository alone"},
			},
			{
				name: "wrong-git-ref", req: build("GIT_REF", "no-such-branch"), lastStep: "clone",
				want: []string{`remote ref \"no-such-branch\" not found`,
					"error: git-sync could not clone " + w.Fixture.URL + " at no-such-branch: check that the ref exists"},
			},
			{
				name: "abbreviated-sha", req: build("GIT_REF", short), lastStep: "clone",
				want: []string{`remote ref \"` + short + `\" not found`,
					"error: git-sync could not clone " + w.Fixture.URL + " at " + short + ": if " + short + " is an abbreviated commit SHA, give all 40 characters"},
			},
		} {
			t.Run(c.name, func(t *testing.T) {
				c.req.Name = "tr-" + c.name
				start := time.Now()
				tr := w.Runner(t, w.Catalog).RunTask(ctx, c.req)
				if tr.Succeeded() {
					t.Fatalf("TaskRun succeeded, want a failure:\n%s", tr.Log)
				}
				if n := len(tr.Steps); n == 0 || tr.Steps[n-1].Name != c.lastStep || tr.Steps[n-1].ExitCode == 0 {
					t.Errorf("steps %+v: want step %s to be the one that failed", tr.Steps, c.lastStep)
				}
				for _, want := range c.want {
					if !strings.Contains(tr.Log, want) {
						t.Errorf("log lacks %q:\n%s", want, tr.Log)
					}
				}
				for _, r := range []string{"IMAGE_DIGEST", "IMAGE_REF"} {
					if v, ok := tr.Result(r); ok {
						t.Errorf("failed TaskRun has result %s=%q", r, v)
					}
				}
				t.Logf("failed in %s", time.Since(start).Round(time.Millisecond))
			})
		}

		t.Run("manifest-digest-not-in-registry", func(t *testing.T) {
			r := w.Runner(t, w.Catalog)
			req := build("IMAGE", w.Image("partial"))
			req.Name = "tr-partial-amd64"
			amd := r.RunTask(ctx, req)
			if !amd.Succeeded() {
				t.Fatalf("building amd64: %v\n%s", amd.Err, amd.Log)
			}
			amdRef, _ := amd.Result("IMAGE_REF")
			missing := fmt.Sprintf("%s@sha256:%x", w.Repository(), sha256.Sum256([]byte("never pushed")))
			tr := r.RunTask(ctx, TaskRunRequest{
				Name: "tr-partial-manifest", Task: manifestTask,
				Params: append(Params("IMAGE", w.Image("partial"), "PLATFORMS", "linux/amd64,linux/arm64", "TLS_VERIFY", "false"),
					ArrayParam("IMAGES", amdRef, missing)),
			})
			if tr.Succeeded() {
				t.Fatalf("manifest succeeded with a digest the registry lacks:\n%s", tr.Log)
			}
			want := "error: cannot add " + missing + " to the index: the registry does not have it or refused to serve it (nothing was pushed)"
			if !strings.Contains(tr.Log, want) {
				t.Errorf("log lacks %q:\n%s", want, tr.Log)
			}
			tags, err := w.Registry.Tags("multiarch/app")
			if err != nil {
				t.Fatal(err)
			}
			// partial-amd64 shows the listing sees this test's pushes.
			if !slices.Contains(tags, "partial-amd64") || slices.Contains(tags, "partial") {
				t.Errorf("registry tags %v: want partial-amd64 and no index tag partial", tags)
			}
		})
	})

	t.Run("clone", func(t *testing.T) {
		creds := t.TempDir()
		for name, content := range map[string]string{"username": "builder", "password": "s3cret-pa55"} {
			if err := os.WriteFile(filepath.Join(creds, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		sshNoHosts := t.TempDir()
		if err := os.WriteFile(filepath.Join(sshNoHosts, "ssh-privatekey"), []byte("not a real key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name       string
			ref        string
			creds      string
			wantCommit string
			extraArgs  []string // after the fixed ones, with CREDS for the workspace dir
			wantErr    string
		}{
			{name: "branch", ref: "main", wantCommit: w.Fixture.Commit},
			{name: "annotated-tag", ref: w.Fixture.Tag, wantCommit: w.Fixture.FirstCommit},
			// A date tag is all hex digits, like an abbreviated SHA: it is a valid ref.
			{name: "date-tag", ref: w.Fixture.DateTag, wantCommit: w.Fixture.FirstCommit},
			{name: "full-sha", ref: w.Fixture.FirstCommit, wantCommit: w.Fixture.FirstCommit},
			{name: "basic-auth", ref: "main", creds: creds, wantCommit: w.Fixture.Commit,
				extraArgs: []string{"--username=builder", "--password-file=CREDS/password"}},
			{name: "ssh-without-known-hosts", ref: "main", creds: sshNoHosts,
				wantErr: "error: workspace git-credentials has ssh-privatekey but no known_hosts"},
		} {
			t.Run(c.name, func(t *testing.T) {
				out := t.TempDir()
				ws := map[string]string{"output": out}
				if c.creds != "" {
					ws["git-credentials"] = c.creds
				}
				tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
					Name: "tr-clone-" + c.name, Task: gitSyncTask, Workspaces: ws,
					Params: Params("GIT_URL", w.Fixture.URL, "GIT_REF", c.ref),
				})
				if c.wantErr != "" {
					if tr.Succeeded() || !strings.Contains(tr.Log, c.wantErr) {
						t.Fatalf("want a failure with %q, got succeeded=%v:\n%s", c.wantErr, tr.Succeeded(), tr.Log)
					}
					if tr.GitSyncArgs != nil {
						t.Errorf("git-sync ran: %v", tr.GitSyncArgs)
					}
					return
				}
				if !tr.Succeeded() {
					t.Fatalf("%v\n%s", tr.Err, tr.Log)
				}
				root := filepath.Join(out, "source") // $(workspaces.output.path)/$(params.SUBDIRECTORY)
				wantArgs := []string{"--repo=" + w.Fixture.URL, "--ref=" + c.ref, "--root=" + root, "--link=checkout", "--one-time", "--depth=1"}
				for _, a := range c.extraArgs {
					wantArgs = append(wantArgs, strings.ReplaceAll(a, "CREDS", c.creds))
				}
				if !slices.Equal(tr.GitSyncArgs, wantArgs) {
					t.Errorf("git-sync args\n got %q\nwant %q", tr.GitSyncArgs, wantArgs)
				}
				if strings.Contains(tr.Log, "s3cret-pa55") || strings.Contains(strings.Join(tr.GitSyncArgs, " "), "s3cret-pa55") {
					t.Error("the password reached the command line or the log")
				}
				checkCheckout(t, root, c.wantCommit)
				if got, _ := tr.Result("COMMIT"); got != c.wantCommit {
					t.Errorf("COMMIT = %q, want %q", got, c.wantCommit)
				}
				if got, _ := tr.Result("URL"); got != w.Fixture.URL {
					t.Errorf("URL = %q, want %q", got, w.Fixture.URL)
				}
			})
		}
		// A token in the URL is for git-sync alone: the step's own lines and
		// the URL result (in the TaskRun's status) carry the URL without it.
		// git-sync's own log lines are git-sync's (the stand-in's here): the
		// README says to use the git-credentials workspace instead.
		t.Run("url-with-token", func(t *testing.T) {
			dead := fmt.Sprintf("http://builder:t0ken-in-url@127.0.0.1:%d/app.git", FreePort(t))
			tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{
				Name: "tr-clone-url-with-token", Task: gitSyncTask, Workspaces: map[string]string{"output": t.TempDir()},
				Params: Params("GIT_URL", dead, "GIT_REF", "main"),
			})
			if tr.Succeeded() {
				t.Fatal("a clone from a closed port succeeded")
			}
			if len(tr.GitSyncArgs) == 0 || tr.GitSyncArgs[0] != "--repo="+dead {
				t.Errorf("git-sync args %q: want the URL with its token first", tr.GitSyncArgs)
			}
			shown := strings.Replace(dead, "builder:t0ken-in-url@", "", 1)
			for _, want := range []string{"cloning " + shown + " at main", "error: git-sync could not clone " + shown + " at main"} {
				if !strings.Contains(tr.Log, want) {
					t.Errorf("log lacks %q:\n%s", want, tr.Log)
				}
			}
			for _, line := range strings.Split(tr.Log, "\n") {
				if strings.Contains(line, "t0ken-in-url") && !strings.Contains(line, " git-sync \"msg\"=") {
					t.Errorf("the token reached a line of the step's own: %s", line)
				}
			}
		})
	})
}

// checkCheckout checks git-sync's documented layout: <root>/.git, the link
// <root>/checkout -> .worktrees/<full sha> (relative), one commit deep.
func checkCheckout(t *testing.T, root, commit string) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(root, "checkout"))
	if err != nil {
		t.Fatal(err)
	}
	if target != ".worktrees/"+commit {
		t.Errorf("checkout -> %s, want .worktrees/%s", target, commit)
	}
	if _, err := os.Stat(filepath.Join(root, ".git", "shallow")); err != nil {
		t.Errorf("the clone is not shallow: %v", err)
	}
	for _, f := range []string{"Dockerfile", "bin/app-arm64"} {
		if _, err := os.Stat(filepath.Join(root, ".worktrees", commit, f)); err != nil {
			t.Errorf("worktree lacks %s: %v", f, err)
		}
	}
}

// checkTwoArchRun checks a PipelineRun of the two-arch Pipeline end to end,
// against the registry's own answers.
// took is the storage the build step says it took, driver buildah's
// storage directory for it.
func checkTwoArchRun(ctx context.Context, t *testing.T, w *World, run *PipelineRun, image, took, driver string) {
	t.Helper()
	if run.Err != nil {
		for name, tr := range run.TaskRuns {
			t.Logf("TaskRun %s:\n%s", name, tr.Log)
		}
		t.Fatalf("PipelineRun failed: %v", run.Err)
	}
	repo := w.Repository()
	digests := map[string]string{}
	refs := map[string]string{}
	for _, arch := range arches {
		tr := run.TaskRuns["build-"+arch]
		if tr == nil {
			t.Fatalf("no TaskRun for build-%s: %v", arch, run.TaskRuns)
		}
		res := func(name string) string {
			v, ok := tr.Result(name)
			if !ok {
				t.Fatalf("build-%s has no result %s", arch, name)
			}
			return v
		}
		digests[arch], refs[arch] = res("IMAGE_DIGEST"), res("IMAGE_REF")
		for name, want := range map[string]string{
			"IMAGE_URL": image + "-" + arch, "IMAGE_REF": repo + "@" + digests[arch],
			"COMMIT": w.Fixture.Commit, "URL": w.Fixture.URL,
		} {
			if got := res(name); got != want {
				t.Errorf("build-%s result %s = %q, want %q", arch, name, got, want)
			}
		}
		// Run natively on this amd64 machine, the arm64 image under ALLOW_EMULATION.
		wantEmulated := map[string]string{"amd64": "false", "arm64": "true"}[arch]
		if got, got2 := res("BUILD_ARCH"), res("EMULATED"); got != "x86_64" || got2 != wantEmulated {
			t.Errorf("build-%s BUILD_ARCH %q EMULATED %q, want x86_64 and %s", arch, got, got2, wantEmulated)
		}
		if want := "the committer time of commit " + w.Fixture.Commit + " (the param is empty)"; !strings.Contains(tr.Log, want) {
			t.Errorf("build-%s log lacks %q:\n%s", arch, want, tr.Log)
		}
		if !strings.Contains(tr.Log, "\nstorage: "+took+" (") || !strings.Contains(tr.Log, "(storage: "+took+")") {
			t.Errorf("build-%s did not build with %s storage:\n%s", arch, took, tr.Log)
		}
		if _, err := os.Stat(filepath.Join(tr.Dir, "volumes", "containers", "storage", driver)); err != nil {
			t.Errorf("build-%s's own storage (its containers volume) has no %s layers: %v", arch, driver, err)
		}
		root := filepath.Join(tr.Dir, "volumes", "source", "repo")
		wantArgs := []string{"--repo=" + w.Fixture.URL, "--ref=main", "--root=" + root, "--link=checkout", "--one-time", "--depth=1"}
		if !slices.Equal(tr.GitSyncArgs, wantArgs) {
			t.Errorf("build-%s git-sync args\n got %q\nwant %q", arch, tr.GitSyncArgs, wantArgs)
		}
		checkCheckout(t, root, w.Fixture.Commit)
	}
	if warned := strings.Contains(run.TaskRuns["build-arm64"].Log, emulationWarn); !warned {
		t.Errorf("build-arm64 did not warn %q", emulationWarn)
	}

	// Scheduling as the Pipeline says: both builds at once, then the manifest.
	a, b, m := run.TaskRuns["build-amd64"], run.TaskRuns["build-arm64"], run.TaskRuns["manifest"]
	if m == nil {
		t.Fatal("no manifest TaskRun")
	}
	if !a.Started.Before(b.Finished) || !b.Started.Before(a.Finished) {
		t.Errorf("the builds did not overlap: amd64 %s..%s, arm64 %s..%s", a.Started, a.Finished, b.Started, b.Finished)
	}
	if m.Started.Before(a.Finished) || m.Started.Before(b.Finished) {
		t.Error("manifest started before both builds finished")
	}

	indexDigest, _ := m.Result("IMAGE_DIGEST")
	raw, err := RawManifest(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("index %s (%s):\n%s", image, indexDigest, raw)
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != indexDigest {
		t.Errorf("sha256 of the raw index is %s, the manifest task's IMAGE_DIGEST %s", got, indexDigest)
	}
	index, err := ParseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	if index.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("index mediaType %q", index.MediaType)
	}
	got := index.ByPlatform
	want := map[string]string{"linux/amd64": digests["amd64"], "linux/arm64": digests["arm64"]}
	if index.Entries != 2 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("index lists %v (%d entries), want exactly %v", got, index.Entries, want)
	}

	elfMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range arches {
		ref := repo + "@" + digests[arch]
		cfg, err := Config(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS != "linux" || cfg.Architecture != arch {
			t.Errorf("%s config says %s/%s, want linux/%s", ref, cfg.OS, cfg.Architecture, arch)
		}
		app, err := FileFromImage(ctx, ref, t.TempDir(), "/app")
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(app))
		if err != nil {
			t.Fatalf("%s /app is not an ELF file: %v", ref, err)
		}
		if f.Machine != elfMachine[arch] {
			t.Errorf("%s /app is an ELF for %s, want %s", ref, f.Machine, elfMachine[arch])
		}
		if !bytes.Equal(app, w.Fixture.Binaries[arch]) {
			t.Errorf("%s /app differs from the fixture's bin/app-%s", ref, arch)
		}
	}

	wantResults := map[string]string{
		"IMAGE_URL":         image,
		"IMAGE_DIGEST":      indexDigest,
		"IMAGES":            refs["amd64"] + "," + refs["arm64"],
		"CHAINS-GIT_URL":    w.Fixture.URL,
		"CHAINS-GIT_COMMIT": w.Fixture.Commit,
		// SBOM is off by default: one empty entry per architecture, and
		// no SBOM of the index.
		"SBOMS":      ",",
		"INDEX_SBOM": "",
	}
	if fmt.Sprint(run.Results) != fmt.Sprint(wantResults) {
		t.Errorf("Pipeline results\n got %v\nwant %v", run.Results, wantResults)
	}
}

// sameScripts fails unless two catalogs run the same step scripts, so the
// storage matrix exercises one set of scripts.
func sameScripts(t *testing.T, a, b *Catalog) {
	t.Helper()
	for name, ta := range a.Tasks {
		tb, ok := b.Tasks[name]
		if !ok || len(ta.Spec.Steps) != len(tb.Spec.Steps) {
			t.Fatalf("catalogs %s and %s differ in task %s", a.Dir, b.Dir, name)
		}
		for i := range ta.Spec.Steps {
			sa, _ := tasks.StepScript(ta.Spec.Steps[i])
			sb, _ := tasks.StepScript(tb.Spec.Steps[i])
			if sa != sb {
				t.Fatalf("task %s step %s: the scripts of %s and %s differ", name, ta.Spec.Steps[i].Name, a.Dir, b.Dir)
			}
		}
	}
}

func paramDefault(c *Catalog, task, param string) string {
	for _, p := range c.Tasks[task].Spec.Params {
		if p.Name == param && p.Default != nil {
			return p.Default.StringVal
		}
	}
	return ""
}
