package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

// served starts a pool with devs behind the kubelet stand-in and returns the kubelet's view of it.
func served(t *testing.T, res config.Resource, devs []Device) (*env, *kubelettest.Plugin) {
	t.Helper()
	e := newEnv(t, ModeKubeletSocket)
	if err := e.mgr.Update(res, devs); err != nil {
		t.Fatal(err)
	}
	p, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), res.FullName(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return len(d) == len(devs) }); err != nil {
		t.Fatal(err)
	}
	return e, p
}

func vf(addr, pf string, numa int) Device {
	return Device{ID: addr, PCIAddress: addr, PFPCIAddress: pf, NUMANode: numa}
}

func TestAllocate(t *testing.T) {
	devs := []Device{
		{ID: "dummy0", NUMANode: -1},
		{ID: "veth7", NUMANode: -1},
		vf("0000:3b:02.0", "0000:3b:00.0", 0),
		vf("0000:3b:02.1", "0000:3b:00.0", 0),
		{ID: "0000:3b:02.2", PCIAddress: "0000:3b:02.2", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, VFIODevice: "/dev/vfio/42"},
		{ID: "0000:3b:02.3", PCIAddress: "0000:3b:02.3", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, VFIODevice: "/dev/vfio/42"},
		{ID: "0000:3b:02.4", PCIAddress: "0000:3b:02.4", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, VFIODevice: "/dev/vfio/noiommu-7"},
		{ID: "0000:3b:02.5", PCIAddress: "0000:3b:02.5", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, Problem: "PF 0000:3b:00.0 carrier down"},
		{ID: "0000:3b:02.6", PCIAddress: "0000:3b:02.6", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, Gone: true},
	}
	res := config.Resource{Name: "mixed-pool", Prefix: "example.com"}
	env := "PCIDEVICE_EXAMPLE_COM_MIXED_POOL"
	_, p := served(t, res, devs)

	type want struct {
		cdi     []string
		env     map[string]string
		devices []string // host path:permissions
	}
	tests := []struct {
		name    string
		ids     [][]string // per container
		want    []want
		code    codes.Code
		errText string
	}{
		{name: "software links", ids: [][]string{{"dummy0", "veth7"}},
			want: []want{{cdi: []string{"example.com/mixed-pool=dummy0", "example.com/mixed-pool=veth7"}}}},
		{name: "VFs get the sriov-dp variable", ids: [][]string{{"0000:3b:02.1", "0000:3b:02.0"}},
			want: []want{{cdi: []string{"example.com/mixed-pool=0000:3b:02.1", "example.com/mixed-pool=0000:3b:02.0"},
				env: map[string]string{env: "0000:3b:02.1,0000:3b:02.0"}}}},
		{name: "software link left out of the variable", ids: [][]string{{"dummy0", "0000:3b:02.0"}},
			want: []want{{cdi: []string{"example.com/mixed-pool=dummy0", "example.com/mixed-pool=0000:3b:02.0"},
				env: map[string]string{env: "0000:3b:02.0"}}}},
		{name: "vfio device nodes, one per group, noiommu", ids: [][]string{{"0000:3b:02.2", "0000:3b:02.3", "0000:3b:02.4"}},
			want: []want{{cdi: []string{"example.com/mixed-pool=0000:3b:02.2", "example.com/mixed-pool=0000:3b:02.3", "example.com/mixed-pool=0000:3b:02.4"},
				env:     map[string]string{env: "0000:3b:02.2,0000:3b:02.3,0000:3b:02.4"},
				devices: []string{"/dev/vfio/vfio:rw", "/dev/vfio/42:rw", "/dev/vfio/noiommu-7:rw"}}}},
		{name: "two containers", ids: [][]string{{"0000:3b:02.0"}, {"0000:3b:02.2"}},
			want: []want{
				{cdi: []string{"example.com/mixed-pool=0000:3b:02.0"}, env: map[string]string{env: "0000:3b:02.0"}},
				{cdi: []string{"example.com/mixed-pool=0000:3b:02.2"}, env: map[string]string{env: "0000:3b:02.2"}, devices: []string{"/dev/vfio/vfio:rw", "/dev/vfio/42:rw"}},
			}},
		{name: "unknown ID", ids: [][]string{{"0000:3b:02.0", "0000:af:00.9"}}, code: codes.InvalidArgument, errText: `"0000:af:00.9"`},
		{name: "unhealthy ID", ids: [][]string{{"0000:3b:02.5"}}, code: codes.FailedPrecondition, errText: `"0000:3b:02.5" of pool example.com/mixed-pool is unhealthy: PF 0000:3b:00.0 carrier down`},
		{name: "gone ID", ids: [][]string{{"dummy0"}, {"0000:3b:02.6"}}, code: codes.FailedPrecondition, errText: `"0000:3b:02.6" of pool example.com/mixed-pool is unhealthy: gone from the host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &pluginapi.AllocateRequest{}
			for _, ids := range tt.ids {
				req.ContainerRequests = append(req.ContainerRequests, &pluginapi.ContainerAllocateRequest{DevicesIds: ids})
			}
			resp, err := p.Client.Allocate(ctxTimeout(t, 5*time.Second), req)
			if tt.code != codes.OK {
				if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Allocate(%v) error = %v, want %s naming %s", tt.ids, err, tt.code, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.ContainerResponses) != len(tt.want) {
				t.Fatalf("%d container responses, want %d", len(resp.ContainerResponses), len(tt.want))
			}
			for i, cr := range resp.ContainerResponses {
				var cdi, devices []string
				for _, d := range cr.CdiDevices {
					cdi = append(cdi, d.Name)
				}
				for _, d := range cr.Devices {
					if d.HostPath != d.ContainerPath {
						t.Errorf("device %s is mounted at %s, want the same path", d.HostPath, d.ContainerPath)
					}
					devices = append(devices, d.HostPath+":"+d.Permissions)
				}
				w := tt.want[i]
				if !slices.Equal(cdi, w.cdi) {
					t.Errorf("container %d CDI devices = %v, want %v", i, cdi, w.cdi)
				}
				if fmt.Sprint(cr.Envs) != fmt.Sprint(w.env) && (len(cr.Envs) != 0 || len(w.env) != 0) {
					t.Errorf("container %d envs = %v, want %v", i, cr.Envs, w.env)
				}
				if !slices.Equal(devices, w.devices) {
					t.Errorf("container %d device specs = %v, want %v", i, devices, w.devices)
				}
				if len(cr.Mounts) != 0 || len(cr.Annotations) != 0 {
					t.Errorf("container %d has mounts %v / annotations %v, want none", i, cr.Mounts, cr.Annotations)
				}
			}
		})
	}
}

func TestListAndWatchTopologyAndHealth(t *testing.T) {
	devs := []Device{
		vf("0000:3b:02.1", "0000:3b:00.0", 1),
		vf("0000:3b:02.0", "0000:3b:00.0", 0),
		{ID: "dummy0", NUMANode: -1},
		{ID: "0000:5e:00.0", PCIAddress: "0000:5e:00.0", NUMANode: 1, Problem: "driver unbound"},
		{ID: "0000:5e:00.1", PCIAddress: "0000:5e:00.1", NUMANode: 1, Gone: true},
		{ID: "bad/name", NUMANode: -1},
	}
	tests := []struct {
		name string
		res  config.Resource
		want string
	}{
		{"topology", resA, "[0000:3b:02.0:Healthy[numa0] 0000:3b:02.1:Healthy[numa1] 0000:5e:00.0:Unhealthy[numa1] 0000:5e:00.1:Unhealthy[numa1] bad/name:Unhealthy dummy0:Healthy]"},
		{"excludeTopology", config.Resource{Name: resA.Name, Prefix: resA.Prefix, ExcludeTopology: true},
			"[0000:3b:02.0:Healthy 0000:3b:02.1:Healthy 0000:5e:00.0:Unhealthy 0000:5e:00.1:Unhealthy bad/name:Unhealthy dummy0:Healthy]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p := served(t, tt.res, devs)
			got, _ := p.Devices()
			if d := kubelettest.Describe(got); d != tt.want {
				t.Errorf("ListAndWatch sent %s\nwant %s", d, tt.want)
			}
		})
	}
}

// A software link handed to a pod leaves the host; that absence is use, not failure. A PCI
// function that leaves sysfs is gone.
func TestGoneDevicesAfterAllocate(t *testing.T) {
	devs := []Device{{ID: "dummy0", NUMANode: -1}, {ID: "dummy1", NUMANode: -1}, vf("0000:3b:02.0", "0000:3b:00.0", 0)}
	e, p := served(t, resA, devs)
	ctx := ctxTimeout(t, 10*time.Second)
	wait := func(want string) {
		t.Helper()
		if _, err := p.WaitDevices(ctx, func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == want }); err != nil {
			t.Fatalf("want %s: %v", want, err)
		}
	}
	update := func(devs []Device) {
		t.Helper()
		if err := e.mgr.Update(resA, devs); err != nil {
			t.Fatal(err)
		}
	}
	alloc := func(ids ...string) error {
		_, err := p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids}}})
		return err
	}
	if err := alloc("dummy0", "0000:3b:02.0"); err != nil {
		t.Fatal(err)
	}
	// The hook moved dummy0 into the pod; the VF's function left sysfs (VFs disabled).
	gone := []Device{{ID: "dummy0", NUMANode: -1, Gone: true}, {ID: "dummy1", NUMANode: -1}, {ID: "0000:3b:02.0", PCIAddress: "0000:3b:02.0", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, Gone: true}}
	update(gone)
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Healthy dummy1:Healthy]")
	// dummy1 was never allocated: its absence is a failure.
	update([]Device{gone[0], {ID: "dummy1", NUMANode: -1, Gone: true}, gone[2]})
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Healthy dummy1:Unhealthy]")
	// The pod ended and dummy0 came home.
	update(devs)
	wait("[0000:3b:02.0:Healthy[numa0] dummy0:Healthy dummy1:Healthy]")
	// Or was that a container restart? poststop detach brought it home and createRuntime attach
	// takes it back into the same pod, with no Allocate in between: in use, not broken.
	update(gone)
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Healthy dummy1:Healthy]")
	update(devs)
	wait("[0000:3b:02.0:Healthy[numa0] dummy0:Healthy dummy1:Healthy]")
	// Allocated again and gone into a pod; then the kubelet offers it as free while it is still
	// away: it never came back.
	if err := alloc("dummy0"); err != nil {
		t.Fatal(err)
	}
	update(gone)
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Healthy dummy1:Healthy]")
	resp, err := p.Client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: []string{"dummy0", "dummy1"}, AllocationSize: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.ContainerResponses[0].DeviceIDs; !slices.Equal(got, []string{"dummy1"}) {
		t.Errorf("preferred = %v, want [dummy1] (dummy0 is not on the host)", got)
	}
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Unhealthy dummy1:Healthy]")
	if err := alloc("dummy0"); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), ProblemLost) {
		t.Errorf("Allocate of a lost link: %v, want FailedPrecondition %q", err, ProblemLost)
	}
	update(devs)
	wait("[0000:3b:02.0:Healthy[numa0] dummy0:Healthy dummy1:Healthy]")
}

// A link the daemon's previous run pooled and that is away since this run began counts as handed
// out (the kubelet's allocation outlived the daemon): healthy while away, lost once the kubelet
// offers it as free while it is still away, and free for good once it is home. A PCI function
// gone from sysfs is gone, restored or not.
func TestRestoredLinkAwayCountsAsHandedOut(t *testing.T) {
	away := []Device{{ID: "dummy0", NUMANode: -1, Gone: true, Restored: true}, {ID: "dummy1", NUMANode: -1, Gone: true},
		{ID: "0000:3b:02.0", PCIAddress: "0000:3b:02.0", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, Gone: true, Restored: true}}
	_, p := served(t, resA, away)
	ctx := ctxTimeout(t, 10*time.Second)
	wait := func(want string) {
		t.Helper()
		if _, err := p.WaitDevices(ctx, func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == want }); err != nil {
			t.Fatalf("want %s: %v", want, err)
		}
	}
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Healthy dummy1:Unhealthy]")
	if _, err := p.Client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: []string{"dummy0"}, AllocationSize: 1}}}); err != nil {
		t.Fatal(err)
	}
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Unhealthy dummy1:Unhealthy]")
}

// An Allocate for a link still inside a pod means the kubelet thinks it is free: refuse it.
func TestAllocateOfLinkStillInPod(t *testing.T) {
	e, p := served(t, resA, []Device{{ID: "dummy0", NUMANode: -1}})
	ctx := ctxTimeout(t, 5*time.Second)
	req := &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"dummy0"}}}}
	if _, err := p.Client.Allocate(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Update(resA, []Device{{ID: "dummy0", NUMANode: -1, Gone: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client.Allocate(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second Allocate while in a pod: %v, want FailedPrecondition", err)
	}
	if _, err := p.WaitDevices(ctx, func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == "[dummy0:Unhealthy]" }); err != nil {
		t.Fatal(err)
	}
	if e.observed.allocated.Load() != 1 || e.observed.allocFailed.Load() != 1 {
		t.Errorf("observer heard %d allocations, %d failures; want 1 and 1", e.observed.allocated.Load(), e.observed.allocFailed.Load())
	}
}

func TestPluginDirect(t *testing.T) {
	p := NewPlugin(resA, nil)
	p.Update(resA, []Device{{ID: "dummy0", NUMANode: -1}})
	opts, err := p.GetDevicePluginOptions(context.Background(), &pluginapi.Empty{})
	if err != nil || !opts.GetPreferredAllocationAvailable {
		t.Errorf("options = %+v, %v", opts, err)
	}
	if _, err := p.PreStartContainer(context.Background(), &pluginapi.PreStartContainerRequest{}); err != nil {
		t.Errorf("PreStartContainer: %v", err)
	}
	if got := p.ResourceName(); got != resA.FullName() {
		t.Errorf("ResourceName = %q", got)
	}
}
