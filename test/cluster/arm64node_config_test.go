package cluster

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeArm64Config writes what the config disk carries: node-init's
// settings, containerd's and the kubelet's configuration, the node's
// credentials, the CNI network, seccomp profiles and the image archives.
func (s *stack) writeArm64Config(t testing.TB, p *arm64NodeProvider, n *arm64Node, dir string) {
	t.Helper()
	args := strings.Join([]string{
		"--hostname-override=" + arm64NodeName,
		"--node-ip=" + arm64GuestIP,
		"--node-labels=type=real-arm64",
		"--register-with-taints=" + realNodeTaintKey + "=true:NoSchedule",
		"--v=2",
	}, " ")
	write(t, filepath.Join(dir, "config.env"), []byte(fmt.Sprintf("ARM64_NODE_NAME=%s\nARM64_NODE_IP=%s\nARM64_NODE_GATEWAY=%s\nKUBELET_ARGS=%q\nFUSE_RESOURCE=%s\n",
		arm64NodeName, arm64GuestIP, arm64HostIP, args, fuseResource)))
	// Debian's containerd 1.6.20 in a machine whose root has every
	// capability: runc can set the sandbox's oom_score_adj, so CRI's
	// restrict_oom_score_adj (the amd64 node's) is not needed. AppArmor is
	// on: containerd loads its default profile (cri-containerd.apparmor.d)
	// with apparmor_parser for every container that asks for none.
	write(t, filepath.Join(dir, "containerd.toml"), []byte(fmt.Sprintf(`version = 2
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
`, n.images.Ref(t, "PAUSE_IMAGE"))))
	write(t, filepath.Join(dir, "cni", "10-arm64.conflist"), []byte(fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "tekton-multiarch-arm64",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`, arm64PodCIDR, arm64PodGateway)))
	// The guest mounts cgroup2 (unified): no failCgroupV1 here, so a
	// machine that came up on v1 fails loudly.
	write(t, filepath.Join(dir, "kubelet.yaml"), []byte(fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# Only the API server, inside the test's network namespace, reaches this port.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
failSwapOn: false
seccompDefault: %t
serializeImagePulls: false
# Under emulation every runtime call is slow.
runtimeRequestTimeout: 10m
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
  nodefs.inodesFree: "0%%"
resolvConf: ""
`, arm64GuestIP, p.seccompDefault)))
	crt, key := s.pki.sign(30, pkix.Name{CommonName: "system:node:" + arm64NodeName, Organization: []string{"system:nodes"}},
		x509.ExtKeyUsageClientAuth, nil, nil)
	kc := clientcmdapi.NewConfig()
	// The relay's address; the API server's certificate is for 127.0.0.1.
	kc.Clusters["cluster-test"] = &clientcmdapi.Cluster{Server: "https://" + net.JoinHostPort(arm64HostIP, "6443"),
		CertificateAuthorityData: s.pki.caPEM, TLSServerName: "127.0.0.1"}
	kc.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	kc.Contexts["node"] = &clientcmdapi.Context{Cluster: "cluster-test", AuthInfo: "node"}
	kc.CurrentContext = "node"
	if err := clientcmd.WriteToFile(*kc, filepath.Join(dir, "kubelet.kubeconfig")); err != nil {
		t.Fatal(err)
	}
	for _, f := range p.seccompProfiles {
		linkOrCopy(t, f, filepath.Join(dir, "seccomp", filepath.Base(f)))
	}
	archives, _ := filepath.Glob(filepath.Join(n.images.Dir, "*.tar"))
	if len(archives) == 0 {
		t.Fatalf("no image archives in %s", n.images.Dir)
	}
	for _, a := range archives {
		linkOrCopy(t, a, filepath.Join(dir, "images", filepath.Base(a)))
	}
}

// linkOrCopy puts src's content at dst (mkfs.ext4 -d copies a symbolic
// link as a link): a hard link, or a copy across file systems.
func linkOrCopy(t testing.TB, src, dst string) {
	t.Helper()
	if os.Link(src, dst) == nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// dirMB is the size of the files under dir, in MiB, rounded up.
func dirMB(t testing.TB, dir string) int64 {
	t.Helper()
	var size int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return size>>20 + 1
}
