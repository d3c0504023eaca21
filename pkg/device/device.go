// Package device holds the one type every other package speaks: a network device found on the node.
//
// A Device is either a PCI network function (a PF or an SR-IOV VF, with or without a netdev) or a
// software link (dummy, veth, ifb, macvlan, ...). Its ID is stable: the PCI address for PCI
// functions, the host interface name for software links. Names change and a VF inside a pod has no
// netdev on the host, so nothing keys a PCI device by interface name.
package device

import (
	"slices"
	"strconv"
	"strings"
)

// Reasons a device is never offered to any pool. They are the words `discover` prints.
const (
	ReasonLoopback     = "loopback"
	ReasonDefaultRoute = "default route"
	ReasonRepresentor  = "switchdev representor"
	ReasonPFWithVFs    = "PF with VFs enabled"
	ReasonNoDriver     = "no driver bound"
	ReasonUppers       = "upper devices" // followed by their names; see pool.Assign
	ReasonNoSelector   = "no selector matched"
)

// Carrier values of a netdev.
const (
	CarrierUp      = "up"
	CarrierDown    = "down"
	CarrierUnknown = ""
)

// Drivers that bind a function for userspace (DPDK) use: the function has no netdev, and pods get
// its device nodes instead (/dev/vfio/..., /dev/uioN).
const (
	VFIODriver          = "vfio-pci"
	IGBUIODriver        = "igb_uio"
	UIOPCIGenericDriver = "uio_pci_generic"
	UIODriver           = "uio" // what sriov-dp also counts as a uio driver
)

// Device nodes every pool may hand out besides a function's own.
const (
	VFIOContainerNode = "/dev/vfio/vfio"
	VhostNetNode      = "/dev/vhost-net"
	TunNode           = "/dev/net/tun"
	RDMACMNode        = "/dev/infiniband/rdma_cm"
)

// Device is one network device of the node. The JSON form is the `discover -o json` DEVICE object:
// absent strings are "", absent numbers -1.
type Device struct {
	ID           string `json:"id"`
	PCIAddress   string `json:"pciAddress"`
	IfName       string `json:"ifName"`
	Kind         string `json:"kind"`       // netlink kind of a software link (veth, dummy, ...); "" for PCI functions
	Vendor       string `json:"vendor"`     // 4 lower-case hex digits, no 0x: "8086"
	Device       string `json:"device"`     // 4 lower-case hex digits, no 0x: "1889"
	VendorName   string `json:"vendorName"` // from pci.ids; "" when unknown or no pci.ids
	DeviceName   string `json:"deviceName"`
	Driver       string `json:"driver"`       // "" when unbound
	PFPCIAddress string `json:"pfPciAddress"` // VFs only
	PFName       string `json:"pfName"`       // VFs only: the PF's uplink netdev
	VFIndex      int    `json:"vfIndex"`      // VFs only, else -1
	NUMANode     int    `json:"numaNode"`     // -1 = none
	IOMMUGroup   int    `json:"iommuGroup"`   // -1 = none
	UIODevice    string `json:"uioDevice"`    // uio-bound functions: "/dev/uio0", from <function>/uio/
	// RDMA: the function's RDMA (verbs) devices on the host ("mlx5_2"), and their character
	// devices (/dev/infiniband/issmN, umadN, uverbsN); empty without RDMA, or while the device is
	// in a pod's namespace (exclusive mode).
	RDMADevices     []string `json:"rdmaDevices"`
	RDMACharDevices []string `json:"rdmaCharDevices"`
	LinkType        string   `json:"linkType"` // "ether", "infiniband", ... as sriov-dp's linkTypes
	OperState       string   `json:"operState"`
	MAC             string   `json:"mac"`
	MTU             int      `json:"mtu"`

	// Facts used by pools, health and the hook, not printed.
	IfNames       []string `json:"-"` // every host netdev of the function (ConnectX-3 has two); IfName is IfNames[0]
	Class         string   `json:"-"` // PCI class, "0x020000"
	Carrier       string   `json:"-"` // CarrierUp, CarrierDown or CarrierUnknown
	SriovTotalVFs int      `json:"-"` // PFs: sriov_totalvfs, else 0
	SriovNumVFs   int      `json:"-"` // PFs: sriov_numvfs (VFs enabled), else 0
	ACPIIndex     string   `json:"-"` // the acpi_index attribute (firmware's slot index), "" without one
	PKey          string   `json:"-"` // InfiniBand functions: port 1's default partition key ("0x7fff")
	PFLinkType    string   `json:"-"` // VFs: the link type of the PF's netdev, which a VF without one is selected by
	VFIONoIOMMU   bool     `json:"-"` // vfio-pci in a no-IOMMU group (kernel/iommu_groups/<g>/name is vfio-noiommu)
	Representor   bool     `json:"-"` // a switchdev VF/SF representor netdev
	Loopback      bool     `json:"-"`
	DefaultRoute  bool     `json:"-"` // one of its netdevs holds the node's IPv4 or IPv6 default route
	// Uppers are the links bound to one of its netdevs (a vlan, macvlan or vxlan on it, its bridge
	// or bond master): moving the netdev away deletes or detaches them.
	Uppers []string `json:"-"`

	// RDMACM: the host has /dev/infiniband/rdma_cm, which every RDMA pod gets with its own devices.
	RDMACM bool `json:"-"`
	// RDMAAway: the RDMA devices are not on the host now (inside a pod, in exclusive mode); the
	// names are the last the host showed.
	RDMAAway bool `json:"-"`

	// Set by pool.Assign from the selector that placed the device.
	VhostNet bool `json:"-"` // needVhostNet: the pod also gets /dev/vhost-net and /dev/net/tun
	RDMA     bool `json:"-"` // isRdma: the pod also gets the RDMA character devices
}

