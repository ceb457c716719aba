package realbuild

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Containerd is Debian's containerd, started by a test as a plain process
// with its own root, state and socket in a temporary directory, to run the
// build step in a real container: runc, the runtime's default capabilities
// (no CAP_SYS_ADMIN), a Localhost seccomp profile, no /dev/fuse unless a
// device is passed. Stopped, with every container it ran, by tb's cleanup.
type Containerd struct {
	Socket    string
	Namespace string
	dir       string
	d         *daemon
}

// StartContainerd starts containerd under dir (which must not be shared).
// CRI's restrict_oom_score_adj: this machine's root lacks
// CAP_SYS_RESOURCE, and runc cannot lower a container's oom_score_adj.
func StartContainerd(tb testing.TB, dir string) *Containerd {
	tb.Helper()
	for _, bin := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("running the build in a real container needs %s: apt-get install -y containerd runc", bin)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	c := &Containerd{Socket: filepath.Join(dir, "containerd.sock"), Namespace: "realbuild", dir: dir}
	cfg := ContainerdConfig(dir, c.Socket) + `
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
`
	cfgFile := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	// Registered before containerd's own stop (cleanups run last first):
	// the snapshots containerd mounted go after it has stopped.
	tb.Cleanup(func() {
		if err := UnmountUnder(dir); err != nil {
			tb.Errorf("unmounting under %s: %v", dir, err)
		}
	})
	c.d = startDaemon(tb, "containerd", filepath.Join(dir, "containerd.log"), "containerd", "--config", cfgFile)
	tb.Cleanup(c.removeAll)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, err := c.ctr(context.Background(), "version").CombinedOutput(); err == nil {
			return c
		} else if c.d.exited() || time.Now().After(deadline) {
			tb.Fatalf("containerd did not come up: %v: %s\n%s", err, out, c.d.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ContainerdConfig is the start of a containerd configuration (version 2,
// which containerd 1.6 reads and 2.x migrates) for a private containerd
// under dir: its root, state, opt directory and socket there, and the
// plugins that cannot work here (or are not wanted) disabled. The caller
// appends its CRI section, which should set restrict_oom_score_adj = true:
// this machine's root lacks CAP_SYS_RESOURCE, and runc cannot lower a
// container's oom_score_adj below its own.
func ContainerdConfig(dir, socket string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, filepath.Join(dir, "opt"))
}

func (c *Containerd) ctr(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ctr", append([]string{"--address", c.Socket, "-n", c.Namespace}, args...)...)
}

// Import loads an image archive (as test/cluster/build-images.sh makes
// them): nothing is pulled.
func (c *Containerd) Import(tb testing.TB, archive string) {
	tb.Helper()
	if out, err := c.ctr(context.Background(), "images", "import", archive).CombinedOutput(); err != nil {
		tb.Fatalf("ctr images import %s: %v\n%s", archive, err, out)
	}
}

// removeAll kills and deletes every container of the namespace: a step
// cut short by a timeout or a failed test leaves none behind.
func (c *Containerd) removeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := c.ctr(ctx, "containers", "list", "--quiet").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		c.kill(ctx, id)
	}
}

func (c *Containerd) kill(ctx context.Context, id string) {
	_ = c.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id).Run()
	for i := 0; i < 50; i++ {
		if c.ctr(ctx, "tasks", "delete", id).Run() == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = c.ctr(ctx, "containers", "delete", id).Run()
}

// ContainerRun is one process in a new container of image.
type ContainerRun struct {
	Image   string
	Seccomp string   // a Localhost seccomp profile (JSON file); "" for none
	Devices []string // host device nodes to pass, e.g. /dev/fuse
	Env     []string // KEY=VALUE, on top of the image's
	Mounts  []Bind
	Cwd     string
	Args    []string
	Stdout  io.Writer
}

// Bind is a bind mount into the container.
type Bind struct {
	Host, Path string
	ReadOnly   bool
}

// Run runs r in a container (host network, so 127.0.0.1 is this
// machine's) and returns its exit code; ctx ends it.
func (c *Containerd) Run(ctx context.Context, id string, r ContainerRun) (int, error) {
	args := []string{"run", "--rm", "--net-host"}
	if r.Seccomp != "" {
		args = append(args, "--seccomp", "--seccomp-profile", r.Seccomp)
	}
	for _, d := range r.Devices {
		args = append(args, "--device", d)
	}
	for _, e := range r.Env {
		args = append(args, "--env", e)
	}
	for _, m := range r.Mounts {
		opt := "rbind:rw"
		if m.ReadOnly {
			opt = "rbind:ro"
		}
		args = append(args, "--mount", "type=bind,src="+m.Host+",dst="+m.Path+",options="+opt)
	}
	if r.Cwd != "" {
		args = append(args, "--cwd", r.Cwd)
	}
	args = append(append(args, r.Image, id), r.Args...)
	cmd := c.ctr(context.Background(), args...)
	cmd.Stdout, cmd.Stderr = r.Stdout, r.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if cmd.ProcessState == nil {
			return -1, err
		}
		return cmd.ProcessState.ExitCode(), nil
	case <-ctx.Done():
		// ctr's end does not end the container: kill it through containerd.
		c.kill(context.Background(), id)
		<-done
		return -1, ctx.Err()
	}
}

