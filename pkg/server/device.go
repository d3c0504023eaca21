package server

import (
	"slices"
	"strings"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// Device is one device of a pool as its server offers it: what ListAndWatch, Allocate and
// GetPreferredAllocation need, decided at scan time so that no call of the kubelet reads sysfs.
type Device struct {
	ID           string // PCI address or software link name; the kubelet's device ID
	Problem      string // why the device is unhealthy ("carrier down", ...); "" = healthy
	Gone         bool   // not on the host now
	InUse        bool   // the kubelet holds it (the daemon's allocation ledger)
	NUMANode     int    // -1 = none
	PCIAddress   string // "" for software links
	PFPCIAddress string // VFs: their PF, the unit GetPreferredAllocation packs on
	// CDI says the pool's CDI spec has the device (a hook or device nodes), so Allocate names it;
	// a device the CNI moves and that brings no device node has nothing there.
	CDI bool
	// Nodes are the device nodes a container gets (Allocate's DeviceSpecs), in sriov-dp's order.
	Nodes []device.Node
	// Info is the device's entry of PCIDEVICE_<...>_INFO: a JSON object of sriov-dp's info
	// providers ("generic", "vfio", ...); "" for software links.
	Info string
	// RDMADevices are its RDMA devices, for the device-information file.
	RDMADevices []string
}

// Reasons a device turns unhealthy in the server itself.
const (
	ProblemGone     = "gone from the host"
	ProblemCDIName  = "ID is not a valid CDI device name"
	devicePermisson = "rw" // sriov-dp's permission for every device node since v3.6.0
)

func (d *Device) equal(o *Device) bool {
	return d.ID == o.ID && d.Problem == o.Problem && d.Gone == o.Gone && d.InUse == o.InUse &&
		d.NUMANode == o.NUMANode && d.PCIAddress == o.PCIAddress && d.PFPCIAddress == o.PFPCIAddress &&
		d.CDI == o.CDI && slices.Equal(d.Nodes, o.Nodes) && d.Info == o.Info && slices.Equal(d.RDMADevices, o.RDMADevices)
}

// entry is a device with its derived, immutable facts.
type entry struct {
	Device
	healthy bool
	problem string // effective reason when unhealthy
	cdiName string // "" when the ID cannot be a CDI name
	rank    int    // position in ID order (0..len-1), for cheap deterministic sorting and sets
}

// snapshot is one immutable state of a pool: what ListAndWatch sends and Allocate reads, swapped
// whole on every change so the kubelet's calls never take a lock.
type snapshot struct {
	res     config.Resource
	list    []*pluginapi.Device // sorted by ID
	byID    map[string]*entry
	changed chan struct{} // closed when a newer snapshot replaces this one
}

// build derives a snapshot from the pool's devices.
func build(res config.Resource, devs []Device) *snapshot {
	sorted := slices.Clone(devs)
	slices.SortFunc(sorted, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	s := &snapshot{
		res:     res,
		list:    make([]*pluginapi.Device, 0, len(sorted)),
		byID:    make(map[string]*entry, len(sorted)),
		changed: make(chan struct{}),
	}
	for _, d := range sorted {
		if _, dup := s.byID[d.ID]; dup {
			continue
		}
		e := &entry{Device: d, rank: len(s.list)}
		if name, err := cdi.QualifiedName(&res, d.ID); err == nil {
			e.cdiName = name
		}
		e.healthy, e.problem = health(&d, e.cdiName)
		s.byID[d.ID] = e
		pd := &pluginapi.Device{ID: d.ID, Health: pluginapi.Healthy}
		if !e.healthy {
			pd.Health = pluginapi.Unhealthy
		}
		if d.NUMANode >= 0 && !res.ExcludeTopology {
			pd.Topology = &pluginapi.TopologyInfo{Nodes: []*pluginapi.NUMANode{{ID: int64(d.NUMANode)}}}
		}
		s.list = append(s.list, pd)
	}
	return s
}

// health decides a device's health. A software link that is gone while the kubelet holds it is
// inside its pod: in use, healthy. A PCI function that left sysfs is gone, held or not (its VF was
// destroyed); the daemon keeps it listed only while the kubelet holds it.
func health(d *Device, cdiName string) (bool, string) {
	switch {
	case cdiName == "":
		return false, ProblemCDIName
	case d.Gone && d.InUse && d.PCIAddress == "":
		return true, ""
	case d.Gone:
		return false, ProblemGone
	case d.Problem != "":
		return false, d.Problem
	}
	return true, ""
}

// sameList reports whether two ListAndWatch lists are equal (ID, health, topology), so unchanged
// scans send nothing.
func sameList(a, b []*pluginapi.Device) bool {
	return slices.EqualFunc(a, b, func(x, y *pluginapi.Device) bool {
		return x.ID == y.ID && x.Health == y.Health && numaOf(x) == numaOf(y)
	})
}

func numaOf(d *pluginapi.Device) int64 {
	if d.Topology == nil || len(d.Topology.Nodes) == 0 {
		return -1
	}
	return d.Topology.Nodes[0].ID
}
