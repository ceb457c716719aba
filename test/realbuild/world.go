package realbuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// World is what every real-build test shares: the committed catalog, a
// registry and a git daemon on 127.0.0.1, and the fixture repository.
type World struct {
	Repo     string // the module root
	Catalog  *Catalog
	Registry *Registry
	Git      *GitDaemon
	Fixture  *Fixture
	Work     string                 // TaskRun directories
	self     string                 // this test binary: the git-sync stand-in
	gitBase  string                 // what the git daemon serves
	layers   map[int]*LayersFixture // by cost
	busybox  string
}

// tools maps each binary the tests run to the Debian package that has it.
var tools = []struct{ bin, pkg string }{
	{"buildah", "buildah"},
	{"skopeo", "skopeo"},
	{"fuse-overlayfs", "fuse-overlayfs"},
	{"docker-registry", "docker-registry"},
	{"git", "git"},
}

// RequireTools fails (never skips) when a tool is missing, naming its package.
func RequireTools(tb testing.TB) {
	tb.Helper()
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install -y %s)", t.bin, t.pkg))
		}
	}
	if _, err := os.Stat("/usr/lib/git-core/git-daemon"); err != nil {
		missing = append(missing, "git daemon (apt-get install -y git)")
	}
	if len(missing) > 0 {
		tb.Fatalf("the real-build test needs: %s", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		tb.Fatalf("the real-build test runs buildah as root (BUILDAH_ISOLATION=chroot): run it as root")
	}
}

// NewWorld starts the registry and git daemon and makes the fixture; all of
// it is stopped and removed by tb's cleanup, also when the test fails.
func NewWorld(tb testing.TB) *World {
	tb.Helper()
	RequireTools(tb)
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	w := &World{Repo: filepath.Clean(filepath.Join(wd, "..", ".."))}
	if _, err := os.Stat(filepath.Join(w.Repo, "go.mod")); err != nil {
		tb.Fatalf("module root not found from %s: %v", wd, err)
	}
	if w.self, err = os.Executable(); err != nil {
		tb.Fatal(err)
	}
	if w.Catalog, err = LoadCatalog(w.Repo); err != nil {
		tb.Fatalf("loading the committed catalog: %v", err)
	}
	base := tb.TempDir()
	w.Work = filepath.Join(base, "runs")
	if err := os.MkdirAll(w.Work, 0o755); err != nil {
		tb.Fatal(err)
	}
	// Registered after TempDir, so it runs before the removal: a mount left by
	// a killed fuse-overlayfs would otherwise make the removal fail.
	tb.Cleanup(func() {
		if err := UnmountUnder(base); err != nil {
			tb.Errorf("unmounting under %s: %v", base, err)
		}
	})
	w.Registry = StartRegistry(tb, filepath.Join(base, "registry"))
	w.gitBase = filepath.Join(base, "git")
	w.Fixture = MakeFixture(tb, w.gitBase)
	w.Git = StartGitDaemon(tb, w.gitBase)
	w.Fixture.URL = w.Git.URL(w.Fixture.Name)
	w.Git.WaitReady(tb, w.Fixture.URL)
	return w
}

// Runner returns a Runner for cat whose step output goes to tb's log.
func (w *World) Runner(tb testing.TB, cat *Catalog) *Runner {
	return &Runner{Catalog: cat, WorkDir: w.Work, GitSync: w.self, Timeout: 4 * time.Minute, Out: tbWriter{tb}}
}

// Image is a tag in the test registry.
func (w *World) Image(tag string) string { return w.Registry.Addr + "/multiarch/app:" + tag }

// Repository is Image's repository.
func (w *World) Repository() string { return w.Registry.Addr + "/multiarch/app" }

type tbWriter struct{ tb testing.TB }

func (t tbWriter) Write(b []byte) (int, error) {
	t.tb.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// Params builds string params from name, value pairs.
func Params(nv ...string) v1.Params {
	var ps v1.Params
	for i := 0; i+1 < len(nv); i += 2 {
		ps = append(ps, v1.Param{Name: nv[i], Value: *v1.NewStructuredValues(nv[i+1])})
	}
	return ps
}

// ArrayParam builds an array param.
func ArrayParam(name string, values ...string) v1.Param {
	return v1.Param{Name: name, Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: append([]string{}, values...)}}
}

