package server

import (
	"slices"
	"strings"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

// Device is one device of a pool as its server offers it: what ListAndWatch, Allocate and
// GetPreferredAllocation need, decided at scan time so that no call of the kubelet reads sysfs.
type Device struct {
	ID           string // PCI address or software link name; the kubelet's device ID
	Problem      string // why the device is unhealthy ("carrier down", ...); "" = healthy
	Gone         bool   // not on the host now; see Plugin.Update for what that means per kind
	NUMANode     int    // -1 = none
	PCIAddress   string // "" for software links
	PFPCIAddress string // VFs: their PF, the unit GetPreferredAllocation packs on
	VFIODevice   string // vfio-pci: the group node, "/dev/vfio/12" or "/dev/vfio/noiommu-12"; else ""
	// Restored marks a software link the daemon's previous run pooled that has not been on the
	// host since this run started. The kubelet's allocations outlive the daemon, so it counts as
	// handed out, as if this run had allocated it: inside its pod and healthy until the kubelet
	// offers it as free while it is still away (then it is lost).
	Restored bool
}

// Reasons a device turns unhealthy in the server itself.
const (
	ProblemGone     = "gone from the host"
	ProblemLost     = "left with a pod and never came back"
	ProblemCDIName  = "ID is not a valid CDI device name"
	vfioControlPath = "/dev/vfio/vfio"
	vfioPermissions = "rw"
)

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

// markState is what a software link's allocation implies about its absence from the host.
type markState int

const (
	markAllocated markState = iota + 1 // handed out by Allocate; the hook moves it into the pod soon
	markInPod                          // handed out and now absent: inside its pod, so in use, not broken
	markLost                           // the kubelet thinks it is free but it is still absent: gone for good
)

// build derives a snapshot from the pool's devices and the allocation marks. It prunes marks of
// devices the pool no longer has, and moves marks as presence changes (see Plugin.Update).
func build(res config.Resource, devs []Device, marks map[string]markState) *snapshot {
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
		e.healthy, e.problem = health(d, e.cdiName, marks)
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
	for id := range marks {
		if _, ok := s.byID[id]; !ok {
			delete(marks, id)
		}
	}
	return s
}

// health decides a device's health and updates its mark. A PCI function that is gone is gone (its
// function left sysfs); a software link that is gone after Allocate handed it out is inside its
// pod, so it stays healthy (in use) until the kubelet offers it as free while it is still away. A
// link that comes home keeps its allocation mark: a restarted container takes it again.
func health(d Device, cdiName string, marks map[string]markState) (bool, string) {
	if cdiName == "" {
		return false, ProblemCDIName
	}
	m, marked := marks[d.ID]
	if d.PCIAddress != "" {
		delete(marks, d.ID) // marks only explain absences of software links
		marked = false
	} else if !marked && d.Restored {
		m, marked = markAllocated, true
	}
	switch {
	case d.Gone && marked && m == markLost:
		return false, ProblemLost
	case d.Gone && marked:
		marks[d.ID] = markInPod
		return true, ""
	case d.Gone:
		return false, ProblemGone
	case marked && m != markAllocated:
		// Home again, but maybe only for a container restart (poststop detach, then createRuntime
		// attach into the same pod): it stays allocated until the kubelet offers it as free.
		marks[d.ID] = markAllocated
	}
	if d.Problem != "" {
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
