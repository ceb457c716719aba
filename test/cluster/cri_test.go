package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criClient talks to containerd the way the kubelet does, through the CRI:
// to read what actually runs (a container's host PID) and to remove every
// pod sandbox at the end, which stops the shims and tears down the pod
// networks the kubelet can no longer clean up once stopped.
type criClient struct {
	conn *grpc.ClientConn
	rt   cri.RuntimeServiceClient
	// removed: removeAllSandboxes ran (a node restarted in a test
	// registers it again, to run while its new containerd is up).
	removed bool
}

func dialCRI(t testing.TB, socket string) *criClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := &criClient{conn: conn, rt: cri.NewRuntimeServiceClient(conn)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.rt.Version(ctx, &cri.VersionRequest{})
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd's CRI at %s does not answer: %v", socket, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *criClient) removeAllSandboxes(t testing.TB) {
	if c.removed {
		return
	}
	c.removed = true
	defer c.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("CRI ListPodSandbox: %v", err)
		return
	}
	for _, sb := range resp.Items {
		if _, err := c.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("CRI StopPodSandbox %s (%s/%s): %v", sb.Id, sb.Metadata.Namespace, sb.Metadata.Name, err)
		}
		if _, err := c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("CRI RemovePodSandbox %s: %v", sb.Id, err)
		}
	}
}

// runningContainer is one container of a pod as the runtime sees it.
type runningContainer struct {
	pod, name string
	pid       int
}

// running lists the running containers of pods in namespace ns, with the
// host PID of each one's first process.
func (c *criClient) running(ctx context.Context, ns string) ([]runningContainer, error) {
	resp, err := c.rt.ListContainers(ctx, &cri.ListContainersRequest{Filter: &cri.ContainerFilter{
		State:         &cri.ContainerStateValue{State: cri.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{"io.kubernetes.pod.namespace": ns},
	}})
	if err != nil {
		return nil, err
	}
	var out []runningContainer
	for _, ctr := range resp.Containers {
		st, err := c.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: ctr.Id, Verbose: true})
		if err != nil {
			continue // gone in the meantime
		}
		var info struct {
			Pid int `json:"pid"`
		}
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid == 0 {
			continue
		}
		out = append(out, runningContainer{pod: ctr.Labels["io.kubernetes.pod.name"], name: ctr.Metadata.Name, pid: info.Pid})
	}
	return out, nil
}

// procCreds is what the kernel says of a process: the credentials and
// confinement it really runs with, whatever the pod spec asked for.
type procCreds struct {
	uid, gid    string // real, effective, saved, filesystem
	capEff      uint64
	capBnd      uint64
	noNewPrivs  bool
	seccompMode string // 0 none, 1 strict, 2 filter
	uidMap      string
	// containersUID owns the container's /var/lib/containers (the build
	// step's emptyDir), seen from the host through /proc/PID/root; -1 where
	// the container has none.
	containersUID int64
}

func readProcCreds(pid int) (procCreds, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procCreds{}, err
	}
	var pc procCreds
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Uid":
			pc.uid = strings.Join(strings.Fields(v), " ")
		case "Gid":
			pc.gid = strings.Join(strings.Fields(v), " ")
		case "CapEff":
			pc.capEff, _ = strconv.ParseUint(v, 16, 64)
		case "CapBnd":
			pc.capBnd, _ = strconv.ParseUint(v, 16, 64)
		case "NoNewPrivs":
			pc.noNewPrivs = v == "1"
		case "Seccomp":
			pc.seccompMode = v
		}
	}
	m, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		return procCreds{}, err
	}
	pc.uidMap = strings.Join(strings.Fields(string(m)), " ")
	pc.containersUID = -1
	var st syscall.Stat_t
	if syscall.Stat(fmt.Sprintf("/proc/%d/root/var/lib/containers", pid), &st) == nil {
		pc.containersUID = int64(st.Uid)
	}
	return pc, nil
}

// capNames are the capability bits by number (linux/capability.h), to
// print a set the way capsh does.
var capNames = []string{"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock",
	"ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot",
	"sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control",
	"setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon",
	"bpf", "checkpoint_restore"}

func capSet(mask uint64) []string {
	var names []string
	for i, n := range capNames {
		if mask&(1<<uint(i)) != 0 {
			names = append(names, "cap_"+n)
		}
	}
	return names
}
