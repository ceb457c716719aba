package realbuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// containerWorld is a World whose buildah steps run in real containers: a
// containerd of this test's, the buildah image test/cluster/build-images.sh
// makes (Debian's buildah and fuse-overlayfs), the generated seccomp
// profile, the runtime's default capabilities.
type containerWorld struct {
	*World
	ctrd    *Containerd
	image   string
	seccomp string
	buildah string // the image's buildah version
}

func newContainerWorld(t testing.TB) *containerWorld {
	t.Helper()
	w := NewWorld(t)
	images := BuildNodeImages(t, w.Repo)
	cw := &containerWorld{World: w, image: images.Ref(t, "BUILDAH_IMAGE"),
		seccomp: filepath.Join(w.Repo, "examples", "cluster", "seccomp", "buildah.json")}
	cw.ctrd = StartContainerd(t, filepath.Join(w.Work, "..", "containerd"))
	cw.ctrd.Import(t, images.Archive("BUILDAH_IMAGE"))
	pkgs, err := os.ReadFile(filepath.Join(images.Dir, "buildah.packages"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(pkgs), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "buildah" {
			cw.buildah = strings.SplitN(f[1], "+", 2)[0]
		}
	}
	if cw.buildah == "" {
		t.Fatalf("%s/buildah.packages names no buildah", images.Dir)
	}
	return cw
}

func (cw *containerWorld) runner(t testing.TB, devices ...string) *Runner {
	r := cw.Runner(t, cw.Catalog)
	r.Container = &StepContainer{Containerd: cw.ctrd, Image: cw.image, Seccomp: cw.seccomp, Devices: devices}
	return r
}

// TestContainer runs the committed catalog's build steps in real containers
// with the runtime's default capabilities (no CAP_SYS_ADMIN) under the
// generated seccomp profile, as the build pods run: the default storage
// builds and pushes the two-arch image with RUN steps without /dev/fuse and
// names its mode; auto takes fuse-overlayfs where /dev/fuse is passed in;
// the explicit modes build the same digest.
func TestContainer(t *testing.T) {
	cw := newContainerWorld(t)
	ctx := context.Background()
	old := strings.HasPrefix(cw.buildah, "1.") && func() bool {
		var minor int
		_, err := fmt.Sscanf(strings.TrimPrefix(cw.buildah, "1."), "%d", &minor)
		return err == nil && minor < 35
	}()
	// What auto says in a pod, by the image's buildah: overlay from 1.35 on.
	overlayWhy := "the kernel's overlay mounted here"
	autoNoFuse := "storage: overlay (STORAGE=auto: " + overlayWhy + ")"
	autoFuse := autoNoFuse
	if old {
		why := "buildah " + cw.buildah + ", older than 1.35, writes the kernel overlay's user.overlay.* xattrs into the image in a user namespace"
		autoNoFuse = "storage: vfs (STORAGE=auto: " + why + "; this container has no /dev/fuse)"
		autoFuse = "storage: fuse-overlayfs (STORAGE=auto: " + why + "; /dev/fuse is here)"
	}

	t.Run("default-storage-two-arch-run-steps", func(t *testing.T) {
		EnsureArm64Emulation(t)
		image := cw.Image("container-default")
		run := cw.runner(t).RunPipeline(ctx, PipelineRunRequest{
			Name: "pr-container-default", Pipeline: pipelineName,
			Params: Params("GIT_URL", cw.Fixture.URL, "IMAGE", image, "TLS_VERIFY", "false", "ALLOW_EMULATION", "true",
				"DOCKERFILE", "./Dockerfile.run"),
		})
		if run.Err != nil {
			for name, tr := range run.TaskRuns {
				t.Logf("TaskRun %s:\n%s", name, tr.Log)
			}
			t.Fatalf("PipelineRun failed: %v", run.Err)
		}
		for _, arch := range arches {
			tr := run.TaskRuns["build-"+arch]
			if !strings.Contains(tr.Log, "--- step build (container "+cw.image+")") {
				t.Errorf("build-%s's build step did not run in the container:\n%s", arch, tr.Log)
			}
			if !strings.Contains(tr.Log, autoNoFuse) {
				t.Errorf("build-%s's log lacks %q:\n%s", arch, autoNoFuse, tr.Log)
			}
			ref, _ := tr.Result("IMAGE_REF")
			got, err := FileFromImage(ctx, ref, t.TempDir(), "/built-on")
			machine := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
			if err != nil || string(got) != arch+" "+machine+"\n" {
				t.Errorf("build-%s /built-on = %q (%v), want the RUN step's %q", arch, got, err, arch+" "+machine+"\n")
			}
		}
		m := run.TaskRuns["manifest"]
		if !strings.Contains(m.Log, "--- step manifest (container ") {
			t.Errorf("the manifest step did not run in the container:\n%s", m.Log)
		}
		raw, err := RawManifest(ctx, image)
		if err != nil {
			t.Fatal(err)
		}
		for _, arch := range arches {
			d, _ := run.TaskRuns["build-"+arch].Result("IMAGE_DIGEST")
			if !strings.Contains(string(raw), d) {
				t.Errorf("the index lacks build-%s's %s:\n%s", arch, d, raw)
			}
		}
	})

	// The storage fixture in each mode a pod can take, one digest for all.
	base := cw.BusyboxBase(t)
	url := cw.GitRepo(t, "container-storage", map[string]string{"Dockerfile": StorageDockerfile(300, 8)})
	digests := map[string]string{}
	for _, c := range []struct {
		name    string
		storage string
		devices []string
		want    string
		fails   bool
	}{
		{name: "auto", want: autoNoFuse},
		{name: "auto-with-fuse", devices: []string{"/dev/fuse"}, want: autoFuse},
		{name: "fuse-overlayfs", storage: "fuse-overlayfs", devices: []string{"/dev/fuse"}, want: "storage: fuse-overlayfs (STORAGE=fuse-overlayfs)"},
		{name: "vfs", storage: "vfs", want: "storage: vfs (STORAGE=vfs)"},
		{name: "fuse-overlayfs-without-fuse", storage: "fuse-overlayfs", fails: true,
			want: "error: STORAGE=fuse-overlayfs: this container has no /dev/fuse. Only a catalog generated with build.storage: fuse-overlayfs asks for /dev/fuse"},
	} {
		t.Run("storage-"+c.name, func(t *testing.T) {
			params := Params("GIT_URL", url, "IMAGE", cw.Image("container-"+c.name), "TAG_SUFFIX", "-amd64", "PLATFORM", "linux/amd64",
				"TLS_VERIFY", "false", "SOURCE_DATE_EPOCH", sourceDateEpoch)
			if c.storage != "" {
				params = append(params, Params("STORAGE", c.storage)...)
			}
			tr := cw.runner(t, c.devices...).RunTask(ctx, TaskRunRequest{Name: "tr-container-" + c.name, Task: buildTask,
				Params: append(params, ArrayParam("BUILD_ARGS", "BASE="+base))})
			if !strings.Contains(tr.Log, c.want) {
				t.Errorf("log lacks %q:\n%s", c.want, tr.Log)
			}
			if c.fails {
				if tr.Succeeded() {
					t.Errorf("succeeded, want a failure")
				}
				return
			}
			if !tr.Succeeded() {
				t.Fatalf("%v\n%s", tr.Err, tr.Log)
			}
			digests[c.name], _ = tr.Result("IMAGE_DIGEST")
		})
	}
	if len(digests) != 4 || digests["auto"] != digests["auto-with-fuse"] || digests["auto"] != digests["fuse-overlayfs"] || digests["auto"] != digests["vfs"] {
		t.Errorf("digests by storage mode %v: want 4 builds, one digest", digests)
	}
	if old {
		t.Run("overlay-refused-for-old-buildah", func(t *testing.T) {
			tr := cw.runner(t).RunTask(ctx, TaskRunRequest{Name: "tr-container-overlay", Task: buildTask,
				Params: append(Params("GIT_URL", url, "IMAGE", cw.Image("container-overlay"), "TAG_SUFFIX", "-amd64", "PLATFORM", "linux/amd64",
					"TLS_VERIFY", "false", "STORAGE", "overlay"), ArrayParam("BUILD_ARGS", "BASE="+base))})
			want := "error: STORAGE=overlay: buildah " + cw.buildah + ", older than 1.35, writes the kernel overlay's user.overlay.* xattrs into the image in a user namespace (containers/storage#1847)"
			if tr.Succeeded() || !strings.Contains(tr.Log, want) {
				t.Errorf("succeeded=%v, want a failure with %q:\n%s", tr.Succeeded(), want, tr.Log)
			}
		})
	}
}
