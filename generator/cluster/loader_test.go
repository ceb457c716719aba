package cluster

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// The node-profile loader per AppArmor mode: what it ships, what host paths
// it sees and with which capabilities.
func TestLoader(t *testing.T) {
	const seccompJSON = `{"defaultAction":"SCMP_ACT_ERRNO"}`
	for _, tc := range []struct {
		mode      string
		wantKeys  []string
		wantPaths []string // host paths, in volume order
		wantCaps  []corev1.Capability
		wantEnv   []string
	}{
		{config.AppArmorField, []string{"containerized-buildah", "load.sh", "seccomp.json"},
			[]string{"/var/lib/kubelet/seccomp", "/", "/etc/apparmor.d"}, []corev1.Capability{"MAC_ADMIN", "SYS_CHROOT"},
			[]string{"SECCOMP_PROFILE", "SECCOMP_FILE", "SECCOMP_DIR", "SECCOMP_NODE_DIR", "APPARMOR_PROFILE", "APPARMOR_FILE", "HOST_ROOT"}},
		{config.AppArmorAnnotation, []string{"containerized-buildah", "load.sh", "seccomp.json"},
			[]string{"/var/lib/kubelet/seccomp", "/", "/etc/apparmor.d"}, []corev1.Capability{"MAC_ADMIN", "SYS_CHROOT"},
			[]string{"SECCOMP_PROFILE", "SECCOMP_FILE", "SECCOMP_DIR", "SECCOMP_NODE_DIR", "APPARMOR_PROFILE", "APPARMOR_FILE", "HOST_ROOT"}},
		{config.AppArmorNone, []string{"load.sh", "seccomp.json"},
			[]string{"/var/lib/kubelet/seccomp"}, nil,
			[]string{"SECCOMP_PROFILE", "SECCOMP_FILE", "SECCOMP_DIR", "SECCOMP_NODE_DIR"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := config.Default()
			cfg.AppArmor.Mode = tc.mode
			apparmor := ""
			if cfg.LoadsAppArmorProfile() {
				apparmor = "profile containerized-buildah {}\n"
			}
			cm, ds := Loader(cfg, []byte(seccompJSON), apparmor)
			if ds.Name != "node-profile-loader" || cm.Name != ds.Name {
				t.Errorf("names %q, %q", ds.Name, cm.Name)
			}
			var keys []string
			for k := range cm.Data {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tc.wantKeys) {
				t.Errorf("ConfigMap keys %v, want %v", keys, tc.wantKeys)
			}
			if cm.Data["seccomp.json"] != seccompJSON || cm.Data["load.sh"] != scripts.LoadNodeProfiles {
				t.Error("ConfigMap does not carry the profile and the script verbatim")
			}
			spec := ds.Spec.Template.Spec
			var paths []string
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					paths = append(paths, v.HostPath.Path)
				}
			}
			if !slices.Equal(paths, tc.wantPaths) {
				t.Errorf("host paths %v, want %v", paths, tc.wantPaths)
			}
			load := spec.InitContainers[0]
			sc := load.SecurityContext
			if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, tc.wantCaps) {
				t.Errorf("capabilities %+v, want all dropped and %v added", sc.Capabilities, tc.wantCaps)
			}
			if (sc.AppArmorProfile != nil) != cfg.LoadsAppArmorProfile() {
				t.Errorf("appArmorProfile %+v in mode %s", sc.AppArmorProfile, tc.mode)
			}
			if sc.Privileged != nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("securityContext %+v", sc)
			}
			var env []string
			for _, e := range load.Env {
				env = append(env, e.Name)
			}
			if !slices.Equal(env, tc.wantEnv) {
				t.Errorf("env %v, want %v", env, tc.wantEnv)
			}
			for _, m := range load.VolumeMounts {
				writable := m.Name == "kubelet-seccomp" || m.Name == "apparmor-d"
				if m.ReadOnly == writable {
					t.Errorf("mount %s readOnly=%v", m.Name, m.ReadOnly)
				}
			}

			// Any change of what it installs rolls the pods.
			sum := ds.Spec.Template.Annotations["tekton-multiarch.dev/profiles-sha256"]
			_, ds2 := Loader(cfg, []byte(seccompJSON+" "), apparmor)
			if sum == "" || ds2.Spec.Template.Annotations["tekton-multiarch.dev/profiles-sha256"] == sum {
				t.Errorf("a changed seccomp profile leaves the checksum %q", sum)
			}
		})
	}
}
