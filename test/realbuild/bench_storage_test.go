package realbuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// storageBench is what one build in BenchmarkStorageModes runs in its
// container, on fresh storage: buildah bud of /ctx/Dockerfile with MODE's
// flags (those the build step passes), timed inside the container, then the
// image's digest (an oci: push, no registry) and which mount program the
// overlay driver took, so a silent fallback cannot pass for the kernel's.
const storageBench = `set -eu
case "$MODE" in
overlay) set -- --storage-driver overlay --storage-opt overlay.mount_program= ;;
fuse-overlayfs) set -- --storage-driver overlay --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs ;;
vfs) set -- --storage-driver vfs ;;
esac
layers=--layers=false
[ "$LAYERS" != true ] || layers=--layers
start=$(date +%s%N)
buildah "$@" bud "$layers" --quiet --timestamp 0 --tls-verify=false --build-arg "BASE=$BASE" --tag localhost/bench /ctx >/tmp/bud.log 2>&1 || { cat /tmp/bud.log; exit 1; }
end=$(date +%s%N)
buildah "$@" push --quiet --digestfile /tmp/digest localhost/bench oci:/tmp/oci >/dev/null
took=$(cat /var/lib/containers/storage/overlay/.has-mount-program 2>/dev/null || echo none)
echo "result $MODE $(( (end - start) / 1000000 )) $(cat /tmp/digest) $took"
`

// benchStorageReps is how many times each Dockerfile is built in each mode.
const benchStorageReps = 3

// BenchmarkStorageModes compares buildah's storage modes in one run on the
// same Dockerfiles (BenchIODockerfile: small files, a big file, copy-ups;
// BenchCPUDockerfile: hashing in RUN steps), in real containers as the
// build pods run them: containerd + runc, the runtime's default
// capabilities, the generated seccomp profile, the buildah image of
// test/cluster/build-images.sh, fresh storage on a bind-mounted host
// directory for every build (as a pod's emptyDir), /dev/fuse passed only to
// fuse-overlayfs. It prints each build's wall time, the mean per mode, and
// the ratio of each mode against fuse-overlayfs. The modes take turns
// (rotated every round) so the machine's load falls on all of them alike.
//
//	go test -run '^$' -bench BenchmarkStorageModes -benchtime 1x ./test/realbuild/
func BenchmarkStorageModes(b *testing.B) {
	cw := newContainerWorld(b)
	base := cw.BusyboxBase(b)
	work := filepath.Join(cw.Work, "..", "bench-storage")
	// io-heavy twice: as the build step runs it by default (one layer for
	// all RUN steps: files made by an earlier RUN are already in the upper
	// directory, nothing is copied up), and with --layers, as it runs with
	// the layer cache on (a layer per step: the later RUNs copy up the big
	// file and the small ones, and vfs copies the whole tree for each).
	// big-base: small changes FROM a 256 MiB base, where vfs pays for its
	// copy of the base.
	dockerfiles := []struct {
		name, content string
		layers        bool
		base          string
	}{
		{"io-heavy", BenchIODockerfile, false, base},
		{"io-heavy --layers", BenchIODockerfile, true, base},
		{"big-base", BenchBigBaseDockerfile, false, cw.BigBase(b)},
		{"cpu-heavy", BenchCPUDockerfile, false, base},
	}
	modes := []string{"overlay", "fuse-overlayfs", "vfs"}
	ctxDir := func(name string) string { return filepath.Join(work, "ctx-"+strings.Fields(name)[0]) }
	for _, df := range dockerfiles {
		dir := ctxDir(df.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df.content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	script := filepath.Join(work, "bench.sh")
	if err := os.WriteFile(script, []byte(storageBench), 0o755); err != nil {
		b.Fatal(err)
	}
	type key struct{ dockerfile, mode string }
	times := map[key][]time.Duration{}
	digests := map[key]string{}
	build := func(df string, layers bool, base, mode string, n int) {
		store := filepath.Join(work, fmt.Sprintf("storage-%s-%s-%d", strings.ReplaceAll(df, " ", ""), mode, n))
		if err := os.MkdirAll(store, 0o755); err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := os.RemoveAll(store); err != nil {
				b.Errorf("removing %s: %v", store, err)
			}
		}()
		var devices []string
		if mode == "fuse-overlayfs" {
			devices = []string{"/dev/fuse"}
		}
		var out strings.Builder
		code, err := cw.ctrd.Run(context.Background(), containerID("bench-"+mode), ContainerRun{
			Image: cw.image, Seccomp: cw.seccomp, Devices: devices,
			Env: []string{"MODE=" + mode, "BASE=" + base, "LAYERS=" + strconv.FormatBool(layers)},
			Mounts: []Bind{
				{Host: store, Path: "/var/lib/containers"},
				{Host: ctxDir(df), Path: "/ctx", ReadOnly: true},
				{Host: script, Path: "/bench.sh", ReadOnly: true},
			},
			Args: []string{"/bin/sh", "/bench.sh"}, Stdout: &out,
		})
		if err != nil || code != 0 {
			b.Fatalf("%s on %s: exit %d, %v\n%s", df, mode, code, err, out.String())
		}
		var f []string
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, "result ") {
				f = strings.Fields(line)
			}
		}
		if len(f) != 5 {
			b.Fatalf("%s on %s: no result line:\n%s", df, mode, out.String())
		}
		// The overlay driver falls back to fuse-overlayfs on its own when the
		// kernel refuses: the numbers must be the mode's.
		if want := map[string]string{"overlay": "false", "fuse-overlayfs": "true", "vfs": "none"}[mode]; f[4] != want {
			b.Fatalf("%s on %s: .has-mount-program %q, want %q: buildah did not build on %s", df, mode, f[4], want, mode)
		}
		ms, err := strconv.Atoi(f[2])
		if err != nil {
			b.Fatal(err)
		}
		k := key{df, mode}
		times[k] = append(times[k], time.Duration(ms)*time.Millisecond)
		digests[k] = f[3]
		fmt.Printf("  %-17s %-14s round %d: %6.2f s\n", df, mode, n+1, float64(ms)/1000)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for n := 0; n < benchStorageReps; n++ {
			for _, df := range dockerfiles {
				for j := range modes {
					build(df.name, df.layers, df.base, modes[(j+n)%len(modes)], n)
				}
			}
		}
	}
	b.StopTimer()
	mean := func(ds []time.Duration) float64 {
		var s time.Duration
		for _, d := range ds {
			s += d
		}
		return s.Seconds() / float64(len(ds))
	}
	fmt.Printf("storage modes, buildah in a container (%s, the runtime's default capabilities), %d builds each, mean wall time of buildah bud:\n", cw.buildah, len(times[key{"io-heavy", "vfs"}]))
	for _, df := range dockerfiles {
		fuse := mean(times[key{df.name, "fuse-overlayfs"}])
		for _, m := range modes {
			k := key{df.name, m}
			ts := append([]time.Duration{}, times[k]...)
			sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
			var each []string
			for _, d := range ts {
				each = append(each, fmt.Sprintf("%.1f", d.Seconds()))
			}
			fmt.Printf("  %-17s %-14s %6.2f s (%s)  %s/fuse-overlayfs = %.2f  digest %s\n", df.name, m, mean(times[k]), strings.Join(each, ", "), m, mean(times[k])/fuse, digests[k])
			b.ReportMetric(mean(times[k]), strings.ReplaceAll(df.name, " --", "-")+"-"+m+"-s")
		}
	}
}