// NodeImages are the archives test/cluster/build-images.sh makes, built
// here if the cache has none yet (about 100 s with a warm Go cache).
type NodeImages struct {
	Dir  string
	refs map[string]string
}

// BuildNodeImages runs test/cluster/build-images.sh and reads images.env.
func BuildNodeImages(tb testing.TB, repo string) *NodeImages {
	tb.Helper()
	cmd := exec.Command(filepath.Join(repo, "test", "cluster", "build-images.sh"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("test/cluster/build-images.sh: %v\n%s", err, stderr.String())
	}
	return ReadNodeImages(tb, strings.TrimSpace(string(out)))
}

// ReadNodeImages reads the images.env of a directory build-images.sh made.
func ReadNodeImages(tb testing.TB, dir string) *NodeImages {
	tb.Helper()
	n := &NodeImages{Dir: dir, refs: map[string]string{}}
	f, err := os.Open(filepath.Join(dir, "images.env"))
	if err != nil {
		tb.Fatalf("the real node's images are not built (%v): run test/cluster/build-images.sh (make e2e-cluster does)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
			n.refs[k] = strings.Trim(v, `"'`)
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// Ref is an image's reference by its images.env name (BUILDAH_IMAGE).
func (n *NodeImages) Ref(tb testing.TB, name string) string {
	tb.Helper()
	r, ok := n.refs[name]
	if !ok {
		tb.Fatalf("%s/images.env has no %s", n.Dir, name)
	}
	return r
}

// Digest is an image's digest as build-images.sh recorded it (by
// test/archcheck): with arch "", its reference's, the OCI image index of all
// its platforms; with "amd64" or "arm64", that platform's image manifest.
// It is "" if images.env has none.
func (n *NodeImages) Digest(name, arch string) string {
	k := name + "_DIGEST"
	if arch != "" {
		k += "_" + strings.ToUpper(arch)
	}
	return n.refs[k]
}

// Images are the images.env names of the images (ENTRYPOINT_IMAGE, ...),
// sorted.
func (n *NodeImages) Images() []string {
	var names []string
	for k := range n.refs {
		if strings.HasSuffix(k, "_IMAGE") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

// Archive is an image's archive: BUILDAH_IMAGE -> <dir>/buildah.tar.
func (n *NodeImages) Archive(name string) string {
	return filepath.Join(n.Dir, strings.ToLower(strings.TrimSuffix(name, "_IMAGE"))+".tar")
}

// StepContainer runs the catalog's buildah steps in real containers of
// Image (the clone step stays a process here: its image is git-sync's).
type StepContainer struct {
	Containerd *Containerd
	Image      string
	Seccomp    string
	Devices    []string
	Mounts     []Bind // on top of the step's own
}

func containerID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}
