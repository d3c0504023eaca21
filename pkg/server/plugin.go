package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

// Plugin is the device-plugin service of one pool. It holds the pool's current state as an
// immutable snapshot; Update swaps it and wakes every ListAndWatch stream.
type Plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	registerapi.UnimplementedRegistrationServer

	name     string // "<prefix>/<name>"
	observer Observer
	recorder Recorder
	state    atomic.Pointer[snapshot]

	mu   sync.Mutex // serialises state swaps and guards devs
	devs []Device

	// set by the manager: socket path for GetInfo, and where a failed watcher registration goes.
	endpoint  string
	regFailed chan string
}

// NewPlugin returns the service of one pool with no devices. The manager serves it; tests may
// call its methods directly. obs and rec may be nil.
func NewPlugin(res config.Resource, obs Observer, rec Recorder) *Plugin {
	if obs == nil {
		obs = NopObserver{}
	}
	if rec == nil {
		rec = NopRecorder{}
	}
	p := &Plugin{
		name:      res.FullName(),
		observer:  obs,
		recorder:  rec,
		regFailed: make(chan string, 1),
	}
	p.state.Store(build(res, nil))
	return p
}

// ResourceName is the extended-resource name the pool is registered as.
func (p *Plugin) ResourceName() string { return p.name }

// Update replaces the pool's devices (and its resource settings, e.g. excludeTopology). The
// kubelet sees the new list at once if IDs, health or topology changed.
//
// A device with Gone set was in the pool and is not on the host now: unhealthy, except a software
// link the kubelet holds (InUse), which is inside its pod. Which gone devices stay listed at all is
// the daemon's decision.
func (p *Plugin) Update(res config.Resource, devs []Device) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.devs = devs
	p.swapLocked(res)
}

// swapLocked rebuilds the snapshot and publishes it if the kubelet-visible list changed.
func (p *Plugin) swapLocked(res config.Resource) {
	old := p.state.Load()
	next := build(res, p.devs)
	logHealthChanges(p.name, old, next)
	if sameList(old.list, next.list) && sameEntries(old, next) {
		return
	}
	p.state.Store(next)
	if !sameList(old.list, next.list) {
		close(old.changed)
		return
	}
	// Only Allocate-side facts changed (addresses, vfio nodes): hand the old waiters over.
	next.changed = old.changed
}

// sameEntries reports whether the facts Allocate uses are equal in both snapshots.
func sameEntries(a, b *snapshot) bool {
	if len(a.byID) != len(b.byID) || a.res.Name != b.res.Name || a.res.Prefix != b.res.Prefix {
		return false
	}
	for id, x := range a.byID {
		y, ok := b.byID[id]
		if !ok || !x.Device.equal(&y.Device) || x.healthy != y.healthy || x.problem != y.problem {
			return false
		}
	}
	return true
}

func logHealthChanges(pool string, old, next *snapshot) {
	if len(old.byID) == 0 && len(next.byID) > 0 {
		healthy := 0
		for _, e := range next.byID {
			if e.healthy {
				healthy++
			}
		}
		klog.InfoS("Pool has devices", "pool", pool, "devices", len(next.byID), "healthy", healthy)
		for id, e := range next.byID {
			if !e.healthy {
				klog.InfoS("Device unhealthy", "pool", pool, "device", id, "problem", e.problem)
			}
		}
		return
	}
	for id, e := range next.byID {
		prev, ok := old.byID[id]
		switch {
		case !ok:
			klog.InfoS("Device added to pool", "pool", pool, "device", id, "healthy", e.healthy, "problem", e.problem)
		case prev.healthy != e.healthy || prev.problem != e.problem:
			klog.InfoS("Device health changed", "pool", pool, "device", id, "healthy", e.healthy, "problem", e.problem)
		}
	}
	for id := range old.byID {
		if _, ok := next.byID[id]; !ok {
			klog.InfoS("Device removed from pool", "pool", pool, "device", id)
		}
	}
}