// New returns a Device with every numeric field at its "absent" value (-1).
func New() Device {
	return Device{VFIndex: -1, NUMANode: -1, IOMMUGroup: -1, MTU: -1}
}

// IsPCI reports whether the device is a PCI function (as opposed to a software link).
func (d *Device) IsPCI() bool { return d.PCIAddress != "" }

// IsVF reports whether the device is an SR-IOV virtual function.
func (d *Device) IsVF() bool { return d.PFPCIAddress != "" }

// IsVFIO reports whether the device is bound to vfio-pci (handed to pods as /dev/vfio nodes).
func (d *Device) IsVFIO() bool { return d.Driver == VFIODriver }

// IsUIO reports whether the device is bound to a uio driver (handed to pods as /dev/uioN).
func (d *Device) IsUIO() bool {
	switch d.Driver {
	case IGBUIODriver, UIOPCIGenericDriver, UIODriver:
		return true
	}
	return false
}

// IsUserspace reports whether the device is bound for userspace use: it gets device nodes, never a
// netdev move.
func (d *Device) IsUserspace() bool { return d.IsVFIO() || d.IsUIO() }

// VFIOGroupNode is the host device node of a vfio-pci function's IOMMU group: /dev/vfio/<group>,
// or /dev/vfio/noiommu-<group> for a no-IOMMU group; "" when the function has no group.
func (d *Device) VFIOGroupNode() string {
	if d.IOMMUGroup < 0 {
		return ""
	}
	if d.VFIONoIOMMU {
		return "/dev/vfio/noiommu-" + strconv.Itoa(d.IOMMUGroup)
	}
	return d.VFIOContainerGroupNode()
}

// VFIOContainerGroupNode is where the group node appears in the container: /dev/vfio/<group>, for a
// no-IOMMU group too (sriov-dp maps noiommu-<group> there, and DPDK opens /dev/vfio/<group> first).
func (d *Device) VFIOContainerGroupNode() string {
	if d.IOMMUGroup < 0 {
		return ""
	}
	return "/dev/vfio/" + strconv.Itoa(d.IOMMUGroup)
}

// Node is a device node a container gets: HostPath on the host, Path inside.
type Node struct{ HostPath, Path string }

// Nodes lists the device nodes the device brings to a container, in sriov-dp's order: its vfio
// nodes (the container node, then the group's) or its uio node, then its RDMA character devices and
// rdma_cm when its selector set isRdma, then vhost-net and tun when it set needVhostNet. A vfio
// function without a group, or a uio one without a node, has none of its own (its health says
// so). Host paths are under devRoot, which stands for /dev ("" is /dev: a test's stand-in nodes
// live elsewhere); container paths are always under /dev.
func (d *Device) Nodes(devRoot string) []Node {
	var out []Node
	add := func(host, path string) { out = append(out, Node{HostPath: hostNode(devRoot, host), Path: path}) }
	switch {
	case d.IsVFIO() && d.IOMMUGroup >= 0:
		add(VFIOContainerNode, VFIOContainerNode)
		add(d.VFIOGroupNode(), d.VFIOContainerGroupNode())
	case d.IsUIO() && d.UIODevice != "":
		add(d.UIODevice, d.UIODevice)
	}
	if d.RDMA {
		for _, c := range d.RDMACharDevices {
			add(c, c)
		}
		if d.RDMACM && len(d.RDMACharDevices) > 0 {
			add(RDMACMNode, RDMACMNode)
		}
	}
	if d.VhostNet {
		add(VhostNetNode, VhostNetNode)
		add(TunNode, TunNode)
	}
	return out
}

// hostNode is a /dev path under devRoot.
func hostNode(devRoot, path string) string {
	if devRoot == "" || devRoot == "/dev" {
		return path
	}
	return devRoot + strings.TrimPrefix(path, "/dev")
}

// HasVFsEnabled reports whether the device is a PF with SR-IOV VFs enabled.
func (d *Device) HasVFsEnabled() bool { return d.SriovNumVFs > 0 }

// ExclusionReason says why the device may never be offered to a pool, or "" if it may.
// Whether a PF with VFs may be offered depends on the config, so that rule lives in pkg/pool.
func (d *Device) ExclusionReason() string {
	switch {
	case d.Loopback:
		return ReasonLoopback
	case d.DefaultRoute:
		return ReasonDefaultRoute
	case d.Representor:
		return ReasonRepresentor
	case d.IsPCI() && d.Driver == "":
		return ReasonNoDriver // nothing can use it; sriov-dp does not list it either
	}
	return ""
}

// SortByID sorts devices by ID, the order every listing uses.
func SortByID(devs []Device) {
	slices.SortFunc(devs, func(a, b Device) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

// IsPCIAddress reports whether s is a full PCI address as sysfs names functions: "0000:3b:01.2".
func IsPCIAddress(s string) bool {
	// The kernel prints "%04x:%02x:%02x.%d": the domain may be longer than 4 digits (Intel VMD
	// domains are 10000 and up); bus, device and function are fixed width.
	n := len(s) - len("bb:dd.f")
	if n < 5 || n > 9 || s[n-1] != ':' || s[n+2] != ':' || s[n+5] != '.' {
		return false
	}
	for i, c := range s {
		if i == n-1 || i == n+2 || i == n+5 {
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s[n+6] <= '7' && s[n+3] <= '1'
}
