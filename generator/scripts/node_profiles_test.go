package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNode lays out what the loader sees of a node under /host: a root
// filesystem whose only programs are a static busybox and a stand-in
// apparmor_parser that behaves like the real one's --version and --replace
// (this machine's kernel has no AppArmor to load into), and the securityfs
// and module files the loader reads.
type fakeNode struct {
	enabled       bool
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
	for _, d := range []string{"bin", "sbin", "stub", "etc/apparmor.d", "sys/module/apparmor/parameters", "sys/kernel/security/apparmor/features/namespaces"} {
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
	enabled := "N"
	if n.enabled {
		enabled = "Y"
	}
	write(t, filepath.Join(root, "sys/module/apparmor/parameters/enabled"), enabled+"\n", 0o644)
	write(t, filepath.Join(root, "sys/kernel/security/apparmor/profiles"), "", 0o644)
	if n.usernsKernel {
		write(t, filepath.Join(root, "sys/kernel/security/apparmor/features/namespaces/userns_create"), "pciu&\n", 0o644)
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

func TestAppArmorLoader(t *testing.T) {
	const name = "containerized-buildah"
	profile := "profile " + name + " flags=(attach_disconnected,mediate_deleted) {\n  include if exists <local/" + name + ">\n  mount,\n}\n"
	for _, tc := range []struct {
		name       string
		node       fakeNode
		wantExit   int
		wantOut    string
		wantUserns bool
		wantLoaded bool
	}{
		{"AppArmor off (Raspberry Pi OS)", fakeNode{enabled: false, parserVersion: "3.0.8"}, 0, "AppArmor is not enabled on this node", false, false},
		{"AppArmor 3 node", fakeNode{enabled: true, parserVersion: "3.0.8", usernsKernel: true}, 0, "loaded AppArmor profile " + name, false, true},
		{"AppArmor 4 node that mediates userns", fakeNode{enabled: true, parserVersion: "4.0.1", usernsKernel: true}, 0, "allowing userns", true, true},
		{"AppArmor 4 parser, older kernel", fakeNode{enabled: true, parserVersion: "4.0.1"}, 0, "loaded AppArmor profile " + name, false, true},
		{"no parser on the node", fakeNode{enabled: true}, 1, "has no apparmor_parser", false, false},
		{"parser refuses", fakeNode{enabled: true, parserVersion: "3.0.8", parserFails: true}, 1, "refused /etc/apparmor.d/" + name, false, false},
		{"loaded but missing", fakeNode{enabled: true, parserVersion: "3.0.8", parserForgets: true}, 1, "is not among the loaded profiles", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.node.build(t)
			dir := t.TempDir()
			script := filepath.Join(dir, "load.sh")
			write(t, script, LoadAppArmor, 0o755)
			profileFile := filepath.Join(dir, name)
			write(t, profileFile, profile, 0o644)
			cmd := exec.Command("/bin/sh", script)
			cmd.Env = append(os.Environ(), "PROFILE_NAME="+name, "PROFILE_FILE="+profileFile, "HOST_ROOT="+host)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantExit || !strings.Contains(string(out), tc.wantOut) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.wantExit, tc.wantOut)
			}
			installed, _ := os.ReadFile(filepath.Join(host, "etc/apparmor.d", name))
			local, _ := os.ReadFile(filepath.Join(host, "etc/apparmor.d/local", name))
			calls, _ := os.ReadFile(filepath.Join(host, "stub/calls"))
			loaded := mustRead(t, filepath.Join(host, "sys/kernel/security/apparmor/profiles"))
			if !tc.node.enabled {
				if len(installed) > 0 || len(calls) > 0 {
					t.Errorf("wrote or loaded on a node without AppArmor")
				}
				return
			}
			if tc.node.parserVersion == "" {
				return
			}
			if string(installed) != profile {
				t.Errorf("/etc/apparmor.d/%s = %q", name, installed)
			}
			if got := strings.Contains(string(local), "userns,"); got != tc.wantUserns {
				t.Errorf("local/%s has userns: %v, want %v:\n%s", name, got, tc.wantUserns, local)
			}
			if strings.TrimSpace(string(calls)) != "--replace /etc/apparmor.d/"+name {
				t.Errorf("parser called with %q", calls)
			}
			if got := strings.Contains(loaded, name+" (enforce)"); got != tc.wantLoaded {
				t.Errorf("loaded profiles %q", loaded)
			}
			entries, _ := os.ReadDir(filepath.Join(host, "etc/apparmor.d"))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("temp file left: %s", e.Name())
				}
			}
		})
	}
}
