// Command fuse-device-plugin advertises the node's /dev/fuse to the kubelet
// as an extended resource through the kubelet's device plugin API
// (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1), the way the catalog's
// generic device plugin does on a real cluster: N interchangeable devices
// named <resource>, each allocation a DeviceSpec for /dev/fuse (rw, no
// mknod), so a container gets the device only through its resource limit.
//
// It stands in for github.com/squat/generic-device-plugin, which the Go
// module proxy here does not serve. Like every device plugin it serves
// gRPC on a socket in the kubelet's device-plugins directory and registers
// with kubelet.sock; when the kubelet restarts it removes every socket in
// that directory, so the plugin watches its own socket and registers again
// with the new kubelet.
//
//	fuse-device-plugin [-resource github.com/fuse] [-count 100] [-device /dev/fuse]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	device  string
	devices []*pluginapi.Device
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the device list once: the devices never change, so the
// stream then only waits for the kubelet to close it.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, s grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := s.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		log.Printf("allocate %v: %s", c.DevicesIds, p.device)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Devices: []*pluginapi.DeviceSpec{{ContainerPath: p.device, HostPath: p.device, Permissions: "rw"}},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func main() {
	resource := flag.String("resource", "github.com/fuse", "extended resource name")
	count := flag.Int("count", 100, "how many pods may hold the device at once")
	device := flag.String("device", "/dev/fuse", "device node to hand out")
	dir := flag.String("dir", pluginapi.DevicePluginPath, "the kubelet's device-plugins directory")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	if _, err := os.Stat(*device); err != nil {
		log.Fatalf("%s: %v", *device, err)
	}
	p := &plugin{device: *device}
	for i := 0; i < *count; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("fuse-%d", i), Health: pluginapi.Healthy})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	socket := filepath.Join(*dir, "tekton-multiarch-fuse.sock")
	for ctx.Err() == nil {
		if err := serve(ctx, p, *resource, socket, filepath.Join(*dir, "kubelet.sock")); err != nil {
			log.Printf("%v; retrying in 1s", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	_ = os.Remove(socket)
	log.Print("stopped")
}

// serve listens on socket, registers with the kubelet and returns when the
// socket disappears (the kubelet restarted) or ctx ends.
func serve(ctx context.Context, p *plugin, resource, socket, kubelet string) error {
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(srv, p)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	if err := register(ctx, kubelet, resource, filepath.Base(socket)); err != nil {
		return err
	}
	log.Printf("registered %s (%d devices) with %s", resource, len(p.devices), kubelet)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
		if _, err := os.Stat(socket); err != nil {
			return fmt.Errorf("%s is gone (the kubelet restarted)", socket)
		}
	}
}

func register(ctx context.Context, kubelet, resource, endpoint string) error {
	conn, err := grpc.NewClient("unix://"+kubelet, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     endpoint,
		ResourceName: resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	if err != nil {
		return fmt.Errorf("register with %s: %w", kubelet, err)
	}
	return nil
}
