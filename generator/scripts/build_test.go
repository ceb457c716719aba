package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeBuildah answers build.sh's buildah calls on vfs storage. Line N of
// $FAKE/bud.fail says how its Nth bud ends: "memfd" as containers/storage's
// re-exec does when the kernel refuses to seal its memfd copy of buildah
// (unshare.c's message, then buildah's), "other" as a RUN step that failed
// on its own, anything else (or no line) builds. Every call is recorded in
// $FAKE/calls.
const fakeBuildah = `#!/bin/sh
while [ $# -gt 0 ]; do
	case "$1" in
	--root | --runroot | --storage-driver | --storage-opt) shift 2 ;;
	*) break ;;
	esac
done
echo "$*" >>"$FAKE/calls"
case "$1" in
bud)
	n=$(($(cat "$FAKE/bud.count" 2>/dev/null || echo 0) + 1))
	echo "$n" >"$FAKE/bud.count"
	echo "STEP 1/2: FROM scratch"
	echo "STEP 2/2: RUN mkdir -p /data/small"
	case "$(sed -n "${n}p" "$FAKE/bud.fail")" in
	memfd)
		echo "Close_Fd sealing memfd copy: Device or resource busy" >&2
		echo 'Error: building at STEP "RUN mkdir -p /data/small": exit status 1' >&2
		exit 1
		;;
	other)
		echo "mkdir: can't create directory '/data/small': No space left on device" >&2
		echo 'Error: building at STEP "RUN mkdir -p /data/small": exit status 1' >&2
		exit 1
		;;
	esac
	echo "COMMIT registry.example.com/app:v1"
	;;
inspect) echo "$FAKE_PLATFORM/" ;;
from) echo working-container ;;
commit | rmi) ;;
push)
	while [ $# -gt 0 ]; do
		if [ "$1" = --digestfile ]; then printf 'sha256:%064d' 0 >"$2"; fi
		shift
	done
	;;
*) echo "fake buildah: unexpected $*" >&2; exit 2 ;;
esac
`

// TestBuildRetriesMemfdSeal runs build.sh alone, against a fake buildah:
// a build that died in buildah's re-exec ("sealing memfd copy: Device or
// resource busy", issue 31) is built again, at most twice, saying why; any
// other failure, including one on a retry, is not.
func TestBuildRetriesMemfdSeal(t *testing.T) {
	platform := "linux/" + runtime.GOARCH
	const retried = "warning: buildah failed to re-execute itself (above: 'sealing memfd copy: Device or resource busy'"
	for _, tc := range []struct {
		name     string
		buds     []string // how each bud ends, in order
		cache    bool
		wantBuds int
		wantOut  []string
		wantErr  string // the step fails with this line
	}{
		{name: "memfd once", buds: []string{"memfd"}, wantBuds: 2,
			wantOut: []string{retried, "building again (retry 1 of 2)", "pushed registry.example.com/app@sha256:"}},
		{name: "memfd twice", buds: []string{"memfd", "memfd"}, wantBuds: 3,
			wantOut: []string{"(retry 1 of 2)", "(retry 2 of 2)", "pushed registry.example.com/app@sha256:"}},
		{name: "memfd every time", buds: []string{"memfd", "memfd", "memfd", "memfd"}, wantBuds: 3,
			wantErr: "error: buildah bud failed for " + platform + ": buildah could not re-execute itself ('sealing memfd copy: Device or resource busy') in 3 attempts"},
		{name: "other failure", buds: []string{"other"}, wantBuds: 1,
			wantErr: "error: buildah bud failed for " + platform + " (its output is above)"},
		{name: "memfd then other failure", buds: []string{"memfd", "other"}, wantBuds: 2,
			wantOut: []string{"(retry 1 of 2)"},
			wantErr: "error: buildah bud failed for " + platform + " (its output is above)"},
		{name: "memfd once with the layer cache", buds: []string{"memfd"}, cache: true, wantBuds: 2,
			wantOut: []string{"layer cache: registry.example.com/app-cache", "(retry 1 of 2)", "pushed registry.example.com/app@sha256:"}},
		{name: "no failure", wantBuds: 1, wantOut: []string{"pushed registry.example.com/app@sha256:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fake, bin, src := filepath.Join(dir, "fake"), filepath.Join(dir, "bin"), filepath.Join(dir, "src")
			commit := filepath.Join(src, ".worktrees", "0123456789abcdef0123456789abcdef01234567")
			for _, d := range []string{fake, bin, commit} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(".worktrees/0123456789abcdef0123456789abcdef01234567", filepath.Join(src, "checkout")); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(commit, "Dockerfile"), "FROM scratch\nRUN mkdir -p /data/small\n", 0o644)
			write(t, filepath.Join(bin, "buildah"), fakeBuildah, 0o755)
			write(t, filepath.Join(fake, "bud.fail"), strings.Join(tc.buds, "\n")+"\n", 0o644)
			write(t, filepath.Join(dir, "commit-time"), "1700000000", 0o644)
			cmd := exec.Command("sh", "-c", Build, "build")
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE=" + fake, "FAKE_PLATFORM=" + platform,
				"IMAGE=registry.example.com/app:v1", "PLATFORM=" + platform, "STORAGE=vfs",
				"CACHE=" + map[bool]string{true: "true", false: "false"}[tc.cache],
				"CONTAINERS_ROOT=" + filepath.Join(dir, "storage"), "SOURCE_ROOT=" + src, "SOURCE_LINK=checkout",
				"COMMIT_TIME_FILE=" + filepath.Join(dir, "commit-time"),
				"RESULT_IMAGE_URL=" + filepath.Join(dir, "url"), "RESULT_IMAGE_DIGEST=" + filepath.Join(dir, "digest"),
				"RESULT_IMAGE_REF=" + filepath.Join(dir, "ref")}
			out, err := cmd.CombinedOutput()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(string(out), tc.wantErr) {
					t.Fatalf("err %v, output:\n%s\nwant a failure saying %q", err, out, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			// Every bud after the first is a retry, and says so.
			if n := strings.Count(string(out), retried); n != tc.wantBuds-1 {
				t.Errorf("%d retries said, want %d:\n%s", n, tc.wantBuds-1, out)
			}
			var buds []string
			for _, c := range strings.Split(mustRead(t, filepath.Join(fake, "calls")), "\n") {
				if strings.HasPrefix(c, "bud ") {
					buds = append(buds, c)
				}
			}
			if len(buds) != tc.wantBuds {
				t.Fatalf("%d buds, want %d:\n%s\noutput:\n%s", len(buds), tc.wantBuds, strings.Join(buds, "\n"), out)
			}
			for i, b := range buds {
				if b != buds[0] {
					t.Errorf("bud %d differs from the first:\n%s\n%s", i+1, b, buds[0])
				}
				if tc.cache && !strings.Contains(b, "--cache-from registry.example.com/app-cache") {
					t.Errorf("bud %d lost the layer cache: %s", i+1, b)
				}
			}
		})
	}
}
