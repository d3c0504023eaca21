package pool_test

import (
	"fmt"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// The devices below mirror what discovery reports for real hardware: IDs are PCI addresses for PCI
// functions and host names for software links; absent numbers are -1.

// pciPF is a PF with its uplink netdev; numVFs > 0 means SR-IOV is enabled.
func pciPF(addr, vendor, dev, driver, ifName string, numVFs int) device.Device {
	d := device.New()
	d.ID, d.PCIAddress, d.Vendor, d.Device, d.Driver = addr, addr, vendor, dev, driver
	d.Class, d.LinkType, d.SriovTotalVFs, d.SriovNumVFs = "0x020000", "ether", 64, numVFs
	if ifName != "" {
		d.IfName, d.IfNames = ifName, []string{ifName}
	}
	return d
}

// pciVF is a VF of the PF at pfAddr (netdev pfName); ifName "" for a VF without netdev (vfio-pci).
func pciVF(addr, pfAddr, pfName string, index int, vendor, dev, driver, ifName string) device.Device {
	d := device.New()
	d.ID, d.PCIAddress, d.PFPCIAddress, d.PFName, d.VFIndex = addr, addr, pfAddr, pfName, index
	d.Vendor, d.Device, d.Driver, d.Class = vendor, dev, driver, "0x020000"
	if ifName != "" {
		d.IfName, d.IfNames, d.LinkType = ifName, []string{ifName}, "ether"
	}
	return d
}

// soft is a software link of the given netlink kind.
func soft(name, kind string) device.Device {
	d := device.New()
	d.ID, d.IfName, d.IfNames, d.Kind, d.LinkType = name, name, []string{name}, kind, "ether"
	return d
}

func with(d device.Device, f func(*device.Device)) device.Device {
	f(&d)
	return d
}

// vfAddr gives the PCI address of VF i of a PF on bus: 8 functions per device slot, from slot 1.
func vfAddr(bus, i int) string {
	return fmt.Sprintf("0000:%02x:%02x.%d", bus, 1+i/8, i%8)
}

func vfs(first, last int) config.IndexRange { return config.IndexRange{First: first, Last: last} }