// Devices returns what ListAndWatch sends now.
func (p *Plugin) Devices() []*pluginapi.Device { return p.state.Load().list }

// Health counts the devices ListAndWatch sends now, and those of them it sends as Healthy.
func (p *Plugin) Health() (total, healthy int) {
	list := p.state.Load().list
	for _, d := range list {
		if d.Health == pluginapi.Healthy {
			healthy++
		}
	}
	return len(list), healthy
}

// GetDevicePluginOptions advertises GetPreferredAllocation; nothing needs PreStartContainer.
func (p *Plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true}, nil
}

// ListAndWatch sends the full device list now and again after every change, until the kubelet
// hangs up or the server stops.
func (p *Plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	klog.V(2).InfoS("ListAndWatch started", "pool", p.name)
	for {
		s := p.state.Load()
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: s.list}); err != nil {
			return fmt.Errorf("pool %s: send device list: %w", p.name, err)
		}
		klog.V(4).InfoS("Sent device list", "pool", p.name, "devices", len(s.list))
		select {
		case <-s.changed:
		case <-stream.Context().Done():
			klog.V(2).InfoS("ListAndWatch ended", "pool", p.name)
			return nil
		}
	}
}

// Allocate answers, per container, what sriov-dp answers for the same devices (see allocate) and
// the CDI names of the devices the pool's CDI spec has. The recorder hears the allocation before
// the kubelet gets the answer (the daemon writes the device-information files then); if it fails,
// so does the Allocate.
func (p *Plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	s := p.state.Load()
	resp := &pluginapi.AllocateResponse{ContainerResponses: make([]*pluginapi.ContainerAllocateResponse, 0, len(req.ContainerRequests))}
	var handed []Device
	for _, c := range req.ContainerRequests {
		cr, devs, err := p.allocateContainer(s, c.DevicesIds)
		if err != nil {
			p.observer.Allocation(p.name, c.DevicesIds, err)
			return nil, err
		}
		resp.ContainerResponses = append(resp.ContainerResponses, cr)
		handed = append(handed, devs...)
	}
	ids := make([]string, len(handed))
	for i := range handed {
		ids[i] = handed[i].ID
	}
	if err := p.recorder.Allocated(s.res, handed); err != nil {
		err = status.Errorf(codes.Internal, "pool %s: recording the allocation of %s failed: %v", p.name, strings.Join(ids, ","), err)
		p.observer.Allocation(p.name, ids, err)
		return nil, err
	}
	klog.InfoS("Allocated devices", "pool", p.name, "devices", ids)
	p.observer.Allocation(p.name, ids, nil)
	return resp, nil
}

// allocateContainer answers one container, as sriov-dp does:
//   - PCIDEVICE_<PREFIX>_<NAME>: the PCI addresses, in request order (software links have none:
//     they are left out, and the variable is absent when no device has one);
//   - PCIDEVICE_<PREFIX>_<NAME>_INFO: per PCI address its info providers (generic, vfio, uio,
//     vhost, extra, rdma), as one JSON object with sorted keys, encoding/json's form;
//   - Devices: each device's nodes, once per host path, "rw".
func (p *Plugin) allocateContainer(s *snapshot, ids []string) (*pluginapi.ContainerAllocateResponse, []Device, error) {
	cr := &pluginapi.ContainerAllocateResponse{CdiDevices: make([]*pluginapi.CDIDevice, 0, len(ids))}
	devs := make([]Device, 0, len(ids))
	var addrs []string
	info := map[string]string{}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return nil, nil, status.Errorf(codes.InvalidArgument, "pool %s: device %q requested twice", p.name, id)
		}
		seen[id] = true
		e, ok := s.byID[id]
		if !ok {
			return nil, nil, status.Errorf(codes.InvalidArgument, "pool %s has no device %q", p.name, id)
		}
		if !e.healthy || (e.Gone && e.PCIAddress == "") {
			problem := e.problem
			if e.healthy {
				problem = "in use by another pod (not on the host)"
			}
			return nil, nil, status.Errorf(codes.FailedPrecondition, "device %q of pool %s is unhealthy: %s", id, p.name, problem)
		}
		devs = append(devs, e.Device)
		if e.CDI {
			cr.CdiDevices = append(cr.CdiDevices, &pluginapi.CDIDevice{Name: e.cdiName})
		}
		if e.PCIAddress != "" {
			addrs = append(addrs, e.PCIAddress)
			info[e.ID] = e.Info
		}
		for _, n := range e.Nodes {
			if !slices.ContainsFunc(cr.Devices, func(d *pluginapi.DeviceSpec) bool { return d.HostPath == n.HostPath }) {
				cr.Devices = append(cr.Devices, &pluginapi.DeviceSpec{HostPath: n.HostPath, ContainerPath: n.Path, Permissions: devicePermisson})
			}
		}
	}
	if len(addrs) > 0 {
		cr.Envs = map[string]string{s.res.EnvName(): strings.Join(addrs, ","), s.res.InfoEnvName(): infoJSON(info)}
	}
	return cr, devs, nil
}

