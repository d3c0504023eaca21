package pool_test

import (
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

func TestMatch(t *testing.T) {
	e810 := pciPF("0000:3b:00.0", "8086", "1592", "ice", "ens1f0", 8)
	iavf := pciVF("0000:3b:01.2", "0000:3b:00.0", "ens1f0", 2, "8086", "1889", "iavf", "ens1f0v2")
	vfio := pciVF("0000:3b:01.5", "0000:3b:00.0", "ens1f0", 5, "8086", "1889", "vfio-pci", "")
	orphanVF := pciVF("0000:3b:01.6", "0000:3b:00.0", "", 6, "8086", "1889", "iavf", "ens1f0v6") // PF netdev gone
	cx3 := with(pciPF("0000:04:00.0", "15b3", "1007", "mlx4_core", "ens2", 0), func(d *device.Device) {
		d.IfNames = []string{"ens2", "ens2d1"} // ConnectX-3: two ports, one function
	})
	ib := with(pciVF("0000:d9:00.2", "0000:d9:00.0", "ibp217s0f0", 0, "15b3", "101c", "mlx5_core", "ibp217s0f0v0"),
		func(d *device.Device) { d.LinkType = "infiniband" })
	veth := soft("dummy0", "veth")
	dummy := soft("dummy1", "dummy")
	softWithDriver := with(soft("dummy2", "veth"), func(d *device.Device) { d.Driver = "veth" })

	tests := []struct {
		name string
		sel  config.Selector
		dev  device.Device
		want bool
	}{
		{"vendor hit", config.Selector{Vendors: []string{"15b3", "8086"}}, iavf, true},
		{"vendor miss", config.Selector{Vendors: []string{"15b3"}}, iavf, false},
		{"device hit", config.Selector{Devices: []string{"1889"}}, iavf, true},
		{"device miss", config.Selector{Devices: []string{"154c"}}, iavf, false},
		{"driver hit", config.Selector{Drivers: []string{"ixgbevf", "iavf"}}, iavf, true},
		{"driver miss", config.Selector{Drivers: []string{"vfio-pci"}}, iavf, false},
		{"vfio driver", config.Selector{Drivers: []string{"vfio-pci"}}, vfio, true},
		{"pci address hit", config.Selector{PCIAddresses: []string{"0000:3b:01.2"}}, iavf, true},
		{"pci address miss", config.Selector{PCIAddresses: []string{"0000:3b:01.3"}}, iavf, false},
		{"pfName all VFs", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0"}}}, iavf, true},
		{"pfName in range", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0", VFs: []config.IndexRange{vfs(0, 3)}}}}, iavf, true},
		{"pfName out of range", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0", VFs: []config.IndexRange{vfs(0, 1), vfs(3, 7)}}}}, iavf, false},
		{"pfName other PF", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f1"}}}, iavf, false},
		{"pfName is not a prefix match", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f"}}}, iavf, false},
		{"pfName never matches the PF itself", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0"}}}, e810, false},
		{"pfName on a VF whose PF has no netdev", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0"}}}, orphanVF, false},
		{"pfName on a vfio VF", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0", VFs: []config.IndexRange{vfs(5, 5)}}}}, vfio, true},
		{"rootDevice hit", config.Selector{RootDevices: []config.PFSelector{{PF: "0000:3b:00.0", VFs: []config.IndexRange{vfs(2, 2)}}}}, iavf, true},
		{"rootDevice out of range", config.Selector{RootDevices: []config.PFSelector{{PF: "0000:3b:00.0", VFs: []config.IndexRange{vfs(3, 9)}}}}, iavf, false},
		{"rootDevice of a VF without PF netdev", config.Selector{RootDevices: []config.PFSelector{{PF: "0000:3b:00.0"}}}, orphanVF, true},
		{"rootDevice never matches the PF itself", config.Selector{RootDevices: []config.PFSelector{{PF: "0000:3b:00.0"}}}, e810, false},
		{"linkType hit", config.Selector{LinkTypes: []string{"ether"}}, iavf, true},
		{"linkType exact, as sriov-dp", config.Selector{LinkTypes: []string{"InfiniBand"}}, ib, false},
		{"linkType infiniband", config.Selector{LinkTypes: []string{"infiniband"}}, ib, true},
		{"linkType miss", config.Selector{LinkTypes: []string{"infiniband"}}, iavf, false},
		{"linkType of a VF without netdev is its PF's", config.Selector{LinkTypes: []string{"ether"}}, with(vfio, func(d *device.Device) { d.PFLinkType = "ether" }), true},
		{"linkType of a VF without netdev nor PF link type", config.Selector{LinkTypes: []string{"ether"}}, vfio, false},
		{"linkType of a PF without netdev", config.Selector{LinkTypes: []string{"ether"}}, with(e810, func(d *device.Device) { d.IfName, d.IfNames, d.PFLinkType = "", nil, "ether" }), false},
		{"pfName compared ignoring case, as sriov-dp", config.Selector{PFNames: []config.PFSelector{{PF: "ENS1F0"}}}, iavf, true},
		{"pfName: only the first entry of a PF counts", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0", VFs: []config.IndexRange{{First: 0, Last: 1}}}, {PF: "ens1f0", VFs: []config.IndexRange{{First: 2, Last: 2}}}}}, iavf, false},
		{"pfName with a bad range selects nothing", config.Selector{PFNames: []config.PFSelector{{PF: "ens1f0", Invalid: true, Raw: "ens1f0#3-1"}}}, iavf, false},
		{"rootDevice compared ignoring case", config.Selector{RootDevices: []config.PFSelector{{PF: "0000:3B:00.0"}}}, iavf, true},
		{"acpiIndex hit", config.Selector{ACPIIndexes: []string{"3"}}, with(iavf, func(d *device.Device) { d.ACPIIndex = "3" }), true},
		{"acpiIndex miss", config.Selector{ACPIIndexes: []string{"3"}}, iavf, false},
		{"pKey hit", config.Selector{PKeys: []string{"0x7fff"}}, with(ib, func(d *device.Device) { d.PKey = "0x7fff" }), true},
		{"pKey miss", config.Selector{PKeys: []string{"0x7fff"}}, ib, false},
		{"template value matches nothing", config.Selector{Vendors: []string{"$VENDOR_ID"}}, iavf, false},
		{"ifName glob", config.Selector{IfNames: []string{"ens1f0v*"}}, iavf, true},
		{"ifName exact", config.Selector{IfNames: []string{"ens1f0v2"}}, iavf, true},
		{"ifName miss", config.Selector{IfNames: []string{"ens1f0v1?"}}, iavf, false},
		{"ifName second netdev", config.Selector{IfNames: []string{"ens2d1"}}, cx3, true},
		{"ifName needs a netdev", config.Selector{IfNames: []string{"*"}}, vfio, false},
		{"ifName on a software link", config.Selector{IfNames: []string{"dummy*"}}, veth, true},
		{"ifName character class", config.Selector{IfNames: []string{"dummy[1-3]"}}, veth, false},
		{"linkKind hit", config.Selector{LinkKinds: []string{"dummy", "veth"}}, veth, true},
		{"linkKind miss", config.Selector{LinkKinds: []string{"dummy"}}, veth, false},
		{"linkKind never matches PCI", config.Selector{LinkKinds: []string{""}}, iavf, false},
		{"software link and vendors", config.Selector{Vendors: []string{"8086"}, IfNames: []string{"dummy*"}}, veth, false},
		{"software link and drivers", config.Selector{Drivers: []string{"veth"}}, softWithDriver, false},
		{"software link and pciAddresses", config.Selector{PCIAddresses: []string{"0000:3b:01.2"}, IfNames: []string{"*"}}, dummy, false},
		{"software link and pfNames", config.Selector{PFNames: []config.PFSelector{{PF: "dummy1"}}}, dummy, false},
		{"software link and linkTypes", config.Selector{LinkTypes: []string{"ether"}, IfNames: []string{"dummy*"}}, dummy, true},
		// sriov-dp's {"linkTypes": ["ether"]} means PCI netdevs: not the node's bridges and veths.
		{"software link, linkTypes alone", config.Selector{LinkTypes: []string{"ether"}}, veth, false},
		{"software link, linkTypes alone, dummy", config.Selector{LinkTypes: []string{"ether"}}, dummy, false},
		{"PCI netdev, linkTypes alone", config.Selector{LinkTypes: []string{"ether"}}, iavf, true},
		{"AND all hit", config.Selector{Vendors: []string{"8086"}, Devices: []string{"1889"}, Drivers: []string{"iavf"},
			PFNames: []config.PFSelector{{PF: "ens1f0"}}, LinkTypes: []string{"ether"}, IfNames: []string{"ens1f0v*"}}, iavf, true},
		{"AND one miss", config.Selector{Vendors: []string{"8086"}, Devices: []string{"1889"}, Drivers: []string{"vfio-pci"}}, iavf, false},
		{"empty selector matches nothing", config.Selector{}, iavf, false},
		{"empty selector, software link", config.Selector{}, veth, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pool.Match(&tt.sel, &tt.dev); got != tt.want {
				t.Errorf("Match(%+v, %s) = %v, want %v", tt.sel, tt.dev.ID, got, tt.want)
			}
		})
	}
}
