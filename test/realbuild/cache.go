package realbuild

import (
	"debug/elf"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// LayersDockerfile is the layer-cache fixture: two expensive steps early,
// as dependency installs and compiles are, then a file that changes often
// and a step after it. BASE is the busybox image the test pushes; work is
// the cost, in MiB hashed by each expensive step. Each RUN prints "ran: X",
// which its STEP line does not contain: the log shows which steps ran. The
// random files make a step that ran again differ from one taken from the
// cache.
//
// No ARG after FROM: buildah 1.28 looks an ARG step up in local storage only,
// never in --cache-from, so on a pod's empty storage the cache would end at
// the first one (buildah v1.40.1 looks it up remotely too).
func LayersDockerfile(work int) string {
	return fmt.Sprintf(`ARG BASE
FROM ${BASE}
RUN s=deps; echo "ran: $s"; dd if=/dev/zero bs=1M count=%[1]d 2>/dev/null | sha256sum >/deps.sum; head -c 4194304 /dev/urandom >/deps.bin
RUN s=compile; echo "ran: $s"; dd if=/dev/zero bs=1M count=%[1]d 2>/dev/null | sha256sum >/compile.sum; head -c 1048576 /dev/urandom >/app.bin
COPY late.txt /late.txt
RUN s=late; echo "ran: $s"; sha256sum /late.txt >/late.sum
`, work)
}

// LayersFixture is the repository the layer-cache builds build: branch main,
// and branch late-change, which changes late.txt only.
type LayersFixture struct {
	Name, URL        string
	Main, LateChange string // commits
}

// Layers makes the layer-cache fixture repository for a cost (once per World
// and cost) and serves it from the World's git daemon.
func (w *World) Layers(tb testing.TB, work int) *LayersFixture {
	tb.Helper()
	if f := w.layers[work]; f != nil {
		return f
	}
	base := w.gitBase
	name := fmt.Sprintf("layers-%d", work)
	src := filepath.Join(filepath.Dir(base), name+"-src")
	f := &LayersFixture{Name: name + ".git"}
	write := func(name, content string) {
		if err := os.MkdirAll(src, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	git := func(args ...string) string { return FixtureGit(tb, src, filepath.Dir(base), args...) }
	write("Dockerfile", LayersDockerfile(work))
	write("late.txt", "version 1\n")
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "layers fixture")
	f.Main = git("rev-parse", "HEAD")
	git("checkout", "-q", "-b", "late-change")
	write("late.txt", "version 2\n")
	git("commit", "-q", "-am", "change the late file only")
	f.LateChange = git("rev-parse", "HEAD")
	if out, err := exec.Command("git", "clone", "-q", "--bare", src, filepath.Join(base, f.Name)).CombinedOutput(); err != nil {
		tb.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	f.URL = w.Git.URL(f.Name)
	w.Git.WaitReady(tb, f.URL)
	if w.layers == nil {
		w.layers = map[int]*LayersFixture{}
	}
	w.layers[work] = f
	return f
}

// BusyboxBase makes a busybox image without pulling anything (scratch, the
// host's static /bin/busybox and a link per applet), pushes it to the test
// registry, and returns its reference (once per World). FROM it, RUN steps
// have a shell; only amd64 (this machine's) runs them without emulation.
func (w *World) BusyboxBase(tb testing.TB) string {
	tb.Helper()
	if w.busybox == "" {
		w.busybox = w.Registry.Addr + "/base/busybox:1.35"
		PushBusyboxBase(tb, w.busybox)
	}
	return w.busybox
}

// PushBusyboxBase makes BusyboxBase's image and pushes it to ref, on any
// plain-HTTP registry (the cluster test's node registry too: buildah runs
// behind SkopeoPrefix).
func PushBusyboxBase(tb testing.TB, ref string) {
	tb.Helper()
	const busybox = "/bin/busybox"
	f, err := elf.Open(busybox)
	if err != nil {
		tb.Fatalf("the layer-cache base image needs a static %s: apt-get install -y busybox-static (%v)", busybox, err)
	}
	static := true
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			static = false
		}
	}
	f.Close()
	if !static {
		tb.Fatalf("%s is dynamically linked and would not run FROM scratch: apt-get install -y busybox-static", busybox)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		tb.Fatalf("%s --list: %v", busybox, err)
	}
	dir := tb.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), b, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			tb.Fatal(err)
		}
	}
	for _, d := range []string{"tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	bah := scratchBuildah(tb, dir)
	ctr := bah("from", "scratch")
	bah("copy", ctr, rootfs, "/")
	bah("config", "--env", "PATH=/bin", "--cmd", "/bin/sh", "--os", "linux", "--arch", "amd64", ctr)
	bah("commit", "--quiet", "--rm", ctr, "localhost/busybox-base")
	bah("push", "--quiet", "--tls-verify=false", "localhost/busybox-base", "docker://"+ref)
}

// scratchBuildah runs the host's buildah on a vfs storage of its own under
// dir (nothing to unmount, nothing shared with a TaskRun), behind
// SkopeoPrefix so that it reaches the registry skopeo reaches, and returns
// its trimmed output.
func scratchBuildah(tb testing.TB, dir string) func(args ...string) string {
	return func(args ...string) string {
		tb.Helper()
		argv := append(append(append([]string{}, SkopeoPrefix...), "buildah", "--root", filepath.Join(dir, "storage"),
			"--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"), args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			tb.Fatalf("buildah %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
}

// Step is one Dockerfile instruction in buildah's output.
type Step struct {
	N           int
	Instruction string
	Output      string // what buildah printed until the next step
}

// UsedCache says whether buildah took the step's result from a cache.
func (s Step) UsedCache() bool { return strings.Contains(s.Output, "--> Using cache ") }

var stepLine = regexp.MustCompile(`(?m)^STEP (\d+)/\d+: (.*)$`)

// BuildSteps splits a build's log into buildah's steps. A build that ran
// twice (the cache fallback) yields the steps of both attempts, in order.
func BuildSteps(log string) []Step {
	var steps []Step
	idx := stepLine.FindAllStringSubmatchIndex(log, -1)
	for i, m := range idx {
		end := len(log)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		n, _ := strconv.Atoi(log[m[2]:m[3]])
		steps = append(steps, Step{N: n, Instruction: log[m[4]:m[5]], Output: log[m[1]:end]})
	}
	return steps
}

// RefusingRegistry is a proxy to the test registry that refuses to store
// any manifest but <repo>:cache-probe: the build step's cache probe passes,
// and buildah's cache pushes during the build fail, as with a registry that
// fails or a quota that fills up mid-build. Stopped by tb's cleanup.
func RefusingRegistry(tb testing.TB, upstream string) string {
	tb.Helper()
	target, err := url.Parse("http://" + upstream)
	if err != nil {
		tb.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	manifest := regexp.MustCompile(`^/v2/.+/manifests/([^/]+)$`)
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if m := manifest.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodPut && m[1] != "cache-probe" {
				rw.Header().Set("Content-Type", "application/json")
				rw.WriteHeader(http.StatusForbidden)
				fmt.Fprint(rw, `{"errors":[{"code":"DENIED","message":"this registry refuses the push (test)"}]}`)
				return
			}
			proxy.ServeHTTP(rw, r)
		}),
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return addr
}