// FreePort returns a port nothing listens on at the moment on 127.0.0.1.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemon is a long-running process this test started: it is stopped by PID
// (its process group), and Pdeathsig takes it down if the test binary dies.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startDaemon(tb testing.TB, name, logFile string, argv ...string) *daemon {
	tb.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		tb.Fatal(err)
	}
	d := &daemon{name: name, log: logFile, done: make(chan struct{})}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = d.cmd.Wait()
		f.Close()
		close(d.done)
	}()
	tb.Cleanup(d.stop)
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) stop() {
	pid := d.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-d.done
	}
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Registry is Debian's docker-registry (distribution) serving plain HTTP on
// 127.0.0.1 with its data in a temporary directory, or HTTPS (StartTLSRegistry).
type Registry struct {
	Addr   string
	d      *daemon
	base   string // http://addr or https://addr
	client *http.Client
}

// StartRegistry starts a registry and waits until it answers.
func StartRegistry(tb testing.TB, dir string) *Registry {
	return startRegistry(tb, dir, nil)
}

// registryTLS is what an HTTPS registry serves with, and the client that
// trusts it.
type registryTLS struct {
	certFile, keyFile string
	client            *http.Client
}

func startRegistry(tb testing.TB, dir string, tls *registryTLS) *Registry {
	tb.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		tb.Fatal(err)
	}
	r := &Registry{Addr: "127.0.0.1:" + strconv.Itoa(FreePort(tb)), client: http.DefaultClient}
	r.base = "http://" + r.Addr
	tlsCfg := ""
	if tls != nil {
		r.base, r.client = "https://"+r.Addr, tls.client
		tlsCfg = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", tls.certFile, tls.keyFile)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), r.Addr, tlsCfg)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	r.d = startDaemon(tb, "docker-registry", filepath.Join(dir, "registry.log"), "docker-registry", "serve", cfgFile)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := r.client.Get(r.base + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if r.d.exited() || time.Now().After(deadline) {
			tb.Fatalf("docker-registry did not come up on %s: %v\n%s", r.Addr, err, r.d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Tags lists a repository's tags; a repository that does not exist has none.
func (r *Registry) Tags(repo string) ([]string, error) {
	resp, err := r.client.Get(r.base + "/v2/" + repo + "/tags/list")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tags/list of %s: %s", repo, resp.Status)
	}
	var tl struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
		return nil, err
	}
	sort.Strings(tl.Tags)
	return tl.Tags, nil
}

// GitDaemon is `git daemon` serving a directory of repositories on 127.0.0.1.
type GitDaemon struct {
	Addr string
	d    *daemon
}

// StartGitDaemon serves every repository under base, read-only.
func StartGitDaemon(tb testing.TB, base string) *GitDaemon {
	tb.Helper()
	port := FreePort(tb)
	g := &GitDaemon{Addr: "127.0.0.1:" + strconv.Itoa(port)}
	g.d = startDaemon(tb, "git daemon", filepath.Join(filepath.Dir(base), "git-daemon.log"),
		"git", "daemon", "--listen=127.0.0.1", "--port="+strconv.Itoa(port), "--base-path="+base,
		"--export-all", "--reuseaddr", "--informative-errors", base)
	return g
}

// URL is a served repository's URL.
func (g *GitDaemon) URL(name string) string { return "git://" + g.Addr + "/" + name }

