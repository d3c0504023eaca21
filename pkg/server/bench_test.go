package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

// benchPool serves devs behind the kubelet stand-in for a benchmark.
func benchPool(b *testing.B, devs []Device) *kubelettest.Plugin {
	b.Helper()
	dir, err := os.MkdirTemp("", "srvb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	k, err := kubelettest.Start(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(k.Close)
	m, err := NewManager(Options{DevicePluginDir: dir, PluginsRegistryDir: filepath.Join(dir, "none")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	if err := m.Update(resA, devs); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := k.WaitPlugin(ctx, resA.FullName(), time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// 8 PFs x 128 VFs over two NUMA nodes, like pcitest.Generate(8, 128).
func devices1024() []Device {
	var devs []Device
	for pf := 0; pf < 8; pf++ {
		for v := 0; v < 128; v++ {
			addr := fmt.Sprintf("0000:%02x:%02x.%d", 0x10+pf, 1+(v+8)/8, (v+8)%8)
			devs = append(devs, Device{ID: addr, PCIAddress: addr, PFPCIAddress: fmt.Sprintf("0000:%02x:00.0", 0x10+pf), NUMANode: pf % 2})
		}
	}
	return devs
}

// BenchmarkAllocate8 is one kubelet Allocate of 8 VFs over the real unix socket and gRPC.
func BenchmarkAllocate8(b *testing.B) {
	devs := devices1024()
	p := benchPool(b, devs)
	req := &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids(devs[100:108])}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Client.Allocate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetPreferredAllocation1024 picks 8 of 1,024 available VFs over gRPC, with one
// must-include device.
func BenchmarkGetPreferredAllocation1024(b *testing.B) {
	devs := devices1024()
	p := benchPool(b, devs)
	avail := ids(devs)
	slices.Reverse(avail)
	req := &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: avail, MustIncludeDeviceIDs: []string{devs[777].ID}, AllocationSize: 8}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := p.Client.GetPreferredAllocation(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.ContainerResponses[0].DeviceIDs) != 8 {
			b.Fatalf("preferred %v", resp.ContainerResponses[0].DeviceIDs)
		}
	}
}

// BenchmarkPrefer1024 is the selection alone, without gRPC.
func BenchmarkPrefer1024(b *testing.B) {
	devs := devices1024()
	s := build(resA, devs)
	avail := ids(devs)
	b.ReportAllocs()
	for b.Loop() {
		if got := prefer(s.byID, avail, nil, 8); len(got) != 8 {
			b.Fatal(got)
		}
	}
}
