package pci

import "github.com/netdevice-plugin/netdevice-plugin/pkg/device"

// Names as testdata/pci.ids spells them.
const (
	intel     = "Intel Corporation"
	mellanox  = "Mellanox Technologies"
	redHat    = "Red Hat, Inc."
	e810XXV   = "Ethernet Controller E810-XXV for SFP"
	iavfVF    = "Ethernet Adaptive Virtual Function"
	cx6dx     = "MT2892 Family [ConnectX-6 Dx]"
	mlx5VF    = "ConnectX Family mlx5Gen Virtual Function"
	cx6       = "MT28908 Family [ConnectX-6]"
	cx3pro    = "MT27520 Family [ConnectX-3 Pro]"
	i350PF    = "I350 Gigabit Network Connection"
	i350VF    = "I350 Ethernet Controller Virtual Function"
	x710      = "Ethernet Controller X710 for 10GbE SFP+"
	virtioNet = "Virtio 1.0 network device"
	virtioOld = "Virtio network device"
)

const eth = "0x020000"

// wantFixtures is every device Scan must find in each committed fixture tree, sorted by ID, every
// field spelled out.
var wantFixtures = map[string][]device.Device{
	"e810": {
		{ID: "0000:3b:00.0", PCIAddress: "0000:3b:00.0", IfName: "ens1f0", IfNames: []string{"ens1f0"},
			Vendor: "8086", Device: "159b", VendorName: intel, DeviceName: e810XXV, Driver: "ice",
			VFIndex: -1, NUMANode: 0, IOMMUGroup: 31, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "b4:96:91:a5:c7:e0", MTU: 9000, Class: eth, SriovTotalVFs: 128, SriovNumVFs: 4},
		// Admin down: no carrier file, operstate down: carrier unknown (not broken, just not up).
		{ID: "0000:3b:00.1", PCIAddress: "0000:3b:00.1", IfName: "ens1f1", IfNames: []string{"ens1f1"},
			Vendor: "8086", Device: "159b", VendorName: intel, DeviceName: e810XXV, Driver: "ice",
			VFIndex: -1, NUMANode: 0, IOMMUGroup: 32, LinkType: "ether", OperState: "down", Carrier: device.CarrierUnknown,
			MAC: "b4:96:91:a5:c7:e1", MTU: 1500, Class: eth, SriovTotalVFs: 128, SriovNumVFs: 0},
		{ID: "0000:3b:01.0", PCIAddress: "0000:3b:01.0", IfName: "ens1f0v0", IfNames: []string{"ens1f0v0"},
			Vendor: "8086", Device: "1889", VendorName: intel, DeviceName: iavfVF, Driver: "iavf",
			PFPCIAddress: "0000:3b:00.0", PFName: "ens1f0", PFLinkType: "ether", VFIndex: 0, NUMANode: 0, IOMMUGroup: 150,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "3a:9e:81:0c:2b:10", MTU: 9000, Class: eth},
		{ID: "0000:3b:01.1", PCIAddress: "0000:3b:01.1", IfName: "ens1f0v1", IfNames: []string{"ens1f0v1"},
			Vendor: "8086", Device: "1889", VendorName: intel, DeviceName: iavfVF, Driver: "iavf",
			PFPCIAddress: "0000:3b:00.0", PFName: "ens1f0", PFLinkType: "ether", VFIndex: 1, NUMANode: 0, IOMMUGroup: 151,
			LinkType: "ether", OperState: "down", Carrier: device.CarrierDown, MAC: "5e:c1:07:dd:42:aa", MTU: 1500, Class: eth},
		// vfio-pci VFs: no netdev, an IOMMU group (153 is a vfio-noiommu group).
		{ID: "0000:3b:01.2", PCIAddress: "0000:3b:01.2", Vendor: "8086", Device: "1889", VendorName: intel,
			DeviceName: iavfVF, Driver: "vfio-pci", PFPCIAddress: "0000:3b:00.0", PFName: "ens1f0", PFLinkType: "ether", VFIndex: 2,
			NUMANode: 0, IOMMUGroup: 152, MTU: -1, Class: eth},
		{ID: "0000:3b:01.3", PCIAddress: "0000:3b:01.3", Vendor: "8086", Device: "1889", VendorName: intel,
			DeviceName: iavfVF, Driver: "vfio-pci", PFPCIAddress: "0000:3b:00.0", PFName: "ens1f0", PFLinkType: "ether", VFIndex: 3,
			NUMANode: 0, IOMMUGroup: 153, VFIONoIOMMU: true, MTU: -1, Class: eth},
	},
	"cx6dx-switchdev": {
		// PFName of the VFs is the uplink ens2f0np0, though a representor comes first in net/.
		{ID: "0000:86:00.0", PCIAddress: "0000:86:00.0", IfName: "ens2f0np0", IfNames: []string{"ens2f0np0"},
			Vendor: "15b3", Device: "101d", VendorName: mellanox, DeviceName: cx6dx, Driver: "mlx5_core",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: 60, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "b8:ce:f6:0b:7e:a0", MTU: 1500, Class: eth, SriovTotalVFs: 8, SriovNumVFs: 3},
		{ID: "0000:86:00.1", PCIAddress: "0000:86:00.1", IfName: "ens2f1np1", IfNames: []string{"ens2f1np1"},
			Vendor: "15b3", Device: "101d", VendorName: mellanox, DeviceName: cx6dx, Driver: "mlx5_core",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: 70, LinkType: "ether", OperState: "down", Carrier: device.CarrierDown,
			MAC: "b8:ce:f6:0b:7e:a1", MTU: 1500, Class: eth, SriovTotalVFs: 8},
		{ID: "0000:86:00.2", PCIAddress: "0000:86:00.2", IfName: "enp134s0f0v0", IfNames: []string{"enp134s0f0v0"},
			Vendor: "15b3", Device: "101e", VendorName: mellanox, DeviceName: mlx5VF, Driver: "mlx5_core",
			PFPCIAddress: "0000:86:00.0", PFName: "ens2f0np0", PFLinkType: "ether", VFIndex: 0, NUMANode: 1, IOMMUGroup: 61,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "3e:81:a7:15:60:10", MTU: 1500, Class: eth},
		{ID: "0000:86:00.3", PCIAddress: "0000:86:00.3", IfName: "enp134s0f0v1", IfNames: []string{"enp134s0f0v1"},
			Vendor: "15b3", Device: "101e", VendorName: mellanox, DeviceName: mlx5VF, Driver: "mlx5_core",
			PFPCIAddress: "0000:86:00.0", PFName: "ens2f0np0", PFLinkType: "ether", VFIndex: 1, NUMANode: 1, IOMMUGroup: 62,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "3e:81:a7:15:60:11", MTU: 1500, Class: eth},
		{ID: "0000:86:00.4", PCIAddress: "0000:86:00.4", IfName: "enp134s0f0v2", IfNames: []string{"enp134s0f0v2"},
			Vendor: "15b3", Device: "101e", VendorName: mellanox, DeviceName: mlx5VF, Driver: "mlx5_core",
			PFPCIAddress: "0000:86:00.0", PFName: "ens2f0np0", PFLinkType: "ether", VFIndex: 2, NUMANode: 1, IOMMUGroup: 63,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "3e:81:a7:15:60:12", MTU: 1500, Class: eth},
		// InfiniBand: class 0x0207, ARPHRD 32, 20-byte address.
		{ID: "0000:af:00.0", PCIAddress: "0000:af:00.0", IfName: "ibp175s0", IfNames: []string{"ibp175s0"},
			Vendor: "15b3", Device: "101b", VendorName: mellanox, DeviceName: cx6, Driver: "mlx5_core",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: 80, LinkType: "infiniband", OperState: "up", Carrier: device.CarrierUp,
			MAC: "00:00:10:87:fe:80:00:00:00:00:00:00:b8:59:9f:03:00:a1:b2:c3", MTU: 4092, Class: "0x020700"},
		// Representors: ID = ifname, the PF's address and identity, no IOMMU group of their own.
		{ID: "58609951635cbfa", PCIAddress: "0000:86:00.0", IfName: "58609951635cbfa", IfNames: []string{"58609951635cbfa"},
			Vendor: "15b3", Device: "101d", VendorName: mellanox, DeviceName: cx6dx, Driver: "mlx5_core",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: -1, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "d6:1c:85:3e:02:7b", MTU: 1500, Class: eth, Representor: true},
		{ID: "ens2f0npf0vf0", PCIAddress: "0000:86:00.0", IfName: "ens2f0npf0vf0", IfNames: []string{"ens2f0npf0vf0"},
			Vendor: "15b3", Device: "101d", VendorName: mellanox, DeviceName: cx6dx, Driver: "mlx5_core",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: -1, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "a2:5f:1e:90:33:01", MTU: 1500, Class: eth, Representor: true},
		{ID: "ens2f0npf0vf1", PCIAddress: "0000:86:00.0", IfName: "ens2f0npf0vf1", IfNames: []string{"ens2f0npf0vf1"},
			Vendor: "15b3", Device: "101d", VendorName: mellanox, DeviceName: cx6dx, Driver: "mlx5_core",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: -1, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "66:0e:d4:71:c9:5d", MTU: 1500, Class: eth, Representor: true},
	},
	"i350": {
		// VFs of the two PFs interleave: PF0 owns 10.0 and 10.4, PF1 owns 10.1 and 10.5.
		{ID: "0000:05:00.0", PCIAddress: "0000:05:00.0", IfName: "eno1", IfNames: []string{"eno1"},
			Vendor: "8086", Device: "1521", VendorName: intel, DeviceName: i350PF, Driver: "igb",
			VFIndex: -1, NUMANode: 0, IOMMUGroup: 14, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "ac:1f:6b:2d:4e:10", MTU: 1500, Class: eth, SriovTotalVFs: 7, SriovNumVFs: 2},
		{ID: "0000:05:00.1", PCIAddress: "0000:05:00.1", IfName: "eno2", IfNames: []string{"eno2"},
			Vendor: "8086", Device: "1521", VendorName: intel, DeviceName: i350PF, Driver: "igb",
			VFIndex: -1, NUMANode: 0, IOMMUGroup: 14, LinkType: "ether", OperState: "down", Carrier: device.CarrierDown,
			MAC: "ac:1f:6b:2d:4e:11", MTU: 1500, Class: eth, SriovTotalVFs: 7, SriovNumVFs: 2},
		{ID: "0000:05:10.0", PCIAddress: "0000:05:10.0", IfName: "enp5s16", IfNames: []string{"enp5s16"},
			Vendor: "8086", Device: "1520", VendorName: intel, DeviceName: i350VF, Driver: "igbvf",
			PFPCIAddress: "0000:05:00.0", PFName: "eno1", PFLinkType: "ether", VFIndex: 0, NUMANode: 0, IOMMUGroup: 15,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "7a:3c:12:05:10:00", MTU: 1500, Class: eth},
		{ID: "0000:05:10.1", PCIAddress: "0000:05:10.1", IfName: "enp5s16f1", IfNames: []string{"enp5s16f1"},
			Vendor: "8086", Device: "1520", VendorName: intel, DeviceName: i350VF, Driver: "igbvf",
			PFPCIAddress: "0000:05:00.1", PFName: "eno2", PFLinkType: "ether", VFIndex: 0, NUMANode: 0, IOMMUGroup: 16,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "7a:3c:12:05:10:01", MTU: 1500, Class: eth},
		{ID: "0000:05:10.4", PCIAddress: "0000:05:10.4", IfName: "enp5s16f4", IfNames: []string{"enp5s16f4"},
			Vendor: "8086", Device: "1520", VendorName: intel, DeviceName: i350VF, Driver: "igbvf",
			PFPCIAddress: "0000:05:00.0", PFName: "eno1", PFLinkType: "ether", VFIndex: 1, NUMANode: 0, IOMMUGroup: 17,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "7a:3c:12:05:10:04", MTU: 1500, Class: eth},
		{ID: "0000:05:10.5", PCIAddress: "0000:05:10.5", IfName: "enp5s16f5", IfNames: []string{"enp5s16f5"},
			Vendor: "8086", Device: "1520", VendorName: intel, DeviceName: i350VF, Driver: "igbvf",
			PFPCIAddress: "0000:05:00.1", PFName: "eno2", PFLinkType: "ether", VFIndex: 1, NUMANode: 0, IOMMUGroup: 18,
			LinkType: "ether", OperState: "up", Carrier: device.CarrierUp, MAC: "7a:3c:12:05:10:05", MTU: 1500, Class: eth},
	},
	"virtio": {
		// Netdevs one level down, under virtio0/net and virtio1/net; no IOMMU, no NUMA.
		{ID: "0000:00:03.0", PCIAddress: "0000:00:03.0", IfName: "eth1", IfNames: []string{"eth1"},
			Vendor: "1af4", Device: "1041", VendorName: redHat, DeviceName: virtioNet, Driver: "virtio-pci",
			VFIndex: -1, NUMANode: -1, IOMMUGroup: -1, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "52:54:00:12:34:56", MTU: 1500, Class: eth},
		{ID: "0000:00:04.0", PCIAddress: "0000:00:04.0", IfName: "eth2", IfNames: []string{"eth2"},
			Vendor: "1af4", Device: "1000", VendorName: redHat, DeviceName: virtioOld, Driver: "virtio-pci",
			VFIndex: -1, NUMANode: -1, IOMMUGroup: -1, LinkType: "ether", OperState: "down", Carrier: device.CarrierDown,
			MAC: "52:54:00:12:34:57", MTU: 1400, Class: eth},
	},
	"no-numa": {
		{ID: "0000:18:00.0", PCIAddress: "0000:18:00.0", IfName: "ens3f0", IfNames: []string{"ens3f0"},
			Vendor: "8086", Device: "1572", VendorName: intel, DeviceName: x710, Driver: "i40e",
			VFIndex: -1, NUMANode: -1, IOMMUGroup: 20, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "3c:fd:fe:9e:a0:00", MTU: 1500, Class: eth},
		{ID: "0000:18:00.1", PCIAddress: "0000:18:00.1", IfName: "ens3f1", IfNames: []string{"ens3f1"},
			Vendor: "8086", Device: "1572", VendorName: intel, DeviceName: x710, Driver: "i40e",
			VFIndex: -1, NUMANode: -1, IOMMUGroup: 20, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "3c:fd:fe:9e:a0:01", MTU: 1500, Class: eth},
	},
	"untidy": {
		// Two netdevs, ordered by dev_port.
		{ID: "0000:04:00.0", PCIAddress: "0000:04:00.0", IfName: "ens4", IfNames: []string{"ens4", "ens4d1"},
			Vendor: "15b3", Device: "1007", VendorName: mellanox, DeviceName: cx3pro, Driver: "mlx4_core",
			VFIndex: -1, NUMANode: 0, IOMMUGroup: 8, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "24:8a:07:9e:11:01", MTU: 1500, Class: eth},
		// No modalias: found all the same.
		{ID: "0000:af:00.0", PCIAddress: "0000:af:00.0", IfName: "ens5f0", IfNames: []string{"ens5f0"},
			Vendor: "8086", Device: "1572", VendorName: intel, DeviceName: x710, Driver: "i40e",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: 90, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "3c:fd:fe:b1:00:00", MTU: 1500, Class: eth},
		// Dangling driver link: unbound.
		{ID: "0000:af:00.1", PCIAddress: "0000:af:00.1", IfName: "ens5f1", IfNames: []string{"ens5f1"},
			Vendor: "8086", Device: "1572", VendorName: intel, DeviceName: x710, Driver: "",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: 90, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "3c:fd:fe:b1:00:01", MTU: 1500, Class: eth},
		// Garbage numa_node: -1.
		{ID: "0000:af:00.2", PCIAddress: "0000:af:00.2", IfName: "ens5f2", IfNames: []string{"ens5f2"},
			Vendor: "8086", Device: "1572", VendorName: intel, DeviceName: x710, Driver: "i40e",
			VFIndex: -1, NUMANode: -1, IOMMUGroup: 90, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "3c:fd:fe:b1:00:02", MTU: 1500, Class: eth},
		// No vendor file: no vendor, so no names either.
		{ID: "0000:af:00.3", PCIAddress: "0000:af:00.3", IfName: "ens5f3", IfNames: []string{"ens5f3"},
			Vendor: "", Device: "1572", Driver: "i40e",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: 90, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "3c:fd:fe:b1:00:03", MTU: 1500, Class: eth},
		{ID: "0000:d8:00.0", PCIAddress: "0000:d8:00.0", IfName: "ens6f0", IfNames: []string{"ens6f0"},
			Vendor: "8086", Device: "159b", VendorName: intel, DeviceName: e810XXV, Driver: "ice",
			VFIndex: -1, NUMANode: 1, IOMMUGroup: 100, LinkType: "ether", OperState: "up", Carrier: device.CarrierUp,
			MAC: "b4:96:91:c0:ff:ee", MTU: 1500, Class: eth, SriovTotalVFs: 128, SriovNumVFs: 2},
		// operstate unknown, no carrier file: carrier unknown.
		{ID: "0000:d8:01.0", PCIAddress: "0000:d8:01.0", IfName: "ens6f0v0", IfNames: []string{"ens6f0v0"},
			Vendor: "8086", Device: "1889", VendorName: intel, DeviceName: iavfVF, Driver: "iavf",
			PFPCIAddress: "0000:d8:00.0", PFName: "ens6f0", PFLinkType: "ether", VFIndex: 0, NUMANode: 1, IOMMUGroup: 101,
			LinkType: "ether", OperState: "unknown", Carrier: device.CarrierUnknown, MAC: "9a:00:00:00:d8:10", MTU: 1500, Class: eth},
		// Its netdev is inside a pod: listed, with no interface.
		{ID: "0000:d8:01.1", PCIAddress: "0000:d8:01.1", Vendor: "8086", Device: "1889", VendorName: intel,
			DeviceName: iavfVF, Driver: "iavf", PFPCIAddress: "0000:d8:00.0", PFName: "ens6f0", PFLinkType: "ether", VFIndex: 1,
			NUMANode: 1, IOMMUGroup: 102, MTU: -1, Class: eth},
	},
}
