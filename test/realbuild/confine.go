package realbuild

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ConfineName is the name the test binary answers to as the step
// confinement wrapper: TestMain dispatches to ConfineMain when os.Args[0]
// ends in it.
const ConfineName = "step-confine"

// Confinement makes a step's process see what a pod's container may see
// instead of this machine's root, so the build step's storage choice can be
// tested where each fallback applies. The harness runs the step under
// ConfineMain with these as flags, in a mount namespace of its own.
type Confinement struct {
	// HideFuse mounts a /dev like a container's over /dev (null, zero, full,
	// random, urandom, tty, pts, shm): no /dev/fuse, as in a pod that did not
	// ask the fuse device plugin for it.
	HideFuse bool
	// RefuseOverlayMount installs a seccomp filter that fails mount(2) with
	// EPERM when its flags are 0, as containers/storage mounts the kernel's
	// overlay (measured: its test mount and every layer mount pass no
	// flags), and as a kernel older than 5.11 answers such a mount in a user
	// namespace. Every other mount (binds, remounts, propagation changes,
	// proc, fuse-overlayfs's fuse mount with nosuid,nodev) passes flags and
	// is allowed, so fuse-overlayfs and vfs still work.
	RefuseOverlayMount bool
	// DropSysAdmin removes CAP_SYS_ADMIN from the bounding, inheritable,
	// permitted and effective sets: root without it, as in a pod with the
	// runtime's default capabilities, so buildah creates a user namespace.
	DropSysAdmin bool
}

func (c Confinement) flags() []string {
	var f []string
	if c.HideFuse {
		f = append(f, "--hide-fuse")
	}
	if c.RefuseOverlayMount {
		f = append(f, "--refuse-overlay-mount")
	}
	if c.DropSysAdmin {
		f = append(f, "--drop-sys-admin")
	}
	return f
}

// ConfineMain applies the flags before "--", then executes the rest. The
// caller (the harness) has already put it in a private mount namespace.
func ConfineMain(args []string, stderr io.Writer) int {
	// Capabilities and the bounding set are per thread: change them on the
	// thread that executes the step.
	runtime.LockOSThread()
	var c Confinement
	i := 0
	for ; i < len(args) && args[i] != "--"; i++ {
		switch args[i] {
		case "--hide-fuse":
			c.HideFuse = true
		case "--refuse-overlay-mount":
			c.RefuseOverlayMount = true
		case "--drop-sys-admin":
			c.DropSysAdmin = true
		default:
			fmt.Fprintf(stderr, "%s: unknown flag %q\n", ConfineName, args[i])
			return 2
		}
	}
	if i+1 >= len(args) {
		fmt.Fprintf(stderr, "usage: %s [--hide-fuse] [--refuse-overlay-mount] [--drop-sys-admin] -- PROGRAM ARGS...\n", ConfineName)
		return 2
	}
	argv := args[i+1:]
	if c.HideFuse {
		if err := containerDev(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", ConfineName, err)
			return 1
		}
	}
	if c.DropSysAdmin {
		if err := dropSysAdmin(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", ConfineName, err)
			return 1
		}
	}
	if c.RefuseOverlayMount {
		if err := refuseFlaglessMounts(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", ConfineName, err)
			return 1
		}
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(stderr, "%s: exec %s: %v\n", ConfineName, argv[0], err)
	return 127
}

// containerDev mounts a tmpfs over /dev with the device nodes a container
// runtime gives every container, and no others. Only this mount namespace
// sees it.
func containerDev() error {
	if _, err := os.Stat("/proc/self/ns/mnt"); err != nil {
		return err
	}
	type node struct {
		name string
		rdev uint64
	}
	var nodes []node
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		var st unix.Stat_t
		if err := unix.Stat("/dev/"+n, &st); err != nil {
			return fmt.Errorf("stat /dev/%s: %w", n, err)
		}
		nodes = append(nodes, node{n, st.Rdev})
	}
	// Mounted elsewhere first, so /dev/pts and /dev/shm can be bound into it
	// from the real /dev before it covers them.
	staging, err := os.MkdirTemp("", "container-dev-")
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", staging, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", staging, err)
	}
	for _, n := range nodes {
		if err := unix.Mknod(staging+"/"+n.name, unix.S_IFCHR|0o666, int(n.rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", n.name, err)
		}
		if err := os.Chmod(staging+"/"+n.name, 0o666); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(staging+"/"+d, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, staging+"/"+d, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"} {
		if err := os.Symlink(target, staging+"/"+name); err != nil {
			return err
		}
	}
	if err := unix.Mount(staging, "/dev", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the container /dev over /dev: %w", err)
	}
	// The staging directory is an empty mount point no more; the step never
	// sees its name.
	_ = os.Remove(staging)
	if _, err := os.Stat("/dev/fuse"); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("/dev/fuse is still there (%v)", err)
	}
	return nil
}

func dropSysAdmin() error {
	if err := unix.Prctl(unix.PR_CAPBSET_DROP, unix.CAP_SYS_ADMIN, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_CAPBSET_DROP CAP_SYS_ADMIN: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	bit := uint32(1) << (unix.CAP_SYS_ADMIN % 32)
	d := &data[unix.CAP_SYS_ADMIN/32]
	d.Effective &^= bit
	d.Permitted &^= bit
	d.Inheritable &^= bit
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// refuseFlaglessMounts installs, on every thread, a seccomp filter that
// answers mount(2) with EPERM when its flags argument is 0 and allows
// everything else.
func refuseFlaglessMounts() error {
	var auditArch uint32
	switch runtime.GOARCH {
	case "amd64":
		auditArch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		auditArch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("no seccomp filter written for %s", runtime.GOARCH)
	}
	const (
		offNr    = 0  // struct seccomp_data: int nr
		offArch  = 4  // __u32 arch
		offFlags = 40 // __u64 args[6] at 16; args[3] is mount's flags, low word first (little endian)
	)
	ld := func(k uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: k}
	}
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	allow, eperm := ret(unix.SECCOMP_RET_ALLOW), ret(unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM))
	prog := []unix.SockFilter{
		ld(offArch),
		jeq(auditArch, 1, 0),
		allow, // another ABI: not what buildah calls
		ld(offNr),
		jeq(uint32(unix.SYS_MOUNT), 0, 5),
		ld(offFlags),
		jeq(0, 0, 3),
		ld(offFlags + 4),
		jeq(0, 0, 1),
		eperm,
		allow,
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", errno)
	}
	return nil
}
