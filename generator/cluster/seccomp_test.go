package cluster

import (
	"bytes"
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
)

// The flattening is the library's own on this machine's architecture:
// github.com/moby/profiles/seccomp evaluates its conditions for the
// architecture it runs on, with a container's capabilities, as Docker does.
func TestRuntimeDefaultSeccompIsTheLibrarysOwnEvaluation(t *testing.T) {
	if _, ok := seccompArch[runtime.GOARCH]; !ok {
		t.Skipf("no configuration name for %s", runtime.GOARCH)
	}
	want, err := seccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: RuntimeDefaultCaps}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := RuntimeDefaultSeccomp([]string{runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Architectures) == 0 {
		// The runtime lists none where the archMap has no entry; the node's
		// native one, which we list, is then the only one filtered.
		want.Architectures = got.Architectures[:1]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("our evaluation differs from the library's on %s (-library +ours):\n%s", runtime.GOARCH, diff)
	}
}

// allowed: the syscalls a profile allows whatever their arguments.
func allowed(p *specs.LinuxSeccomp) map[string]bool {
	m := map[string]bool{}
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 {
			for _, n := range s.Names {
				m[n] = true
			}
		}
	}
	return m
}

func rulesFor(p *specs.LinuxSeccomp, name string) []specs.LinuxSyscall {
	var r []specs.LinuxSyscall
	for _, s := range p.Syscalls {
		if slices.Contains(s.Names, name) {
			r = append(r, s)
		}
	}
	return r
}

// The conditions, settled per architecture and for the default capabilities
// as the runtime settles them on such a node.
func TestRuntimeDefaultSeccompConditions(t *testing.T) {
	for _, tc := range []struct {
		arches        []string
		wantArches    []specs.Arch
		allow, refuse []string
		cloneArg      []uint // the argument index the namespace-less clone rule checks
	}{
		{[]string{"amd64"}, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
			[]string{"arch_prctl", "modify_ldt", "chroot", "ptrace", "process_vm_readv"},
			[]string{"arm_fadvise64_64", "s390_runtime_instr", "riscv_flush_icache", "swapcontext"}, []uint{0}},
		{[]string{"arm64"}, []specs.Arch{specs.ArchAARCH64, specs.ArchARM},
			[]string{"arm_fadvise64_64", "sync_file_range2", "set_tls", "cacheflush"},
			[]string{"arch_prctl", "modify_ldt", "s390_pci_mmio_read"}, []uint{0}},
		{[]string{"arm"}, []specs.Arch{specs.ArchARM}, []string{"arm_sync_file_range", "breakpoint"}, []string{"arch_prctl"}, []uint{0}},
		{[]string{"386"}, []specs.Arch{specs.ArchX86}, []string{"modify_ldt"}, []string{"arch_prctl"}, []uint{0}},
		{[]string{"ppc64le"}, []specs.Arch{specs.ArchPPC64LE}, []string{"swapcontext", "sync_file_range2"}, []string{"arm_fadvise64_64"}, []uint{0}},
		{[]string{"riscv64"}, []specs.Arch{specs.ArchRISCV64}, []string{"riscv_flush_icache"}, []string{"arch_prctl"}, []uint{0}},
		{[]string{"s390x"}, []specs.Arch{specs.ArchS390X, specs.ArchS390}, []string{"s390_pci_mmio_read", "s390_runtime_instr"}, []string{"arch_prctl"}, []uint{1}},
		{[]string{"amd64", "arm64", "s390x"}, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM, specs.ArchS390X, specs.ArchS390},
			[]string{"arch_prctl", "arm_fadvise64_64", "s390_runtime_instr"}, []string{"riscv_flush_icache", "swapcontext"}, []uint{0, 1}},
		{[]string{"arm64", "arm"}, []specs.Arch{specs.ArchAARCH64, specs.ArchARM}, []string{"set_tls"}, nil, []uint{0}},
	} {
		t.Run(strings.Join(tc.arches, "+"), func(t *testing.T) {
			p, err := RuntimeDefaultSeccomp(tc.arches)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantArches, p.Architectures); diff != "" {
				t.Errorf("architectures (-want +got):\n%s", diff)
			}
			if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
				t.Errorf("default action %s errno %v, want EPERM for everything not listed", p.DefaultAction, p.DefaultErrnoRet)
			}
			a := allowed(p)
			// The default capabilities hold neither CAP_SYS_ADMIN nor the
			// other capabilities some calls are conditional on; they hold
			// CAP_SYS_CHROOT.
			for _, n := range append(tc.refuse, "mount", "umount2", "unshare", "setns", "pivot_root", "bpf", "keyctl", "add_key",
				"init_module", "reboot", "clock_settime", "open_by_handle_at", "perf_event_open", "sethostname", "clone") {
				if a[n] {
					t.Errorf("%s allowed", n)
				}
			}
			for _, n := range append(tc.allow, "chroot", "read", "execve", "seccomp") {
				if !a[n] {
					t.Errorf("%s not allowed", n)
				}
			}
			// clone: only without namespace flags, at the argument index of
			// the architecture; clone3 answers ENOSYS so libc falls back.
			var idx []uint
			for _, r := range rulesFor(p, "clone") {
				if len(r.Args) != 1 || r.Args[0].Op != specs.OpMaskedEqual || r.Args[0].Value != 0x7E020000 || r.Args[0].ValueTwo != 0 {
					t.Errorf("clone rule %+v, want flags masked against the namespace flags", r)
				}
				idx = append(idx, r.Args[0].Index)
			}
			if !slices.Equal(idx, tc.cloneArg) {
				t.Errorf("clone rules check arguments %v, want %v", idx, tc.cloneArg)
			}
			c3 := rulesFor(p, "clone3")
			if len(c3) != 1 || c3[0].Action != specs.ActErrno || c3[0].ErrnoRet == nil || *c3[0].ErrnoRet != 38 {
				t.Errorf("clone3 rules %+v, want one returning ENOSYS", c3)
			}
		})
	}
	if _, err := RuntimeDefaultSeccomp([]string{"mips64le"}); err == nil || !strings.Contains(err.Error(), "mips64le") {
		t.Errorf("an unknown architecture: %v", err)
	}
}

