package realbuild

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// sourceDateEpoch makes every build of the storage fixture reproducible:
// the same digest in every mode is then the proof the mode changed nothing.
const sourceDateEpoch = "1700000000"

// testStorage builds the storage fixture (small files, a big file,
// copy-ups, whiteouts, an opaque directory, with RUN steps) with each
// STORAGE, and with auto where each of its fallbacks applies: the kernel's
// overlay refused (a seccomp filter, as a kernel older than 5.11 answers),
// no /dev/fuse (a container's /dev), no CAP_SYS_ADMIN (buildah in a user
// namespace, as in every pod). Every build that succeeds must push the same
// digest; every refusal must name the fix.
func testStorage(ctx context.Context, t *testing.T, w *World) {
	base := w.BusyboxBase(t)
	url := w.GitRepo(t, "storage", map[string]string{"Dockerfile": StorageDockerfile(300, 8)})
	version, major, minor := BuildahVersion(t)
	// buildah before 1.35 in a user namespace writes the kernel overlay's
	// xattrs into the image: the step keeps it off overlay there.
	oldBuildah := major == 1 && minor < 35
	userNS := "storage: overlay (STORAGE=auto: the kernel's overlay mounted here)"
	userNSNoFuse := userNS
	var userNSOverlay string
	if oldBuildah {
		why := "buildah " + version + ", older than 1.35, writes the kernel overlay's user.overlay.* xattrs into the image in a user namespace"
		userNS = "storage: fuse-overlayfs (STORAGE=auto: " + why + "; /dev/fuse is here)"
		userNSNoFuse = "storage: vfs (STORAGE=auto: " + why + "; this container has no /dev/fuse)"
		userNSOverlay = "error: STORAGE=overlay: " + why + " (containers/storage#1847): use a buildah image of 1.35 or later"
	}
	const refused = "the kernel refused buildah an overlay mount here (operation not permitted)"

	cases := []struct {
		name    string
		params  []string // on top of the fixture's
		confine *Confinement
		want    string // the storage line, or the error
		driver  string // the storage directory buildah used; "" when the step fails
		// .has-mount-program: false for the kernel's overlay, true for fuse-overlayfs
		mountProgram string
	}{
		{name: "auto", want: "storage: overlay (STORAGE=auto: the kernel's overlay mounted here)", driver: "overlay", mountProgram: "false"},
		{name: "overlay", params: []string{"STORAGE", "overlay"}, want: "storage: overlay (STORAGE=overlay: the kernel's overlay, which mounted here)", driver: "overlay", mountProgram: "false"},
		{name: "fuse-overlayfs", params: []string{"STORAGE", "fuse-overlayfs"}, want: "storage: fuse-overlayfs (STORAGE=fuse-overlayfs)", driver: "overlay", mountProgram: "true"},
		{name: "vfs", params: []string{"STORAGE", "vfs"}, want: "storage: vfs (STORAGE=vfs)", driver: "vfs"},
		{name: "auto-without-fuse", confine: &Confinement{HideFuse: true},
			want: "storage: overlay (STORAGE=auto: the kernel's overlay mounted here)", driver: "overlay", mountProgram: "false"},
		{name: "auto-overlay-refused", confine: &Confinement{RefuseOverlayMount: true},
			want: "storage: fuse-overlayfs (STORAGE=auto: " + refused + "; /dev/fuse is here)", driver: "overlay", mountProgram: "true"},
		{name: "auto-overlay-refused-without-fuse", confine: &Confinement{RefuseOverlayMount: true, HideFuse: true},
			want: "storage: vfs (STORAGE=auto: " + refused + "; this container has no /dev/fuse)", driver: "vfs"},
		{name: "auto-user-namespace", confine: &Confinement{DropSysAdmin: true}, want: userNS, driver: "overlay"},
		// What a pod of the default catalog is: no CAP_SYS_ADMIN, no /dev/fuse.
		{name: "auto-user-namespace-without-fuse", confine: &Confinement{DropSysAdmin: true, HideFuse: true}, want: userNSNoFuse,
			driver: map[bool]string{true: "vfs", false: "overlay"}[oldBuildah]},
		{name: "fuse-overlayfs-user-namespace", params: []string{"STORAGE", "fuse-overlayfs"}, confine: &Confinement{DropSysAdmin: true},
			want: "storage: fuse-overlayfs (STORAGE=fuse-overlayfs)", driver: "overlay", mountProgram: "true"},
		{name: "overlay-refused", params: []string{"STORAGE", "overlay"}, confine: &Confinement{RefuseOverlayMount: true},
			want: "error: STORAGE=overlay: " + refused + ": overlay in a user namespace needs Linux 5.11 or later, and seccomp and AppArmor profiles that allow mount; or use STORAGE=auto"},
		{name: "fuse-overlayfs-without-fuse", params: []string{"STORAGE", "fuse-overlayfs"}, confine: &Confinement{HideFuse: true},
			want: "error: STORAGE=fuse-overlayfs: this container has no /dev/fuse. Only a catalog generated with build.storage: fuse-overlayfs asks for /dev/fuse"},
		{name: "old-storage-driver-overlay", params: []string{"STORAGE_DRIVER", "overlay"},
			want: "error: STORAGE_DRIVER was renamed STORAGE, and its overlay (through fuse-overlayfs) is now STORAGE=fuse-overlayfs: pass that, or leave STORAGE out for auto"},
		{name: "old-storage-driver-vfs", params: []string{"STORAGE_DRIVER", "vfs"}, want: "error: STORAGE_DRIVER was renamed STORAGE: pass STORAGE=vfs instead of STORAGE_DRIVER=vfs"},
		{name: "bad-storage", params: []string{"STORAGE", "btrfs"}, want: "error: STORAGE 'btrfs' is not a storage mode: use auto, overlay (the kernel's), fuse-overlayfs or vfs"},
		{name: "bad-source-date-epoch", params: []string{"SOURCE_DATE_EPOCH", "yesterday"},
			want: "error: SOURCE_DATE_EPOCH must be a whole number of seconds since 1970-01-01 UTC (e.g. git log -1 --format=%ct), not 'yesterday'"},
	}
	if oldBuildah {
		cases = append(cases, struct {
			name         string
			params       []string
			confine      *Confinement
			want, driver string
			mountProgram string
		}{name: "overlay-user-namespace-old-buildah", params: []string{"STORAGE", "overlay"}, confine: &Confinement{DropSysAdmin: true}, want: userNSOverlay})
	}
	type result struct{ name, digest string }
	var digests []result
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			params := Params(append([]string{"GIT_URL", url, "IMAGE", w.Image("storage-" + c.name), "TAG_SUFFIX", "-amd64",
				"PLATFORM", "linux/amd64", "TLS_VERIFY", "false", "SOURCE_DATE_EPOCH", sourceDateEpoch}, c.params...)...)
			params = dedupParams(append(params, ArrayParam("BUILD_ARGS", "BASE="+base)))
			r := w.Runner(t, w.Catalog)
			r.Confine = c.confine
			tr := r.RunTask(ctx, TaskRunRequest{Name: "tr-storage-" + c.name, Task: buildTask, Params: params})
			if !strings.Contains(tr.Log, c.want) {
				t.Errorf("log lacks %q:\n%s", c.want, tr.Log)
			}
			if c.driver == "" {
				if tr.Succeeded() {
					t.Fatalf("the TaskRun succeeded, want it to fail with %q", c.want)
				}
				if strings.Contains(tr.Log, "STEP 1/") {
					t.Errorf("buildah built although the step refused:\n%s", tr.Log)
				}
				return
			}
			if !tr.Succeeded() {
				t.Fatalf("TaskRun failed: %v\n%s", tr.Err, tr.Log)
			}
			if n := strings.Count(tr.Log, "\nstorage: "); n != 1 {
				t.Errorf("%d storage lines, want one", n)
			}
			storage := filepath.Join(tr.Dir, "volumes", "containers", "storage")
			if _, err := os.Stat(filepath.Join(storage, c.driver+"-images")); err != nil {
				t.Errorf("the build's storage has no %s images: %v", c.driver, err)
			}
			if c.mountProgram != "" {
				b, err := os.ReadFile(filepath.Join(storage, "overlay", ".has-mount-program"))
				if got := strings.TrimSpace(string(b)); err != nil || got != c.mountProgram {
					t.Errorf("overlay/.has-mount-program = %q (%v), want %q", got, err, c.mountProgram)
				}
			}
			if probes, _ := filepath.Glob(filepath.Join(storage, "overlay-probe.*")); len(probes) > 0 {
				t.Errorf("the overlay probe left %v", probes)
			}
			digest, _ := tr.Result("IMAGE_DIGEST")
			digests = append(digests, result{c.name, digest})
			ref, _ := tr.Result("IMAGE_REF")
			got, err := FileFromImage(ctx, ref, t.TempDir(), "/data/small/f1")
			if err != nil || string(got) != "file 1\nmore\n" {
				t.Errorf("/data/small/f1 = %q (%v), want the copied-up file", got, err)
			}
		})
	}
	t.Run("opaque-directory", func(t *testing.T) { testOpaque(ctx, t, w, base) })

	// The mode changes nothing in the image: one digest for all of them.
	for _, d := range digests[1:] {
		if d.digest != digests[0].digest {
			t.Errorf("storage %s pushed %s, storage %s %s: the image depends on the storage mode", d.name, d.digest, digests[0].name, digests[0].digest)
		}
	}
	t.Logf("%d builds, one digest %s", len(digests), digests[0].digest)
}

