package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// BuildahSyscalls are what the build profile allows on top of the runtime's
// default. buildah, root in the build container but without CAP_SYS_ADMIN,
// re-executes itself in a user namespace it creates, and there mounts its
// layers and the RUN steps' root; the default profile allows these calls
// only to containers that hold CAP_SYS_ADMIN.
//
// Measured, not guessed: buildah 1.28.2 and 1.40.1 in a container of
// containerd 1.6 + runc with the default capabilities, under this profile
// with each call removed in turn, building a Dockerfile with RUN steps on
// vfs, on overlay with fuse-overlayfs and on native overlay, and assembling
// a manifest list:
//
//	unshare  every build and the manifest: "Error during
//	         unshare(CLONE_NEWUSER): Operation not permitted"
//	mount    vfs: "ApplyLayer ... remount /, flags: 0x44000: operation not
//	         permitted"; overlay: "mount /var/lib/containers/storage/overlay:
//	         ..., flags: 0x1000: operation not permitted"
//	umount2  overlay: "deleting build container ...: unmounting
//	         .../merged: operation not permitted"
//
// and everything builds with these three alone, in every storage mode: the
// kernel's overlay needs exactly what fuse-overlayfs needs (measured again
// with buildah 1.28.2: without umount2 it fails at its own test mount's
// cleanup, "Failed to unmount check directory ...: operation not
// permitted"). vfs builds without umount2 but warns on every RUN step
// ("pkg/chroot: error unmounting ...: operation not permitted"), and the
// profile serves every mode the Task's STORAGE param can pick, so it is
// one profile for all of them. buildah also calls
// pivot_root, sethostname and clone(CLONE_NEWUSER) (a probe for idmapped
// mounts); the default denies them and buildah goes on without (chroot
// instead of pivot_root, the pod's host name in RUN steps), so they stay
// denied. setns and keyctl are never called.
var BuildahSyscalls = []string{"mount", "umount2", "unshare"}

// RuntimeDefaultCaps is the capability set containerd and Docker give a
// container whose securityContext adds or drops none, as the build steps'
// is: the set whose conditions the profile is evaluated for.
var RuntimeDefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// seccompArch maps Go's architecture names (the configuration's) to the
// names the default profile's arch conditions use (libseccomp's) and to
// the seccomp architecture of a node of that architecture.
var seccompArch = map[string]struct {
	native string
	arch   specs.Arch
}{
	"386":     {"x86", specs.ArchX86},
	"amd64":   {"amd64", specs.ArchX86_64},
	"arm":     {"arm", specs.ArchARM},
	"arm64":   {"arm64", specs.ArchAARCH64},
	"ppc64le": {"ppc64le", specs.ArchPPC64LE},
	"riscv64": {"riscv64", specs.ArchRISCV64},
	"s390x":   {"s390x", specs.ArchS390X},
}

// MaxMinKernel is the newest kernel any rule of the default profile is
// conditional on. A static profile cannot ask the node's kernel, so rules
// for kernels at least this new are taken as true: ptrace and
// process_vm_{readv,writev} are allowed, as the runtime allows them on
// every kernel since 4.8 (older ones let ptrace bypass seccomp).
const MaxMinKernel = "4.8"

// RuntimeDefaultSeccomp is the container runtime's default seccomp profile
// (the one Docker and containerd derive from github.com/moby/profiles) as the
// runtime itself evaluates it for a container with RuntimeDefaultCaps, on a
// node of each of goarches, merged into one profile every node can load: a
// rule is kept when it applies on any of them, and the architectures are
// those the runtime would list on each. goarches are Go's names.
//
// The runtime decides at container start; a Localhost profile is a static
// file in the OCI format containerd and CRI-O read, so the conditions
// (capabilities, architecture, kernel version) have to be settled here.
func RuntimeDefaultSeccomp(goarches []string) (*specs.LinuxSeccomp, error) {
	p := seccomp.DefaultProfile()
	out := p.LinuxSeccomp
	out.Syscalls = nil
	var natives []string
	for _, g := range goarches {
		a, ok := seccompArch[g]
		if !ok {
			return nil, fmt.Errorf("no seccomp architecture for %q", g)
		}
		natives = append(natives, a.native)
		// An architecture the profile's archMap lacks as a main entry gets
		// none listed by the runtime, which then filters the node's native
		// architecture alone: list just that one.
		arches := []specs.Arch{a.arch}
		for _, m := range p.ArchMap {
			if m.Arch == a.arch {
				arches = append(arches, m.SubArches...)
			}
		}
		for _, x := range arches {
			if !slices.Contains(out.Architectures, x) {
				out.Architectures = append(out.Architectures, x)
			}
		}
	}
	for _, s := range p.Syscalls {
		if err := checkKernel(s); err != nil {
			return nil, err
		}
		for _, n := range natives {
			if appliesOn(s, n) {
				out.Syscalls = append(out.Syscalls, s.LinuxSyscall)
				break
			}
		}
	}
	return &out, nil
}

// appliesOn evaluates a rule's conditions as the runtime does on a node whose
// architecture is native, for a container with RuntimeDefaultCaps and a
// kernel at least MaxMinKernel.
func appliesOn(s *seccomp.Syscall, native string) bool {
	if e := s.Excludes; e != nil {
		if slices.Contains(e.Arches, native) {
			return false
		}
		for _, c := range e.Caps {
			if slices.Contains(RuntimeDefaultCaps, c) {
				return false
			}
		}
		if e.MinKernel != nil {
			return false
		}
	}
	if i := s.Includes; i != nil {
		if len(i.Arches) > 0 && !slices.Contains(i.Arches, native) {
			return false
		}
		for _, c := range i.Caps {
			if !slices.Contains(RuntimeDefaultCaps, c) {
				return false
			}
		}
	}
	return true
}

// checkKernel refuses a rule conditional on a kernel newer than MaxMinKernel:
// a new release of the profile that needs the assumption revisited.
func checkKernel(s *seccomp.Syscall) error {
	var limit seccomp.KernelVersion
	if err := limit.UnmarshalJSON([]byte(`"` + MaxMinKernel + `"`)); err != nil {
		return err
	}
	for _, f := range []*seccomp.Filter{s.Includes, s.Excludes} {
		if f == nil || f.MinKernel == nil {
			continue
		}
		k := *f.MinKernel
		if k.Kernel > limit.Kernel || (k.Kernel == limit.Kernel && k.Major > limit.Major) {
			return fmt.Errorf("the default seccomp profile has a rule for kernels >= %s (%v), newer than the %s this generator assumes every node runs: review MaxMinKernel", k.String(), s.Names, MaxMinKernel)
		}
	}
	return nil
}

// BuildSeccomp is the build steps' Localhost profile for cfg's
// architectures: the runtime's default, then one rule allowing
// BuildahSyscalls.
func BuildSeccomp(cfg *config.Config) (*specs.LinuxSeccomp, error) {
	var goarches []string
	for _, a := range cfg.Architectures {
		if !slices.Contains(goarches, a.Name) {
			goarches = append(goarches, a.Name)
		}
	}
	p, err := RuntimeDefaultSeccomp(goarches)
	if err != nil {
		return nil, err
	}
	p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{Names: slices.Clone(BuildahSyscalls), Action: specs.ActAllow})
	return p, nil
}

// SeccompJSON renders a profile as the file the kubelet hands the runtime.
func SeccompJSON(p *specs.LinuxSeccomp) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetIndent("", "  ")
	e.SetEscapeHTML(false)
	if err := e.Encode(p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