// infoJSON joins the devices' info objects into the _INFO value: the JSON encoding/json gives the
// map, keys sorted, no spaces.
func infoJSON(byID map[string]string) string {
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	b.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(id) // a string always encodes
		b.Write(key)
		b.WriteByte(':')
		if byID[id] == "" {
			b.WriteString("{}")
		} else {
			b.WriteString(byID[id])
		}
	}
	b.WriteByte('}')
	return b.String()
}

// GetPreferredAllocation picks, per container, the devices the kubelet should allocate: the
// must-include ones, then devices of one NUMA node, packed on the fewest PFs, lowest IDs first. The
// available devices are what the kubelet considers free: the recorder hears them. A request the
// kubelet could never satisfy (must-include devices the pool lacks, or more of them than the size)
// is refused, naming them.
func (p *Plugin) GetPreferredAllocation(_ context.Context, req *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	resp := &pluginapi.PreferredAllocationResponse{ContainerResponses: make([]*pluginapi.ContainerPreferredAllocationResponse, 0, len(req.ContainerRequests))}
	for _, c := range req.ContainerRequests {
		p.recorder.Offered(p.name, c.AvailableDeviceIDs)
		s := p.state.Load()
		if len(c.MustIncludeDeviceIDs) > int(c.AllocationSize) {
			return nil, status.Errorf(codes.InvalidArgument, "pool %s: %d must-include devices for an allocation of %d", p.name, len(c.MustIncludeDeviceIDs), c.AllocationSize)
		}
		for _, id := range c.MustIncludeDeviceIDs {
			if _, ok := s.byID[id]; !ok {
				return nil, status.Errorf(codes.InvalidArgument, "pool %s has no device %q (must-include)", p.name, id)
			}
		}
		ids := prefer(s.byID, c.AvailableDeviceIDs, c.MustIncludeDeviceIDs, int(c.AllocationSize))
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

// PreStartContainer is not required (not advertised); it succeeds for old kubelets that call it.
func (p *Plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// GetInfo answers the kubelet's plugin watcher: a device plugin for this resource on this socket.
func (p *Plugin) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.DevicePlugin,
		Name:              p.name,
		Endpoint:          p.endpoint,
		SupportedVersions: []string{pluginapi.Version},
	}, nil
}

// NotifyRegistrationStatus hears the plugin watcher's verdict; a refusal makes the manager serve
// a fresh socket after a backoff, which the watcher picks up again.
func (p *Plugin) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.PluginRegistered {
		klog.InfoS("Registered with the kubelet's plugin watcher", "pool", p.name, "socket", p.endpoint)
		p.observer.Registration(p.name, nil)
		return &registerapi.RegistrationStatusResponse{}, nil
	}
	err := fmt.Errorf("pool %s: kubelet plugin watcher refused socket %s: %s", p.name, p.endpoint, st.Error)
	klog.ErrorS(err, "Registration failed")
	p.observer.Registration(p.name, err)
	select {
	case p.regFailed <- st.Error:
	default:
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
