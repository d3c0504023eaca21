package pool

import (
	"path"
	"slices"
	"strings"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// Match reports whether a device matches one selector object: every set field must match (AND),
// and within a field any listed value may (OR). Fields read the device as sriov-dp does where they
// overlap:
//   - vendors, devices, drivers, pciAddresses: d.Vendor, d.Device, d.Driver, d.PCIAddress;
//   - pfNames: a VF whose PF's netdev is the name and whose index is in the range; rootDevices: the
//     same on the PF's PCI address;
//   - pfNames and rootDevices: see matchPF;
//   - linkTypes (exact): the netdev's link type, or for a VF without one its PF's (as sriov-dp
//     falls back); ifNames (globs on any host netdev name) needs a netdev, so a vfio-pci VF never
//     matches it;
//   - acpiIndexes, pKeys: the function's acpi_index and port 1's default partition key;
//   - isRdma: only functions with an RDMA device (sriov-dp's rdmamap test);
//   - linkKinds: the netlink kind of a software link.
//
// A software link matches only a selector that names it (ifNames or linkKinds) and sets no PCI-only
// field: an sriov-dp selector such as {"linkTypes": ["ether"]} means PCI netdevs there, and must not
// take the node's bridges and pod veths here. An empty selector matches nothing (config.Parse
// rejects it; a hand-built one must not select the whole node).
func Match(sel *config.Selector, d *device.Device) bool {
	if sel.Empty() {
		return false
	}
	if !d.IsPCI() && (len(sel.IfNames) == 0 && len(sel.LinkKinds) == 0 || len(sel.PCIOnly()) > 0) {
		return false
	}
	return matchList(sel.Vendors, d.Vendor) &&
		matchList(sel.Devices, d.Device) &&
		matchList(sel.Drivers, d.Driver) &&
		matchList(sel.PCIAddresses, d.PCIAddress) &&
		matchList(sel.ACPIIndexes, d.ACPIIndex) &&
		matchPF(sel.PFNames, d, d.PFName) &&
		matchPF(sel.RootDevices, d, d.PFPCIAddress) &&
		matchLinkType(sel.LinkTypes, d) &&
		matchList(sel.PKeys, d.PKey) &&
		(!sel.IsRdma || len(d.RDMADevices) > 0) &&
		matchIfNames(sel.IfNames, d) &&
		matchList(sel.LinkKinds, d.Kind)
}

// matchList: an unset field matches; a set one needs the (non-empty) value listed.
func matchList(list []string, v string) bool {
	return len(list) == 0 || v != "" && slices.Contains(list, v)
}

// matchPF matches VFs of a PF named by pf (the PF's netdev name or PCI address) as sriov-dp does:
// the PF part compares ignoring case, and only the first entry that names the PF decides (a later
// "ens1#4" after "ens1#0-1" adds nothing).
func matchPF(sels []config.PFSelector, d *device.Device, pf string) bool {
	if len(sels) == 0 {
		return true
	}
	if !d.IsVF() || pf == "" {
		return false
	}
	for _, s := range sels {
		if strings.EqualFold(s.PF, pf) {
			return s.HasVF(d.VFIndex)
		}
	}
	return false
}

// matchLinkType compares the netdev's link type; a VF without a netdev (bound to vfio-pci or a uio
// driver, or its netdev inside a pod) has its PF's, as sriov-dp reads it.
func matchLinkType(types []string, d *device.Device) bool {
	if len(types) == 0 {
		return true
	}
	lt := d.LinkType
	if !hasNetdev(d) {
		lt = ""
		if d.IsVF() {
			lt = d.PFLinkType
		}
	}
	return lt != "" && slices.Contains(types, lt) // exact, as sriov-dp compares
}

func matchIfNames(patterns []string, d *device.Device) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, name := range netdevNames(d) {
		for _, p := range patterns {
			if ok, _ := path.Match(p, name); ok { // patterns were checked by config.Parse
				return true
			}
		}
	}
	return false
}

func hasNetdev(d *device.Device) bool { return len(d.IfNames) > 0 || d.IfName != "" }

// netdevNames is every host netdev name of the device; IfNames may be unset for software links.
func netdevNames(d *device.Device) []string {
	if len(d.IfNames) > 0 {
		return d.IfNames
	}
	if d.IfName != "" {
		return []string{d.IfName}
	}
	return nil
}
