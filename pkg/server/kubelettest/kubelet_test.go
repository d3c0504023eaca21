package kubelettest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

// stallingPlugin answers GetInfo only once released, holding the watcher's event loop meanwhile,
// as a slow plugin does in a real kubelet.
type stallingPlugin struct {
	registerapi.UnimplementedRegistrationServer
	entered chan struct{}
	release chan struct{}
}

func (s *stallingPlugin) GetInfo(ctx context.Context, _ *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	close(s.entered)
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: "stall.example.com"}, nil
}

func (s *stallingPlugin) NotifyRegistrationStatus(context.Context, *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	return &registerapi.RegistrationStatusResponse{}, nil
}

// serve serves g on a new unix socket at path until the test ends.
func serve(t *testing.T, path string, g *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
}

// The registry watcher keeps registering plugins after fsnotify reported an error: an unread
// error would block fsnotify for good, and no later socket would be seen.
func TestRegistryWatcherSurvivesOverflow(t *testing.T) {
	base, err := os.MkdirTemp("", "klt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	dp, reg := filepath.Join(base, "dp"), filepath.Join(base, "reg")
	for _, d := range []string{dp, reg} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	k, err := kubelettest.Start(dp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	var overflows atomic.Int32
	k.Logf = func(format string, args ...any) {
		for _, a := range args {
			if err, ok := a.(error); ok && errors.Is(err, fsnotify.ErrEventOverflow) {
				overflows.Add(1)
			}
		}
		t.Logf(format, args...)
	}
	if err := k.WatchRegistry(reg); err != nil {
		t.Fatal(err)
	}

	stall := &stallingPlugin{entered: make(chan struct{}), release: make(chan struct{})}
	g := grpc.NewServer()
	registerapi.RegisterRegistrationServer(g, stall)
	serve(t, filepath.Join(reg, "stall.sock"), g)
	select {
	case <-stall.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher never asked the stalling plugin for its info")
	}
	if err := kubelettest.Overflow(reg); err != nil {
		t.Fatal(err)
	}
	close(stall.release)

	// Events made while the queue was full are lost: serve fresh sockets until one is seen.
	res := config.Resource{Prefix: "example.com", Name: "after_overflow"}
	registered := false
	for i := 0; i < 20 && !registered; i++ {
		g := grpc.NewServer()
		p := server.NewPlugin(res, nil, nil)
		pluginapi.RegisterDevicePluginServer(g, p)
		registerapi.RegisterRegistrationServer(g, p)
		serve(t, filepath.Join(reg, fmt.Sprintf("p%d.sock", i)), g)
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		_, err := k.WaitPlugin(ctx, res.FullName(), time.Time{})
		cancel()
		registered = err == nil
	}
	if !registered {
		t.Fatal("no plugin socket registered after the watcher's event queue overflowed")
	}
	if overflows.Load() == 0 {
		t.Error("the overflow was not reported through Logf")
	}
}