// WaitReady waits until url can be listed.
func (g *GitDaemon) WaitReady(tb testing.TB, url string) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command("git", "ls-remote", url).CombinedOutput()
		if err == nil {
			return
		}
		if g.d.exited() || time.Now().After(deadline) {
			tb.Fatalf("git daemon does not serve %s: %v: %s\n%s", url, err, out, g.d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Fixture is the repository the builds build.
type Fixture struct {
	Name        string
	URL         string
	Commit      string // main
	FirstCommit string // main's parent, also tagged Tag and DateTag
	Tag         string
	DateTag     string            // all digits, so also a string of hex digits
	Binaries    map[string][]byte // GOARCH -> bin/app-<arch>
}

const fixtureMain = `package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// "record FILE" writes the GOARCH this was built for and the machine the
// kernel reports: under qemu-user an arm64 binary sees aarch64.
// "spin N" hashes a 1 MiB buffer N times, a CPU-bound build step, and says
// how long that took.
func main() {
	if len(os.Args) == 3 && os.Args[1] == "spin" {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			panic(err)
		}
		buf := make([]byte, 1<<20)
		start := time.Now()
		for i := 0; i < n; i++ {
			sum := sha256.Sum256(buf)
			buf[i%len(buf)] = sum[0]
		}
		fmt.Printf("spin %d on %s: %d ms\n", n, runtime.GOARCH, time.Since(start).Milliseconds())
		return
	}
	if len(os.Args) >= 3 && os.Args[1] == "io" {
		if err := ioStep(os.Args[2:]); err != nil {
			panic(err)
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "eat" {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			panic(err)
		}
		// Touch every page, so that it is resident and counts against the
		// memory limit.
		buf := make([]byte, n<<20)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1
		}
		fmt.Printf("ate %d MiB\n", n)
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "record" {
		var u syscall.Utsname
		if err := syscall.Uname(&u); err != nil {
			panic(err)
		}
		var m strings.Builder
		for _, c := range u.Machine {
			if c == 0 {
				break
			}
			m.WriteByte(byte(c))
		}
		if err := os.WriteFile(os.Args[2], []byte(runtime.GOARCH+" "+m.String()+"\n"), 0o644); err != nil {
			panic(err)
		}
		return
	}
	fmt.Println("hello from", runtime.GOARCH)
}

// ioStep is one step of the storage bench's io-heavy Dockerfile
// (StorageDockerfile), for images without a shell: "small N" writes N small
// files in /data/small, "big MIB" a file of MIB MiB of zeros, /data/big,
// "append" appends to the f1* files and to the big file, "rm" removes the
// f3* files.
func ioStep(args []string) error {
	n := 0
	if len(args) == 2 {
		var err error
		if n, err = strconv.Atoi(args[1]); err != nil {
			return err
		}
	}
	if err := os.MkdirAll("/data/small", 0o755); err != nil {
		return err
	}
	appendTo := func(path, s string) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(s); err != nil {
			return err
		}
		return f.Close()
	}
	switch args[0] {
	case "small":
		for i := 0; i < n; i++ {
			if err := os.WriteFile(fmt.Sprintf("/data/small/f%d", i), []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
				return err
			}
		}
	case "big":
		f, err := os.Create("/data/big")
		if err != nil {
			return err
		}
		buf := make([]byte, 1<<20)
		for i := 0; i < n; i++ {
			if _, err := f.Write(buf); err != nil {
				return err
			}
		}
		return f.Close()
	case "append":
		files, _ := filepath.Glob("/data/small/f1*")
		for _, f := range files {
			if err := appendTo(f, "more\n"); err != nil {
				return err
			}
		}
		return appendTo("/data/big", "tail\n")
	case "rm":
		files, _ := filepath.Glob("/data/small/f3*")
		for _, f := range files {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("io %s: want small N, big MIB, append or rm", args[0])
	}
	return nil
}
`

// FixtureDockerfile is the Dockerfile: no RUN step, so it builds for
// any architecture without emulation.
const FixtureDockerfile = "FROM scratch\nARG TARGETARCH\nCOPY bin/app-${TARGETARCH} /app\n"

// FixtureRunDockerfile runs the arm64 binary during the build: with FROM
// scratch there is no shell, so the binary itself is the RUN step.
const FixtureRunDockerfile = "FROM scratch\nARG TARGETARCH\nCOPY bin/app-${TARGETARCH} /app\nRUN [\"/app\", \"record\", \"/built-on\"]\n"

// FixtureMemDockerfile has a RUN step that needs 512 MiB of memory.
const FixtureMemDockerfile = "FROM scratch\nARG TARGETARCH\nCOPY bin/app-${TARGETARCH} /app\nRUN [\"/app\", \"eat\", \"512\"]\n"

// FixtureIODockerfile is the storage bench's io-heavy Dockerfile
// (BenchIODockerfile) FROM scratch, its RUN steps the fixture's io: it
// builds for either architecture (emulated or not), so BenchmarkPhases'
// two-arch runs build it.
const FixtureIODockerfile = "FROM scratch\nARG TARGETARCH\nCOPY bin/app-${TARGETARCH} /app\n" +
	"RUN [\"/app\", \"io\", \"small\", \"3000\"]\nRUN [\"/app\", \"io\", \"big\", \"200\"]\n" +
	"RUN [\"/app\", \"io\", \"append\"]\nRUN [\"/app\", \"io\", \"rm\"]\n"

// FixtureCPUDockerfile has a CPU-bound RUN step (see fixtureMain's spin),
// for comparing a native build with an emulated one.
const FixtureCPUDockerfile = "FROM scratch\nARG TARGETARCH\nCOPY bin/app-${TARGETARCH} /app\nRUN [\"/app\", \"spin\", \"800\"]\n"

// MakeFixture creates <base>/app.git: a Go program cross-compiled with
// CGO_ENABLED=0 into bin/app-amd64 and bin/app-arm64, and the Dockerfiles.
func MakeFixture(tb testing.TB, base string) *Fixture {
	tb.Helper()
	f := &Fixture{Name: "app.git", Tag: "v0.1.0", DateTag: "20240115", Binaries: map[string][]byte{}}
	src := filepath.Join(base, "src")
	write := func(name, content string) {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	write("go.mod", "module example.com/app\n\ngo 1.22\n")
	write("main.go", fixtureMain)
	write("Dockerfile", FixtureDockerfile)
	write("Dockerfile.run", FixtureRunDockerfile)
	write("Dockerfile.cpu", FixtureCPUDockerfile)
	write("Dockerfile.io", FixtureIODockerfile)
	write("Dockerfile.mem", FixtureMemDockerfile)
	// go test puts its own GOROOT/bin first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("cross-compiling the fixture needs the go command on PATH: %v", err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		out := filepath.Join("bin", "app-"+arch)
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=", "GOWORK=off", "GO111MODULE=on")
		if b, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("cross-compiling the fixture for %s: %v\n%s", arch, err, b)
		}
		if f.Binaries[arch], err = os.ReadFile(filepath.Join(src, out)); err != nil {
			tb.Fatal(err)
		}
	}
	git := func(args ...string) string { return FixtureGit(tb, src, base, args...) }
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "app, binaries and Dockerfiles")
	f.FirstCommit = git("rev-parse", "HEAD")
	git("tag", "-a", f.Tag, "-m", "first release")
	git("tag", f.DateTag)
	write("NOTES", "a second commit, so a tag or a SHA can name something other than main\n")
	git("add", "NOTES")
	git("commit", "-q", "-m", "notes")
	f.Commit = git("rev-parse", "HEAD")
	if out, err := exec.Command("git", "clone", "-q", "--bare", src, filepath.Join(base, f.Name)).CombinedOutput(); err != nil {
		tb.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	return f
}

// EnsureArm64Emulation registers qemu-aarch64 with binfmt_misc, mounting
// binfmt_misc if needed. It leaves the registration in place, as
// binfmt-support does at boot: another test binary may be using it.
func EnsureArm64Emulation(tb testing.TB) {
	tb.Helper()
	for _, t := range []struct{ bin, pkg string }{{"qemu-aarch64-static", "qemu-user-static"}, {"update-binfmts", "binfmt-support"}} {
		if _, err := exec.LookPath(t.bin); err != nil {
			tb.Fatalf("building an arm64 RUN step under emulation needs %s: apt-get install -y %s", t.bin, t.pkg)
		}
	}
	const entry = "/proc/sys/fs/binfmt_misc/qemu-aarch64"
	enabled := func() bool {
		b, err := os.ReadFile(entry)
		return err == nil && strings.HasPrefix(string(b), "enabled")
	}
	if enabled() {
		return
	}
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/register"); err != nil {
		if out, err := exec.Command("mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc").CombinedOutput(); err != nil {
			tb.Fatalf("mount -t binfmt_misc: %v: %s", err, out)
		}
	}
	if out, err := exec.Command("update-binfmts", "--enable", "qemu-aarch64").CombinedOutput(); err != nil {
		tb.Fatalf("update-binfmts --enable qemu-aarch64: %v: %s", err, out)
	}
	if !enabled() {
		tb.Fatalf("%s is not enabled after update-binfmts --enable qemu-aarch64", entry)
	}
}

