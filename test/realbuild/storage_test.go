package realbuild

import (
	"archive/tar"
	"context"
	"os"
	"path"
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
			want: "error: SOURCE_DATE_EPOCH must be empty (the commit's time, the default), a whole number of seconds since 1970-01-01 UTC (e.g. git log -1 --format=%ct) or now (the build's own time), not 'yesterday'"},
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
	testModeShows(ctx, t, w, base)

	// The mode changes nothing in the image: one digest for all of them.
	if len(digests) == 0 {
		return // -run picked none of the cases above
	}
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

// testModeShows covers where the digest does depend on the storage mode:
// the same files in every mode, but the kernel's overlay's native diff
// writes something into the layer that fuse-overlayfs's and vfs's tree
// diffs do not, so its digest differs and theirs agree.
func testModeShows(ctx context.Context, t *testing.T, w *World, base string) {
	cases := []struct {
		name, dockerfile string
		entries          []string // in the last layer, in every mode
		// overlayMark finds, in the last layer, what only the kernel's
		// overlay writes; "" when it is not there.
		overlayMark func(hs []*tar.Header) string
	}{
		{
			// A directory of the base deleted and made again: the kernel's
			// overlay marks it opaque (OpaqueDockerfile).
			name: "opaque-directory", dockerfile: OpaqueDockerfile, entries: []string{"root/made-again"},
			overlayMark: func(hs []*tar.Header) string {
				for _, h := range hs {
					if h.Name == "root/.wh..wh..opq" {
						return h.Name
					}
				}
				return ""
			},
		},
		{
			// Two files of the base deleted: the kernel's overlay's whiteouts
			// share an inode, and the second keeps a link name
			// (SharedWhiteoutsDockerfile).
			name: "shared-whiteouts", dockerfile: SharedWhiteoutsDockerfile, entries: []string{"bin/.wh.less", "bin/.wh.vi"},
			overlayMark: func(hs []*tar.Header) string {
				for _, h := range hs {
					if strings.HasPrefix(path.Base(h.Name), ".wh.") && h.Typeflag == tar.TypeReg && h.Linkname != "" {
						return h.Name + " with Linkname " + h.Linkname
					}
				}
				return ""
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := w.GitRepo(t, c.name, map[string]string{"Dockerfile": c.dockerfile})
			digests := map[string]string{}
			for _, storage := range []string{"overlay", "fuse-overlayfs", "vfs"} {
				params := Params("GIT_URL", url, "IMAGE", w.Image(c.name+"-"+storage), "TAG_SUFFIX", "-amd64", "PLATFORM", "linux/amd64",
					"TLS_VERIFY", "false", "SOURCE_DATE_EPOCH", sourceDateEpoch, "STORAGE", storage)
				tr := w.Runner(t, w.Catalog).RunTask(ctx, TaskRunRequest{Name: "tr-" + c.name + "-" + storage, Task: buildTask,
					Params: append(params, ArrayParam("BUILD_ARGS", "BASE="+base))})
				if !tr.Succeeded() {
					t.Fatalf("%s: %v\n%s", storage, tr.Err, tr.Log)
				}
				ref, _ := tr.Result("IMAGE_REF")
				digests[storage], _ = tr.Result("IMAGE_DIGEST")
				hs, err := LayerHeaders(ctx, ref, t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, h := range hs {
					names = append(names, h.Name)
				}
				for _, e := range c.entries {
					if !slices.Contains(names, e) {
						t.Errorf("%s: the last layer has no %s (entries %v)", storage, e, names)
					}
				}
				mark := c.overlayMark(hs)
				t.Logf("%s: %s, last layer %v, overlay's mark %q", storage, digests[storage], names, mark)
				if (mark != "") != (storage == "overlay") {
					t.Errorf("%s: the kernel overlay's mark in the layer: %q, want it only with overlay (entries %v)", storage, mark, names)
				}
			}
			if digests["fuse-overlayfs"] != digests["vfs"] || digests["overlay"] == digests["vfs"] {
				t.Errorf("digests %v: want fuse-overlayfs's equal to vfs's and overlay's different", digests)
			}
		})
	}
}
