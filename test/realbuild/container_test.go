package realbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	cw.buildah = images.Ref(t, "BUILDAH_VERSION")
	return cw
}

func (cw *containerWorld) runner(t testing.TB, devices ...string) *Runner {
	r := cw.Runner(t, cw.Catalog)
	r.Container = &StepContainer{Containerd: cw.ctrd, Image: cw.image, Seccomp: cw.seccomp, Devices: devices}
	return r
}

// newBuildahStandIn is /usr/local/bin/buildah for the probe cases: it says
// it is 1.35.0 and runs the image's buildah for everything else, so that
// the build step, which keeps buildah before 1.35 off the kernel's overlay
// in a user namespace, takes the path a newer image takes: its overlay
// probe, in the user namespace buildah creates in the container. (The
// builds then leak the overlay's xattrs, as 1.28.2 does; no digest is
// compared here.)
const newBuildahStandIn = `#!/bin/sh
if [ "$#" = 1 ] && [ "$1" = --version ]; then
	echo "buildah version 1.35.0 (stand-in for the image's $(/usr/bin/buildah --version))"
	exit 0
fi
exec /usr/bin/buildah "$@"
`

// refusingSeccomp writes the generated profile with mount allowed only when
// its flags are not 0: the kernel's overlay mount (containers/storage passes
// no flags) fails with EPERM, as on a kernel older than 5.11, and every
// other mount (binds, remounts, fuse-overlayfs's) still passes.
func refusingSeccomp(t testing.TB, profile, dir string) string {
	t.Helper()
	b, err := os.ReadFile(profile)
	if err != nil {
		t.Fatal(err)
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	found := false
	for i, r := range p.Syscalls {
		if j := slices.Index(r.Names, "mount"); j >= 0 && r.Action == specs.ActAllow && len(r.Args) == 0 {
			p.Syscalls[i].Names = slices.Delete(slices.Clone(r.Names), j, j+1)
			found = true
		}
	}
	if !found {
		t.Fatalf("%s has no unconditional mount rule to narrow", profile)
	}
	p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{Names: []string{"mount"}, Action: specs.ActAllow,
		Args: []specs.LinuxSeccompArg{{Index: 3, Value: 0, Op: specs.OpNotEqual}}})
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "buildah-refusing-overlay.json")
	if err := os.WriteFile(f, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
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
			ref, _ := run.TaskRuns["build-"+arch].Result("IMAGE_REF")
			if labels, err := Labels(ctx, ref); err != nil || labels["org.opencontainers.image.revision"] != cw.Fixture.Commit {
				t.Errorf("build-%s labels %v (%v), want org.opencontainers.image.revision %s", arch, labels, err, cw.Fixture.Commit)
			}
		}
		// The image's buildah annotates the index (Debian's 1.28 cannot).
		ann, err := IndexAnnotations(ctx, image)
		if err != nil || ann["org.opencontainers.image.revision"] != cw.Fixture.Commit || ann["org.opencontainers.image.source"] != cw.Fixture.URL {
			t.Errorf("index annotations %v (%v), want revision %s and source %s", ann, err, cw.Fixture.Commit, cw.Fixture.URL)
		}
	})

	// A build secret and build-only with the image's buildah, in a container:
	// the secret read by a RUN step, in no log line and no result; nothing pushed.
	t.Run("build-secret-build-only", func(t *testing.T) {
		fx := cw.Options(t)
		secret := "s3cret-in-a-container-" + filepath.Base(t.TempDir())
		ws := t.TempDir()
		if err := os.WriteFile(filepath.Join(ws, "token"), []byte(secret), 0o644); err != nil {
			t.Fatal(err)
		}
		base := cw.BusyboxBase(t)
		before, err := cw.Registry.Contents()
		if err != nil {
			t.Fatal(err)
		}
		tr := cw.runner(t).RunTask(ctx, TaskRunRequest{
			Name: "tr-container-secret", Task: buildTask,
			Params: append(Params("GIT_URL", fx.URL, "IMAGE", cw.Image("container-secret"), "PLATFORM", "linux/amd64", "TLS_VERIFY", "false",
				"DOCKERFILE", "./Dockerfile.secret", "PUSH", "false"), ArrayParam("BUILD_ARGS", "BASE="+base)),
			Workspaces: map[string]string{"build-secrets": ws},
		})
		if !tr.Succeeded() {
			t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
		}
		d, _ := tr.Result("IMAGE_DIGEST")
		if want := "built " + cw.Repository() + "@" + d + " (linux/amd64), not pushed (PUSH=false)"; !strings.Contains(tr.Log, want) {
			t.Errorf("log lacks %q:\n%s", want, tr.Log)
		}
		if strings.Contains(tr.Log, secret) {
			t.Error("the secret is in the log")
		}
		for _, r := range tr.Object.Status.Results {
			if strings.Contains(r.Value.StringVal, secret) {
				t.Errorf("the secret is in result %s", r.Name)
			}
		}
		if after, err := cw.Registry.Contents(); err != nil || fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the registry changed in a build-only run (%v):\nbefore %v\nafter  %v", err, before, after)
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
	// auto's overlay probe in a real container, in buildah's user namespace
	// (which 1.28.2 otherwise never reaches: see newBuildahStandIn), with the
	// kernel's overlay allowed and refused by the seccomp profile.
	standIn := filepath.Join(t.TempDir(), "buildah")
	if err := os.WriteFile(standIn, []byte(newBuildahStandIn), 0o755); err != nil {
		t.Fatal(err)
	}
	refusing := refusingSeccomp(t, cw.seccomp, t.TempDir())
	const refused = "the kernel refused buildah an overlay mount here (operation not permitted)"
	for _, c := range []struct {
		name, storage, seccomp string
		devices                []string
		want, took             string // took: .has-mount-program, "" when it fails
	}{
		{name: "overlay-allowed", seccomp: cw.seccomp, want: "storage: overlay (STORAGE=auto: the kernel's overlay mounted here)", took: "false"},
		{name: "overlay-refused", seccomp: refusing, want: "storage: vfs (STORAGE=auto: " + refused + "; this container has no /dev/fuse)", took: "none"},
		{name: "overlay-refused-with-fuse", seccomp: refusing, devices: []string{"/dev/fuse"},
			want: "storage: fuse-overlayfs (STORAGE=auto: " + refused + "; /dev/fuse is here)", took: "true"},
		{name: "explicit-overlay-refused", storage: "overlay", seccomp: refusing,
			want: "error: STORAGE=overlay: " + refused + ": overlay in a user namespace needs Linux 5.11 or later"},
	} {
		t.Run("probe-"+c.name, func(t *testing.T) {
			r := cw.Runner(t, cw.Catalog)
			r.Container = &StepContainer{Containerd: cw.ctrd, Image: cw.image, Seccomp: c.seccomp, Devices: c.devices,
				Mounts: []Bind{{Host: standIn, Path: "/usr/local/bin/buildah", ReadOnly: true}}}
			params := Params("GIT_URL", url, "IMAGE", cw.Image("container-probe-"+c.name), "TAG_SUFFIX", "-amd64", "PLATFORM", "linux/amd64", "TLS_VERIFY", "false")
			if c.storage != "" {
				params = append(params, Params("STORAGE", c.storage)...)
			}
			tr := r.RunTask(ctx, TaskRunRequest{Name: "tr-probe-" + c.name, Task: buildTask, Params: append(params, ArrayParam("BUILD_ARGS", "BASE="+base))})
			if !strings.Contains(tr.Log, c.want) {
				t.Errorf("log lacks %q:\n%s", c.want, tr.Log)
			}
			if c.took == "" {
				if tr.Succeeded() {
					t.Error("succeeded, want a failure")
				}
				return
			}
			if !tr.Succeeded() {
				t.Fatalf("%v\n%s", tr.Err, tr.Log)
			}
			b, err := os.ReadFile(filepath.Join(tr.Dir, "volumes", "containers", "storage", "overlay", ".has-mount-program"))
			got := strings.TrimSpace(string(b))
			if err != nil {
				got = "none"
			}
			if got != c.took {
				t.Errorf(".has-mount-program %q, want %q", got, c.took)
			}
		})
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