// dedupParams keeps the last of params that share a name, as a TaskRun
// given a param twice would be refused.
func dedupParams(ps v1.Params) v1.Params {
	var out v1.Params
	for i, p := range ps {
		last := true
		for _, q := range ps[i+1:] {
			if q.Name == p.Name {
				last = false
			}
		}
		if last {
			out = append(out, p)
		}
	}
	return out
}

// testOpaque: a directory of the base deleted and made again builds the same
// files in every mode, but the kernel's overlay writes its opaque marker into
// the layer and the others do not, so the digests differ (OpaqueDockerfile).
func testOpaque(ctx context.Context, t *testing.T, w *World, base string) {
	url := w.GitRepo(t, "opaque", map[string]string{"Dockerfile": OpaqueDockerfile})
	digests := map[string]string{}
	for _, storage := range []string{"overlay", "fuse-overlayfs", "vfs"} {
		params := Params("GIT_URL", url, "IMAGE", w.Image("opaque-"+storage), "TAG_SUFFIX", "-amd64", "PLATFORM", "linux/amd64",
			"TLS_VERIFY", "false", "SOURCE_DATE_EPOCH", sourceDateEpoch, "STORAGE", storage)
		tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{Name: "tr-opaque-" + storage, Task: buildTask,
			Params: append(params, ArrayParam("BUILD_ARGS", "BASE="+base))})
		if !tr.Succeeded() {
			t.Fatalf("%s: %v\n%s", storage, tr.Err, tr.Log)
		}
		ref, _ := tr.Result("IMAGE_REF")
		digests[storage], _ = tr.Result("IMAGE_DIGEST")
		if got, err := FileFromImage(ctx, ref, t.TempDir(), "/root/made-again"); err != nil || string(got) != "new\n" {
			t.Errorf("%s: /root/made-again = %q (%v)", storage, got, err)
		}
		entries, err := LayerEntries(ctx, ref, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if opaque := slices.Contains(entries, "root/.wh..wh..opq"); opaque != (storage == "overlay") {
			t.Errorf("%s: the layer has the opaque marker root/.wh..wh..opq: %v, want %v (entries %v)", storage, opaque, storage == "overlay", entries)
		}
	}
	if digests["fuse-overlayfs"] != digests["vfs"] || digests["overlay"] == digests["vfs"] {
		t.Errorf("digests %v: want fuse-overlayfs's equal to vfs's and overlay's different (its opaque marker)", digests)
	}
}