// UnmountUnder detaches every mount below dir, deepest first.
func UnmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// SkopeoPrefix, when set, is put before the skopeo command line (and the
// buildah of PushBusyboxBase and PushBigBase): the cluster test's registry
// listens inside a network namespace, where they must run (nsenter --net=...).
var SkopeoPrefix []string

// RegistryClient is the HTTP client Blob reads registries with: the cluster
// test gives it one that dials inside its network namespace, as SkopeoPrefix
// runs skopeo there.
var RegistryClient = http.DefaultClient

// Skopeo runs skopeo against the plain-HTTP test registry.
func Skopeo(ctx context.Context, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, SkopeoPrefix...), "skopeo"), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("skopeo %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// RawManifest is the manifest (or index) exactly as the registry serves it.
func RawManifest(ctx context.Context, ref string) ([]byte, error) {
	return Skopeo(ctx, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
}

// Index is the part of an image index the tests check: its media type and
// each entry's digest by os/architecture, with the number of entries (a
// duplicate platform would hide in the map).
type Index struct {
	MediaType  string
	Entries    int
	ByPlatform map[string]string
}

// ParseIndex reads an image index as the registry serves it.
func ParseIndex(raw []byte) (*Index, error) {
	var index struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	ix := &Index{MediaType: index.MediaType, Entries: len(index.Manifests), ByPlatform: map[string]string{}}
	for _, m := range index.Manifests {
		ix.ByPlatform[m.Platform.OS+"/"+m.Platform.Architecture] = m.Digest
	}
	return ix, nil
}

// ImageConfig is the part of an image config the tests check.
type ImageConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

// Config reads an image's config blob from the registry.
func Config(ctx context.Context, ref string) (*ImageConfig, error) {
	b, err := Skopeo(ctx, "inspect", "--config", "--raw", "--tls-verify=false", "docker://"+ref)
	if err != nil {
		return nil, err
	}
	var c ImageConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config of %s: %w", ref, err)
	}
	return &c, nil
}

// FileFromImage copies an image out of the registry (skopeo copy to a dir:
// layout) and returns a file's content from its layers, the last layer that
// has it winning.
func FileFromImage(ctx context.Context, ref, tmp, path string) ([]byte, error) {
	dir, layers, err := copyImage(ctx, ref, tmp)
	if err != nil {
		return nil, err
	}
	want := strings.TrimPrefix(path, "/")
	var found []byte
	for _, l := range layers {
		content, ok, err := fileFromLayer(filepath.Join(dir, strings.TrimPrefix(l, "sha256:")), want)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l, err)
		}
		if ok {
			found = content
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s has no %s in its %d layers", ref, path, len(layers))
	}
	return found, nil
}

