package scripts

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeNode lays out what the loader sees of a node: under /host a root
// filesystem whose only programs are a static busybox and a stand-in
// apparmor_parser that behaves like the real one's --version and --replace
// (this machine's kernel has no AppArmor to load into), the securityfs and
// module files the loader reads; and the kubelet's seccomp directory, mounted
// apart as the DaemonSet mounts it.
type fakeNode struct {
	enabled       bool
	noModule      bool   // the kernel has no AppArmor at all: no /sys/module/apparmor
	parserVersion string // "" for no parser
	parserFails   bool
	parserForgets bool // succeeds but the profile does not show up as loaded
	usernsKernel  bool
}

const stubParser = `#!/bin/sh
if [ "$1" = --version ]; then
	echo "AppArmor parser version $(cat /stub/version)"
	exit 0
fi
echo "$@" >>/stub/calls
[ ! -e /stub/fail ] || { echo "AppArmor parser error: stub refuses" >&2; exit 1; }
[ -e /stub/forget ] || sed -n 's/^profile \([^ ]*\) .*/\1 (enforce)/p' "$2" >>/sys/kernel/security/apparmor/profiles
`

func (n fakeNode) build(t *testing.T) string {
	t.Helper()
	// A static busybox, so the fake root needs no libraries.
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox is not installed: apt-get install -y busybox-static (.ci/run does)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the loader test uses chroot and must run as root (CI does)")
	}
	root := filepath.Join(t.TempDir(), "host")
	for _, d := range []string{"bin", "sbin", "stub", "etc/apparmor.d", "sys/kernel/security"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "bin/busybox"), string(b), 0o755)
	for _, applet := range []string{"sh", "cat", "sed", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	if !n.noModule {
		for _, d := range []string{"sys/module/apparmor/parameters", "sys/kernel/security/apparmor/features/namespaces"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		enabled := "N"
		if n.enabled {
			enabled = "Y"
		}
		write(t, filepath.Join(root, "sys/module/apparmor/parameters/enabled"), enabled+"\n", 0o644)
		write(t, filepath.Join(root, "sys/kernel/security/apparmor/profiles"), "", 0o644)
		if n.usernsKernel {
			write(t, filepath.Join(root, "sys/kernel/security/apparmor/features/namespaces/userns_create"), "pciu&\n", 0o644)
		}
	}
	if n.parserVersion != "" {
		write(t, filepath.Join(root, "sbin/apparmor_parser"), stubParser, 0o755)
		write(t, filepath.Join(root, "stub/version"), n.parserVersion+"\n", 0o644)
	}
	if n.parserFails {
		write(t, filepath.Join(root, "stub/fail"), "", 0o644)
	}
	if n.parserForgets {
		write(t, filepath.Join(root, "stub/forget"), "", 0o644)
	}
	return root
}

func write(t *testing.T, p, s string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// noTempFiles fails on a leftover .new file anywhere under dir.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(d.Name(), ".new") {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

// The loader's contract, on fake nodes: the seccomp profile always lands in
// the kubelet's directory, by rename; the AppArmor profile is loaded where
// AppArmor is on; a node without AppArmor is told about in one message and
// is no reason to fail (a crash-looping DaemonSet would not give the node
// AppArmor); real failures exit non-zero with the reason.
func TestNodeProfileLoader(t *testing.T) {
	const (
		apparmorName = "containerized-buildah"
		seccompName  = "tekton-multiarch/buildah.json"
		seccompJSON  = "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"names\":[\"mount\",\"umount2\",\"unshare\"],\"action\":\"SCMP_ACT_ALLOW\"}]}\n"
	)
	apparmorText := "profile " + apparmorName + " flags=(attach_disconnected,mediate_deleted) {\n  include if exists <local/" + apparmorName + ">\n  mount,\n}\n"
	for _, tc := range []struct {
		name        string
		node        fakeNode
		noAppArmor  bool   // apparmor.mode none: no APPARMOR_PROFILE
		oldSeccomp  string // already installed by an earlier load
		seccompName string // "" for seccompName
		noSeccomp   bool   // the kubelet directory is not mounted
		wantExit    int
		wantOut     []string
		wantSeccomp bool
		wantUserns  bool
		wantLoaded  bool
	}{
		{name: "apparmor.mode none, AppArmor-less kernel (RHEL, Fedora)", node: fakeNode{noModule: true}, noAppArmor: true,
			wantOut: []string{"installed seccomp profile " + seccompName + " in /var/lib/kubelet/seccomp", "AppArmor: not used (apparmor.mode: none), nothing to load"}, wantSeccomp: true},
		{name: "apparmor.mode none on an AppArmor node", node: fakeNode{enabled: true, parserVersion: "3.0.8"}, noAppArmor: true,
			wantOut: []string{"installed seccomp profile", "AppArmor: not used"}, wantSeccomp: true},
		{name: "kernel without AppArmor, a mode that needs it", node: fakeNode{noModule: true},
			wantOut: []string{"installed seccomp profile", "AppArmor profile " + apparmorName + " not loaded: this node's kernel has no AppArmor (no /sys/module/apparmor/parameters/enabled)",
				"The kubelet refuses build pods that ask for it here", "set apparmor.architectures.amd64: none"}, wantSeccomp: true},
		{name: "AppArmor off (Raspberry Pi OS)", node: fakeNode{enabled: false, parserVersion: "3.0.8"},
			wantOut: []string{"installed seccomp profile", "AppArmor is disabled on this node (/sys/module/apparmor/parameters/enabled is N)", "set apparmor.architectures.amd64: none"}, wantSeccomp: true},
		{name: "AppArmor 3 node", node: fakeNode{enabled: true, parserVersion: "3.0.8", usernsKernel: true},
			wantOut: []string{"installed seccomp profile", "loaded AppArmor profile " + apparmorName}, wantSeccomp: true, wantLoaded: true},
		{name: "AppArmor 4 node that mediates userns", node: fakeNode{enabled: true, parserVersion: "4.0.1", usernsKernel: true},
			wantOut: []string{"allowing userns"}, wantSeccomp: true, wantUserns: true, wantLoaded: true},
		{name: "AppArmor 4 parser, older kernel", node: fakeNode{enabled: true, parserVersion: "4.0.1"},
			wantOut: []string{"loaded AppArmor profile " + apparmorName}, wantSeccomp: true, wantLoaded: true},
		{name: "reload replaces an older seccomp profile", node: fakeNode{noModule: true}, noAppArmor: true, oldSeccomp: "{\"old\":true}\n",
			wantOut: []string{"installed seccomp profile"}, wantSeccomp: true},
		{name: "profile at the top of the directory", node: fakeNode{noModule: true}, noAppArmor: true, seccompName: "buildah.json",
			wantOut: []string{"installed seccomp profile buildah.json"}, wantSeccomp: true},
		{name: "no parser on the node", node: fakeNode{enabled: true}, wantExit: 1,
			wantOut: []string{"has no apparmor_parser"}, wantSeccomp: true},
		{name: "parser refuses", node: fakeNode{enabled: true, parserVersion: "3.0.8", parserFails: true}, wantExit: 1,
			wantOut: []string{"refused /etc/apparmor.d/" + apparmorName}, wantSeccomp: true},
		{name: "loaded but missing", node: fakeNode{enabled: true, parserVersion: "3.0.8", parserForgets: true}, wantExit: 1,
			wantOut: []string{"is not among the loaded profiles"}, wantSeccomp: true},
		{name: "kubelet directory not mounted", node: fakeNode{noModule: true}, noAppArmor: true, noSeccomp: true, wantExit: 1,
			wantOut: []string{"the kubelet's seccomp directory (/var/lib/kubelet/seccomp) is not mounted at"}},
		{name: "profile name leaves the directory", node: fakeNode{noModule: true}, noAppArmor: true, seccompName: "../escape.json", wantExit: 1,
			wantOut: []string{"SECCOMP_PROFILE '../escape.json' must be a relative path inside the kubelet's seccomp directory"}},
		{name: "absolute profile name", node: fakeNode{noModule: true}, noAppArmor: true, seccompName: "/etc/escape.json", wantExit: 1,
			wantOut: []string{"must be a relative path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.node.build(t)
			name := seccompName
			if tc.seccompName != "" {
				name = tc.seccompName
			}
			kubelet := filepath.Join(t.TempDir(), "kubelet-seccomp")
			if !tc.noSeccomp {
				if err := os.MkdirAll(kubelet, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			target := filepath.Join(kubelet, name)
			var oldInode uint64
			if tc.oldSeccomp != "" {
				os.MkdirAll(filepath.Dir(target), 0o755)
				write(t, target, tc.oldSeccomp, 0o644)
				oldInode = inode(t, target)
			}
			dir := t.TempDir()
			script := filepath.Join(dir, "load.sh")
			write(t, script, LoadNodeProfiles, 0o755)
			write(t, filepath.Join(dir, "seccomp.json"), seccompJSON, 0o644)
			write(t, filepath.Join(dir, apparmorName), apparmorText, 0o644)
			cmd := exec.Command("/bin/sh", script)
			cmd.Env = append(os.Environ(), "SECCOMP_PROFILE="+name, "SECCOMP_FILE="+filepath.Join(dir, "seccomp.json"),
				"SECCOMP_DIR="+kubelet, "SECCOMP_NODE_DIR=/var/lib/kubelet/seccomp", "HOST_ROOT="+host)
			if !tc.noAppArmor {
				cmd.Env = append(cmd.Env, "APPARMOR_PROFILE="+apparmorName, "APPARMOR_FILE="+filepath.Join(dir, apparmorName))
			}
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantExit {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.wantExit, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if !tc.node.enabled && tc.wantExit == 0 {
				if n := strings.Count(string(out), "AppArmor"); n == 0 || strings.Count(strings.TrimSpace(string(out)), "\n") != 1 {
					t.Errorf("want the seccomp line and one line about AppArmor, got:\n%s", out)
				}
			}

			installed, _ := os.ReadFile(target)
			if tc.wantSeccomp {
				if string(installed) != seccompJSON {
					t.Errorf("%s = %q, want the profile", name, installed)
				}
				if fi, err := os.Stat(target); err == nil && fi.Mode().Perm() != 0o644 {
					t.Errorf("%s has mode %v, want 0644 (the runtime reads it)", name, fi.Mode().Perm())
				}
				// A rename, not a write in place: whoever had the old file
				// open keeps reading the whole old one.
				if oldInode != 0 && inode(t, target) == oldInode {
					t.Errorf("%s was rewritten in place, not replaced by rename", name)
				}
			} else if len(installed) > 0 && !tc.noSeccomp {
				t.Errorf("%s written though the loader failed first: %q", name, installed)
			}
			if tc.seccompName == "../escape.json" {
				if _, err := os.Stat(filepath.Join(filepath.Dir(kubelet), "escape.json")); err == nil {
					t.Errorf("wrote outside the kubelet's seccomp directory")
				}
			}
			if !tc.noSeccomp {
				noTempFiles(t, kubelet)
			}

			aaInstalled, _ := os.ReadFile(filepath.Join(host, "etc/apparmor.d", apparmorName))
			local, _ := os.ReadFile(filepath.Join(host, "etc/apparmor.d/local", apparmorName))
			calls, _ := os.ReadFile(filepath.Join(host, "stub/calls"))
			if tc.noAppArmor || !tc.node.enabled {
				if len(aaInstalled) > 0 || len(local) > 0 || len(calls) > 0 {
					t.Errorf("wrote or loaded an AppArmor profile with no AppArmor to load it into, or none asked for")
				}
				return
			}
			if tc.node.parserVersion == "" {
				return
			}
			if string(aaInstalled) != apparmorText {
				t.Errorf("/etc/apparmor.d/%s = %q", apparmorName, aaInstalled)
			}
			if got := strings.Contains(string(local), "userns,"); got != tc.wantUserns {
				t.Errorf("local/%s has userns: %v, want %v:\n%s", apparmorName, got, tc.wantUserns, local)
			}
			if strings.TrimSpace(string(calls)) != "--replace /etc/apparmor.d/"+apparmorName {
				t.Errorf("parser called with %q", calls)
			}
			loaded := mustRead(t, filepath.Join(host, "sys/kernel/security/apparmor/profiles"))
			if got := strings.Contains(loaded, apparmorName+" (enforce)"); got != tc.wantLoaded {
				t.Errorf("loaded profiles %q", loaded)
			}
			noTempFiles(t, filepath.Join(host, "etc/apparmor.d"))
		})
	}
}
