package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
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
	return Device{ID: addr, PCIAddress: addr, PFPCIAddress: pf, NUMANode: numa, CDI: true, Info: genericInfo(addr)}
}

func genericInfo(addr string) string { return `{"generic":{"deviceID":"` + addr + `"}}` }

func vfioVF(addr string, group, container string) Device {
	d := vf(addr, "0000:3b:00.0", 0)
	d.Nodes = []device.Node{{HostPath: "/dev/vfio/vfio", Path: "/dev/vfio/vfio"}, {HostPath: group, Path: container}}
	d.Info = `{"generic":{"deviceID":"` + addr + `"},"vfio":{"dev-mount":"` + container + `","mount":"/dev/vfio/vfio"}}`
	return d
}

func TestAllocate(t *testing.T) {
	cniVF := vf("0000:3b:02.7", "0000:3b:00.0", 0)
	cniVF.CDI = false // the CNI moves it: nothing in the CDI spec
	devs := []Device{
		{ID: "dummy0", NUMANode: -1, CDI: true},
		{ID: "veth7", NUMANode: -1, CDI: true},
		vf("0000:3b:02.0", "0000:3b:00.0", 0),
		vf("0000:3b:02.1", "0000:3b:00.0", 0),
		vfioVF("0000:3b:02.2", "/dev/vfio/42", "/dev/vfio/42"),
		vfioVF("0000:3b:02.3", "/dev/vfio/42", "/dev/vfio/42"),
		vfioVF("0000:3b:02.4", "/dev/vfio/noiommu-7", "/dev/vfio/7"),
		{ID: "0000:3b:02.5", PCIAddress: "0000:3b:02.5", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, Problem: "PF 0000:3b:00.0 carrier down", CDI: true},
		{ID: "0000:3b:02.6", PCIAddress: "0000:3b:02.6", PFPCIAddress: "0000:3b:00.0", NUMANode: 0, Gone: true, CDI: true},
		cniVF,
	}
	res := config.Resource{Name: "mixed-pool", Prefix: "example.com"}
	env := "PCIDEVICE_EXAMPLE_COM_MIXED-POOL" // sriov-dp keeps '-'
	info := env + "_INFO"
	e, p := served(t, res, devs)

	type want struct {
		cdi     []string
		env     map[string]string
		devices []string // host path>container path:permissions
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
		{name: "VFs get the sriov-dp variables", ids: [][]string{{"0000:3b:02.1", "0000:3b:02.0"}},
			want: []want{{cdi: []string{"example.com/mixed-pool=0000:3b:02.1", "example.com/mixed-pool=0000:3b:02.0"},
				env: map[string]string{env: "0000:3b:02.1,0000:3b:02.0",
					info: `{"0000:3b:02.0":{"generic":{"deviceID":"0000:3b:02.0"}},"0000:3b:02.1":{"generic":{"deviceID":"0000:3b:02.1"}}}`}}}},
		{name: "software link left out of the variables", ids: [][]string{{"dummy0", "0000:3b:02.0"}},
			want: []want{{cdi: []string{"example.com/mixed-pool=dummy0", "example.com/mixed-pool=0000:3b:02.0"},
				env: map[string]string{env: "0000:3b:02.0", info: `{"0000:3b:02.0":{"generic":{"deviceID":"0000:3b:02.0"}}}`}}}},
		{name: "vfio device nodes, once per host path, noiommu mapped", ids: [][]string{{"0000:3b:02.2", "0000:3b:02.3", "0000:3b:02.4"}},
			want: []want{{cdi: []string{"example.com/mixed-pool=0000:3b:02.2", "example.com/mixed-pool=0000:3b:02.3", "example.com/mixed-pool=0000:3b:02.4"},
				env: map[string]string{env: "0000:3b:02.2,0000:3b:02.3,0000:3b:02.4",
					info: `{"0000:3b:02.2":{"generic":{"deviceID":"0000:3b:02.2"},"vfio":{"dev-mount":"/dev/vfio/42","mount":"/dev/vfio/vfio"}},` +
						`"0000:3b:02.3":{"generic":{"deviceID":"0000:3b:02.3"},"vfio":{"dev-mount":"/dev/vfio/42","mount":"/dev/vfio/vfio"}},` +
						`"0000:3b:02.4":{"generic":{"deviceID":"0000:3b:02.4"},"vfio":{"dev-mount":"/dev/vfio/7","mount":"/dev/vfio/vfio"}}}`},
				devices: []string{"/dev/vfio/vfio>/dev/vfio/vfio:rw", "/dev/vfio/42>/dev/vfio/42:rw", "/dev/vfio/noiommu-7>/dev/vfio/7:rw"}}}},
		{name: "two containers", ids: [][]string{{"0000:3b:02.0"}, {"0000:3b:02.2"}},
			want: []want{
				{cdi: []string{"example.com/mixed-pool=0000:3b:02.0"}, env: map[string]string{env: "0000:3b:02.0", info: `{"0000:3b:02.0":{"generic":{"deviceID":"0000:3b:02.0"}}}`}},
				{cdi: []string{"example.com/mixed-pool=0000:3b:02.2"}, env: map[string]string{env: "0000:3b:02.2",
					info: `{"0000:3b:02.2":{"generic":{"deviceID":"0000:3b:02.2"},"vfio":{"dev-mount":"/dev/vfio/42","mount":"/dev/vfio/vfio"}}}`},
					devices: []string{"/dev/vfio/vfio>/dev/vfio/vfio:rw", "/dev/vfio/42>/dev/vfio/42:rw"}},
			}},
		{name: "a VF the CNI moves has no CDI device", ids: [][]string{{"0000:3b:02.7"}},
			want: []want{{env: map[string]string{env: "0000:3b:02.7", info: `{"0000:3b:02.7":{"generic":{"deviceID":"0000:3b:02.7"}}}`}}}},
		{name: "unknown ID", ids: [][]string{{"0000:3b:02.0", "0000:af:00.9"}}, code: codes.InvalidArgument, errText: `"0000:af:00.9"`},
		{name: "duplicate ID", ids: [][]string{{"0000:3b:02.0", "0000:3b:02.0"}}, code: codes.InvalidArgument, errText: `device "0000:3b:02.0" requested twice`},
		{name: "unhealthy ID", ids: [][]string{{"0000:3b:02.5"}}, code: codes.FailedPrecondition, errText: `"0000:3b:02.5" of pool example.com/mixed-pool is unhealthy: PF 0000:3b:00.0 carrier down`},
		{name: "gone ID", ids: [][]string{{"dummy0"}, {"0000:3b:02.6"}}, code: codes.FailedPrecondition, errText: `"0000:3b:02.6" of pool example.com/mixed-pool is unhealthy: gone from the host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := e.ledger.calls()
			req := &pluginapi.AllocateRequest{}
			var all []string
			for _, ids := range tt.ids {
				req.ContainerRequests = append(req.ContainerRequests, &pluginapi.ContainerAllocateRequest{DevicesIds: ids})
				all = append(all, ids...)
			}
			resp, err := p.Client.Allocate(ctxTimeout(t, 5*time.Second), req)
			after, _ := e.ledger.calls()
			if tt.code != codes.OK {
				if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Allocate(%v) error = %v, want %s naming %s", tt.ids, err, tt.code, tt.errText)
				}
				if len(after) != len(before) {
					t.Errorf("a refused Allocate was recorded: %v", after[len(after)-1])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before)+1 || !slices.Equal(after[len(after)-1], all) {
				t.Errorf("recorder heard %v, want one allocation of %v", after[len(before):], all)
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
					devices = append(devices, d.HostPath+">"+d.ContainerPath+":"+d.Permissions)
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

// A recorder that cannot record (a device-information file that cannot be written) fails the
// Allocate: the pod would start without what Multus needs.
func TestAllocateFailsWhenNotRecorded(t *testing.T) {
	e, p := served(t, resB, []Device{vf("0000:3b:02.0", "0000:3b:00.0", 0)})
	e.ledger.mu.Lock()
	e.ledger.fail = errors.New("disk full")
	e.ledger.mu.Unlock()
	_, err := p.Client.Allocate(ctxTimeout(t, 5*time.Second), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"0000:3b:02.0"}}}})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "0000:3b:02.0") {
		t.Fatalf("Allocate = %v, want Internal naming the device and the cause", err)
	}
	if e.observed.allocFailed.Load() != 1 {
		t.Errorf("observer heard %d failures, want 1", e.observed.allocFailed.Load())
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

// A software link the kubelet holds and that left the host is inside its pod: healthy (in use). One
// that is gone without being held, and a PCI function that left sysfs, are unhealthy.
func TestGoneDevices(t *testing.T) {
	link := func(id string, gone, inUse bool) Device {
		return Device{ID: id, NUMANode: -1, Gone: gone, InUse: inUse, CDI: true}
	}
	gonePCI := vf("0000:3b:02.0", "0000:3b:00.0", 0)
	gonePCI.Gone, gonePCI.InUse = true, true
	e, p := served(t, resA, []Device{link("dummy0", false, false), link("dummy1", false, false), vf("0000:3b:02.0", "0000:3b:00.0", 0)})
	ctx := ctxTimeout(t, 10*time.Second)
	wait := func(want string) {
		t.Helper()
		if _, err := p.WaitDevices(ctx, func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == want }); err != nil {
			t.Fatalf("want %s: %v", want, err)
		}
	}
	update := func(devs ...Device) {
		t.Helper()
		if err := e.mgr.Update(resA, devs); err != nil {
			t.Fatal(err)
		}
	}
	update(link("dummy0", true, true), link("dummy1", true, false), gonePCI)
	wait("[0000:3b:02.0:Unhealthy[numa0] dummy0:Healthy dummy1:Unhealthy]")
	_, err := p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"dummy0"}}}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "in use by another pod") {
		t.Errorf("Allocate of a link inside a pod: %v, want FailedPrecondition", err)
	}
	update(link("dummy0", false, true), link("dummy1", false, false), vf("0000:3b:02.0", "0000:3b:00.0", 0))
	wait("[0000:3b:02.0:Healthy[numa0] dummy0:Healthy dummy1:Healthy]")
}

// GetPreferredAllocation tells the recorder which devices the kubelet considers free, and refuses
// a request it could never satisfy.
func TestPreferredAllocationChecks(t *testing.T) {
	e, p := served(t, resA, []Device{vf("0000:3b:02.0", "0000:3b:00.0", 0), vf("0000:3b:02.1", "0000:3b:00.0", 0), vf("0000:3b:02.2", "0000:3b:00.0", 0)})
	ctx := ctxTimeout(t, 5*time.Second)
	pref := func(available, must []string, size int32) ([]string, error) {
		resp, err := p.Client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
			{AvailableDeviceIDs: available, MustIncludeDeviceIDs: must, AllocationSize: size}}})
		if err != nil {
			return nil, err
		}
		return resp.ContainerResponses[0].DeviceIDs, nil
	}
	got, err := pref([]string{"0000:3b:02.2", "0000:3b:02.1"}, nil, 1)
	if err != nil || !slices.Equal(got, []string{"0000:3b:02.1"}) {
		t.Errorf("preferred = %v, %v", got, err)
	}
	if _, offered := e.ledger.calls(); len(offered) != 1 || !slices.Equal(offered[0], []string{"0000:3b:02.2", "0000:3b:02.1"}) {
		t.Errorf("recorder heard offers %v", offered)
	}
	if _, err := pref([]string{"0000:3b:02.0"}, []string{"0000:3b:09.0"}, 1); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"0000:3b:09.0"`) {
		t.Errorf("must-include device the pool lacks: %v, want InvalidArgument naming it", err)
	}
	if _, err := pref([]string{"0000:3b:02.0", "0000:3b:02.1"}, []string{"0000:3b:02.0", "0000:3b:02.1"}, 1); status.Code(err) != codes.InvalidArgument {
		t.Errorf("more must-include devices than the size: %v, want InvalidArgument", err)
	}
}

func TestPluginDirect(t *testing.T) {
	p := NewPlugin(resA, nil, nil)
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