// copyImage copies an image out of the registry into a dir: layout under
// tmp (skopeo copy) and returns the directory and its layers' digests, in
// order; each layer's blob is dir/<hex digest>.
func copyImage(ctx context.Context, ref, tmp string) (string, []string, error) {
	return copyToDir(ctx, "docker://"+ref, tmp, "--src-tls-verify=false")
}

// copyToDir is copyImage for any image skopeo reads (src with its
// transport, e.g. oci-archive:FILE), with skopeo copy's extra flags.
func copyToDir(ctx context.Context, src, tmp string, flags ...string) (string, []string, error) {
	dir, err := os.MkdirTemp(tmp, "image-")
	if err != nil {
		return "", nil, err
	}
	args := append(append([]string{"copy", "--quiet"}, flags...), src, "dir:"+dir)
	if _, err := Skopeo(ctx, args...); err != nil {
		return "", nil, err
	}
	mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return "", nil, err
	}
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		return "", nil, fmt.Errorf("manifest of %s: %w", src, err)
	}
	var layers []string
	for _, l := range m.Layers {
		layers = append(layers, l.Digest)
	}
	return dir, layers, nil
}

func fileFromLayer(blob, want string) ([]byte, bool, error) {
	f, err := os.Open(blob)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, false, err
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if strings.TrimPrefix(h.Name, "./") == want && h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			return b, true, err
		}
	}
}