// The file the kubelet hands the runtime: strictly the OCI format
// (specs.LinuxSeccomp, which containerd decodes a Localhost profile into and
// CRI-O accepts), and exactly the flattened default plus one rule allowing
// BuildahSyscalls.
func TestBuildSeccompIsDefaultPlusBuildahSyscalls(t *testing.T) {
	for _, arches := range [][]string{{"amd64", "arm64"}, {"arm64"}, {"amd64", "ppc64le", "s390x"}, {"arm", "arm64", "amd64"}, {"riscv64"}} {
		t.Run(strings.Join(arches, "+"), func(t *testing.T) {
			cfg := config.Default()
			cfg.Architectures = nil
			for _, a := range arches {
				arch := config.Architecture{Name: a}
				if a == "arm" {
					arch.Variant = "v7"
				}
				cfg.Architectures = append(cfg.Architectures, arch)
			}
			p, err := BuildSeccomp(cfg)
			if err != nil {
				t.Fatal(err)
			}
			data, err := SeccompJSON(p)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			var got specs.LinuxSeccomp
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("the profile is not strictly a runtime-spec LinuxSeccomp: %v", err)
			}
			if dec.More() {
				t.Fatal("more than one JSON value")
			}
			validSeccomp(t, &got)

			def, err := RuntimeDefaultSeccomp(arches)
			if err != nil {
				t.Fatal(err)
			}
			n := len(got.Syscalls)
			if n != len(def.Syscalls)+1 {
				t.Fatalf("%d rules, want the default's %d plus one", n, len(def.Syscalls))
			}
			added := got.Syscalls[n-1]
			got.Syscalls = got.Syscalls[:n-1]
			if diff := cmp.Diff(def, &got); diff != "" {
				t.Errorf("everything but the last rule must be the runtime's default (-default +file):\n%s", diff)
			}
			if diff := cmp.Diff(specs.LinuxSyscall{Names: []string{"mount", "umount2", "unshare"}, Action: specs.ActAllow}, added); diff != "" {
				t.Errorf("the added rule (-want +got):\n%s", diff)
			}
			// Each addition is one: the default denies it.
			a := allowed(def)
			for _, s := range added.Names {
				if a[s] {
					t.Errorf("%s is already allowed by the default; it is no addition", s)
				}
			}
		})
	}
}

// validSeccomp checks what the runtime's loader checks before libseccomp
// sees the profile: known actions, architectures and operators, names.
func validSeccomp(t *testing.T, p *specs.LinuxSeccomp) {
	t.Helper()
	actions := []specs.LinuxSeccompAction{specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap, specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify}
	ops := []specs.LinuxSeccompOperator{specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo, specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual}
	if !slices.Contains(actions, p.DefaultAction) {
		t.Errorf("default action %q", p.DefaultAction)
	}
	for _, a := range p.Architectures {
		if !strings.HasPrefix(string(a), "SCMP_ARCH_") {
			t.Errorf("architecture %q", a)
		}
	}
	for i, s := range p.Syscalls {
		if len(s.Names) == 0 || !slices.Contains(actions, s.Action) {
			t.Errorf("rule %d: %+v", i, s)
		}
		for _, n := range s.Names {
			if n == "" || strings.ToLower(n) != n || strings.ContainsAny(n, " \t") {
				t.Errorf("rule %d: syscall name %q", i, n)
			}
		}
		for _, arg := range s.Args {
			if !slices.Contains(ops, arg.Op) || arg.Index > 5 {
				t.Errorf("rule %d: argument %+v", i, arg)
			}
		}
	}
}

func TestBuildahSyscallsSortedAndUnique(t *testing.T) {
	if !slices.IsSorted(BuildahSyscalls) || len(slices.Compact(slices.Clone(BuildahSyscalls))) != len(BuildahSyscalls) {
		t.Errorf("BuildahSyscalls %v: keep them sorted and unique", BuildahSyscalls)
	}
}

// A rule conditional on a newer kernel than MaxMinKernel is refused, not
// silently taken as true.
func TestCheckKernel(t *testing.T) {
	for _, tc := range []struct {
		version string
		ok      bool
	}{{"3.12", true}, {"4.8", true}, {"4.9", false}, {"5.0", false}} {
		var k seccomp.KernelVersion
		if err := k.UnmarshalJSON([]byte(`"` + tc.version + `"`)); err != nil {
			t.Fatal(err)
		}
		s := &seccomp.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"x"}}, Includes: &seccomp.Filter{MinKernel: &k}}
		if err := checkKernel(s); (err == nil) != tc.ok {
			t.Errorf("minKernel %s: %v", tc.version, err)
		} else if err != nil && !strings.Contains(err.Error(), "review MaxMinKernel") {
			t.Errorf("minKernel %s: %v", tc.version, err)
		}
	}
}
