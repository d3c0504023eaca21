package pcitest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Fixtures are the named trees committed under testdata/sysfs/<name>/sys. Each copies the layout of a
// real host; together they hold every shape pci.Scan must read.
var Fixtures = map[string]func(*Tree) error{
	"e810":            e810,
	"cx6dx-switchdev": cx6dxSwitchdev,
	"i350":            i350,
	"virtio":          virtio,
	"no-numa":         noNUMA,
	"untidy":          untidy,
	"x710-dpdk":       x710DPDK,
	"e810-vran":       e810VRAN,
	"mlx-rdma":        mlxRDMA,
	"ovs-offload":     ovsOffload,
	"ec2-ena":         ec2ENA,
}

// FixtureNames returns the fixture names, sorted.
func FixtureNames() []string {
	names := make([]string, 0, len(Fixtures))
	for n := range Fixtures {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// BuildFixture writes the named fixture at dir/sys and returns that sysfs root.
func BuildFixture(name, dir string) (string, error) {
	build, ok := Fixtures[name]
	if !ok {
		return "", fmt.Errorf("pcitest: no fixture %q", name)
	}
	t, err := NewTree(dir)
	if err != nil {
		return "", err
	}
	if err := build(t); err != nil {
		return "", fmt.Errorf("pcitest: fixture %s: %w", name, err)
	}
	return t.Root, nil
}

type step func() error

func run(steps ...step) error {
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// e810: Intel E810-XXV behind a root port, legacy SR-IOV: port 0 has 4 VFs (2 iavf, 2 vfio-pci, one in a
// vfio-noiommu group), port 1 is admin down with none. An NVMe drive on the same socket.
func e810(t *Tree) error {
	const pf0, pf1 = "0000:3b:00.0", "0000:3b:00.1"
	const parent = "pci0000:3a/0000:3a:00.0"
	sriov := SRIOV{TotalVFs: 128, Offset: 8, Stride: 1, VFDevice: "1889"}
	vf := func(i int, drv, group string, noiommu bool) step {
		return func() error {
			return t.AddVF(pf0, i, Function{SubDevice: "0000", Revision: "0x02", Driver: drv, IOMMUGroup: group, NoIOMMU: noiommu})
		}
	}
	return run(
		func() error {
			return t.AddFunction(Function{Addr: "0000:3a:00.0", Vendor: "8086", Device: "2030", SubDevice: "0000",
				Class: "0x060400", Revision: "0x04", Driver: "pcieport", NUMANode: "0", IOMMUGroup: "30"})
		},
		func() error {
			return t.AddPF(Function{Addr: pf0, Parent: parent, Vendor: "8086", Device: "159b", SubDevice: "0003",
				Class: "0x020000", Revision: "0x02", Driver: "ice", NUMANode: "0", IOMMUGroup: "31"}, sriov)
		},
		func() error {
			return t.AddNetdev(pf0, Netdev{Name: "ens1f0", MAC: "b4:96:91:a5:c7:e0", MTU: 9000, Carrier: "1",
				PhysPortName: "p0", PhysSwitchID: "e0c7a5ffff9196b4"})
		},
		func() error {
			return t.AddPF(Function{Addr: pf1, Parent: parent, Vendor: "8086", Device: "159b", SubDevice: "0003",
				Class: "0x020000", Revision: "0x02", Driver: "ice", NUMANode: "0", IOMMUGroup: "32"},
				SRIOV{TotalVFs: 128, Offset: 135, Stride: 1, VFDevice: "1889"})
		},
		func() error {
			return t.AddNetdev(pf1, Netdev{Name: "ens1f1", MAC: "b4:96:91:a5:c7:e1", OperState: "down",
				DevPort: 0, PhysPortName: "p1", PhysSwitchID: "e0c7a5ffff9196b4"})
		},
		vf(0, "iavf", "150", false),
		func() error {
			return t.AddNetdev("0000:3b:01.0", Netdev{Name: "ens1f0v0", MAC: "3a:9e:81:0c:2b:10", MTU: 9000, Carrier: "1"})
		},
		vf(1, "iavf", "151", false),
		func() error {
			return t.AddNetdev("0000:3b:01.1", Netdev{Name: "ens1f0v1", MAC: "5e:c1:07:dd:42:aa", Carrier: "0", OperState: "down"})
		},
		vf(2, "vfio-pci", "152", false),
		vf(3, "vfio-pci", "153", true),
		func() error {
			return t.AddFunction(Function{Addr: "0000:5e:00.0", Parent: "pci0000:5d/0000:5d:02.0", Vendor: "144d",
				Device: "a80a", Class: "0x010802", Driver: "nvme", NUMANode: "0", IOMMUGroup: "40"})
		},
	)
}

// cx6dxSwitchdev: ConnectX-6 Dx port 0 in switchdev mode (uplink and three VF representors in the PF's
// net/, one renamed), its three VFs with their own netdevs; port 1 in legacy mode; a ConnectX-6
// InfiniBand card on the same socket.
func cx6dxSwitchdev(t *Tree) error {
	const pf0, pf1 = "0000:86:00.0", "0000:86:00.1"
	const parent = "pci0000:85/0000:85:00.0"
	const swid = "b8e4a10003a16b9c"
	sriov := SRIOV{TotalVFs: 8, Offset: 2, Stride: 1, VFDevice: "101e"}
	rep := func(name, port, mac string) step {
		return func() error {
			return t.AddNetdev(pf0, Netdev{Name: name, MAC: mac, Carrier: "1", PhysPortName: port, PhysSwitchID: swid})
		}
	}
	vf := func(i int, name, mac string) step {
		return func() error {
			if err := t.AddVF(pf0, i, Function{SubDevice: "0016", Driver: "mlx5_core", IOMMUGroup: fmt.Sprint(61 + i)}); err != nil {
				return err
			}
			addr, err := t.VFAddr(pf0, i)
			if err != nil {
				return err
			}
			return t.AddNetdev(addr, Netdev{Name: name, MAC: mac, Carrier: "1"})
		}
	}
	return run(
		func() error {
			return t.AddFunction(Function{Addr: "0000:85:00.0", Vendor: "8086", Device: "2030", SubDevice: "0000",
				Class: "0x060400", Revision: "0x04", Driver: "pcieport", NUMANode: "1", IOMMUGroup: "59"})
		},
		func() error {
			return t.AddPF(Function{Addr: pf0, Parent: parent, Vendor: "15b3", Device: "101d", SubDevice: "0016",
				Class: "0x020000", Driver: "mlx5_core", NUMANode: "1", IOMMUGroup: "60"}, sriov)
		},
		// Representors come first in the folder listing on purpose: the uplink must still be chosen.
		rep("58609951635cbfa", "pf0vf2", "d6:1c:85:3e:02:7b"),
		func() error {
			return t.AddNetdev(pf0, Netdev{Name: "ens2f0np0", MAC: "b8:ce:f6:0b:7e:a0", Carrier: "1",
				PhysPortName: "p0", PhysSwitchID: swid})
		},
		rep("ens2f0npf0vf0", "pf0vf0", "a2:5f:1e:90:33:01"),
		rep("ens2f0npf0vf1", "pf0vf1", "66:0e:d4:71:c9:5d"),
		vf(0, "enp134s0f0v0", "3e:81:a7:15:60:10"),
		vf(1, "enp134s0f0v1", "3e:81:a7:15:60:11"),
		vf(2, "enp134s0f0v2", "3e:81:a7:15:60:12"),
		func() error {
			return t.AddPF(Function{Addr: pf1, Parent: parent, Vendor: "15b3", Device: "101d", SubDevice: "0016",
				Class: "0x020000", Driver: "mlx5_core", NUMANode: "1", IOMMUGroup: "70"},
				SRIOV{TotalVFs: 8, Offset: 9, Stride: 1, VFDevice: "101e"})
		},
		func() error {
			return t.AddNetdev(pf1, Netdev{Name: "ens2f1np1", MAC: "b8:ce:f6:0b:7e:a1", Carrier: "0",
				OperState: "down", DevPort: 0, PhysPortName: "p1"})
		},
		func() error {
			return t.AddFunction(Function{Addr: "0000:af:00.0", Parent: "pci0000:ae/0000:ae:00.0", Vendor: "15b3",
				Device: "101b", SubDevice: "0007", Class: "0x020700", Driver: "mlx5_core", NUMANode: "1", IOMMUGroup: "80"})
		},
		func() error {
			return t.AddNetdev("0000:af:00.0", Netdev{Name: "ibp175s0", Type: 32, MTU: 4092, Carrier: "1",
				MAC: "00:00:10:87:fe:80:00:00:00:00:00:00:b8:59:9f:03:00:a1:b2:c3"})
		},
	)
}

// i350: two igb PFs whose igbvf VFs interleave (stride 4), the host bridge of the socket, PFs sharing an
// IOMMU group as multi-function devices without ACS do.
func i350(t *Tree) error {
	const pf0, pf1 = "0000:05:00.0", "0000:05:00.1"
	const parent = "pci0000:00/0000:00:1c.0"
	sriov := SRIOV{TotalVFs: 7, Offset: 128, Stride: 4, VFDevice: "1520"}
	vf := func(pf string, i int, name, mac, group string) step {
		return func() error {
			if err := t.AddVF(pf, i, Function{SubDevice: "00a2", Revision: "0x01", Driver: "igbvf", IOMMUGroup: group}); err != nil {
				return err
			}
			addr, err := t.VFAddr(pf, i)
			if err != nil {
				return err
			}
			return t.AddNetdev(addr, Netdev{Name: name, MAC: mac, Carrier: "1"})
		}
	}
	return run(
		func() error {
			return t.AddFunction(Function{Addr: "0000:00:00.0", Vendor: "8086", Device: "3e30", SubDevice: "0000",
				Class: "0x060000", Revision: "0x0d", Driver: "skl_uncore", NUMANode: "0", IOMMUGroup: "0"})
		},
		func() error {
			return t.AddFunction(Function{Addr: "0000:00:1c.0", Vendor: "8086", Device: "a338", SubDevice: "0000",
				Class: "0x060400", Revision: "0xf0", Driver: "pcieport", NUMANode: "0", IOMMUGroup: "13"})
		},
		func() error {
			return t.AddPF(Function{Addr: pf0, Parent: parent, Vendor: "8086", Device: "1521", SubDevice: "00a2",
				Class: "0x020000", Revision: "0x01", Driver: "igb", NUMANode: "0", IOMMUGroup: "14"}, sriov)
		},
		func() error {
			return t.AddNetdev(pf0, Netdev{Name: "eno1", MAC: "ac:1f:6b:2d:4e:10", Carrier: "1"})
		},
		func() error {
			return t.AddPF(Function{Addr: pf1, Parent: parent, Vendor: "8086", Device: "1521", SubDevice: "00a2",
				Class: "0x020000", Revision: "0x01", Driver: "igb", NUMANode: "0", IOMMUGroup: "14"}, sriov)
		},
		func() error {
			return t.AddNetdev(pf1, Netdev{Name: "eno2", MAC: "ac:1f:6b:2d:4e:11", Carrier: "0", OperState: "down"})
		},
		vf(pf0, 0, "enp5s16", "7a:3c:12:05:10:00", "15"),
		vf(pf1, 0, "enp5s16f1", "7a:3c:12:05:10:01", "16"),
		vf(pf0, 1, "enp5s16f4", "7a:3c:12:05:10:04", "17"),
		vf(pf1, 1, "enp5s16f5", "7a:3c:12:05:10:05", "18"),
	)
}

// virtio: a QEMU q35 guest like this machine: host bridge, virtio-blk, a modern virtio-net whose
// netdev sits under virtio0/net/, a legacy (transitional) virtio-net, no IOMMU, no NUMA.
func virtio(t *Tree) error {
	return run(
		func() error {
			return t.AddFunction(Function{Addr: "0000:00:00.0", Vendor: "8086", Device: "29c0", SubVendor: "1af4",
				SubDevice: "1100", Class: "0x060000", NUMANode: "-1"})
		},
		func() error {
			return t.AddFunction(Function{Addr: "0000:00:02.0", Vendor: "1af4", Device: "1042", SubDevice: "1100",
				Class: "0x010000", Revision: "0x01", Driver: "virtio-pci", NUMANode: "-1"})
		},
		func() error {
			return t.AddFunction(Function{Addr: "0000:00:03.0", Vendor: "1af4", Device: "1041", SubDevice: "1100",
				Class: "0x020000", Revision: "0x01", Driver: "virtio-pci", NUMANode: "-1"})
		},
		func() error {
			return t.AddNetdev("0000:00:03.0", Netdev{Name: "eth1", Sub: "virtio0", MAC: "52:54:00:12:34:56", Carrier: "1"})
		},
		func() error {
			return t.AddFunction(Function{Addr: "0000:00:04.0", Vendor: "1af4", Device: "1000", SubDevice: "0001",
				Class: "0x020000", Driver: "virtio-pci", NUMANode: "-1"})
		},
		func() error {
			return t.AddNetdev("0000:00:04.0", Netdev{Name: "eth2", Sub: "virtio1", MAC: "52:54:00:12:34:57",
				MTU: 1400, Carrier: "0", OperState: "down"})
		},
	)
}

// noNUMA: an X710 whose port 0 says numa_node -1 and whose port 1 has no numa_node file (a kernel
// without CONFIG_NUMA).
func noNUMA(t *Tree) error {
	return run(
		func() error {
			return t.AddFunction(Function{Addr: "0000:18:00.0", Vendor: "8086", Device: "1572", SubDevice: "0007",
				Class: "0x020000", Revision: "0x02", Driver: "i40e", NUMANode: "-1", IOMMUGroup: "20"})
		},
		func() error {
			return t.AddNetdev("0000:18:00.0", Netdev{Name: "ens3f0", MAC: "3c:fd:fe:9e:a0:00", Carrier: "1"})
		},
		func() error {
			return t.AddFunction(Function{Addr: "0000:18:00.1", Vendor: "8086", Device: "1572", SubDevice: "0007",
				Class: "0x020000", Revision: "0x02", Driver: "i40e", IOMMUGroup: "20"})
		},
		func() error {
			return t.AddNetdev("0000:18:00.1", Netdev{Name: "ens3f1", MAC: "3c:fd:fe:9e:a0:01", Carrier: "1"})
		},
	)
}

// untidy: the surprises real hosts have. An X710 whose four ports have no modalias, a dangling driver
// link, a garbage numa_node and no vendor file; a ConnectX-3 Pro function with two netdevs (one per
// port); an E810 PF whose VF 1 netdev is inside a pod and whose VF 0 netdev reads operstate unknown
// with no carrier.
func untidy(t *Tree) error {
	x710 := func(addr, numa, drv string, noModalias, noVendor bool) step {
		return func() error {
			return t.AddFunction(Function{Addr: addr, Parent: "pci0000:ae/0000:ae:02.0", Vendor: "8086", Device: "1572",
				SubDevice: "0007", Class: "0x020000", Revision: "0x02", Driver: drv, NUMANode: numa,
				IOMMUGroup: "90", NoModalias: noModalias, NoVendor: noVendor})
		}
	}
	nd := func(addr string, n Netdev) step { return func() error { return t.AddNetdev(addr, n) } }
	const pf = "0000:d8:00.0"
	return run(
		x710("0000:af:00.0", "1", "i40e", true, false),
		nd("0000:af:00.0", Netdev{Name: "ens5f0", MAC: "3c:fd:fe:b1:00:00", Carrier: "1"}),
		x710("0000:af:00.1", "1", "i40e_gone", false, false),
		func() error { return os.RemoveAll(filepath.Join(t.Root, "bus/pci/drivers/i40e_gone")) },
		nd("0000:af:00.1", Netdev{Name: "ens5f1", MAC: "3c:fd:fe:b1:00:01", Carrier: "1"}),
		x710("0000:af:00.2", "garbage", "i40e", false, false),
		nd("0000:af:00.2", Netdev{Name: "ens5f2", MAC: "3c:fd:fe:b1:00:02", Carrier: "1"}),
		x710("0000:af:00.3", "1", "i40e", false, true),
		nd("0000:af:00.3", Netdev{Name: "ens5f3", MAC: "3c:fd:fe:b1:00:03", Carrier: "1"}),
		func() error {
			return t.AddFunction(Function{Addr: "0000:04:00.0", Parent: "pci0000:00/0000:00:03.0", Vendor: "15b3",
				Device: "1007", SubDevice: "0006", Class: "0x020000", Driver: "mlx4_core", NUMANode: "0", IOMMUGroup: "8"})
		},
		// Listed port 1 first: dev_port, not the folder order, puts port 0 first.
		nd("0000:04:00.0", Netdev{Name: "ens4d1", MAC: "24:8a:07:9e:11:02", Carrier: "0", OperState: "down", DevPort: 1}),
		nd("0000:04:00.0", Netdev{Name: "ens4", MAC: "24:8a:07:9e:11:01", Carrier: "1", DevPort: 0}),
		func() error {
			return t.AddPF(Function{Addr: pf, Parent: "pci0000:d7/0000:d7:00.0", Vendor: "8086", Device: "159b",
				SubDevice: "0003", Class: "0x020000", Revision: "0x02", Driver: "ice", NUMANode: "1", IOMMUGroup: "100"},
				SRIOV{TotalVFs: 128, Offset: 8, Stride: 1, VFDevice: "1889"})
		},
		nd(pf, Netdev{Name: "ens6f0", MAC: "b4:96:91:c0:ff:ee", Carrier: "1", PhysPortName: "p0", PhysSwitchID: "eeffc0ffff9196b4"}),
		func() error {
			return t.AddVF(pf, 0, Function{SubDevice: "0000", Revision: "0x02", Driver: "iavf", IOMMUGroup: "101"})
		},
		nd("0000:d8:01.0", Netdev{Name: "ens6f0v0", MAC: "9a:00:00:00:d8:10", OperState: "unknown"}),
		func() error {
			return t.AddVF(pf, 1, Function{SubDevice: "0000", Revision: "0x02", Driver: "iavf", IOMMUGroup: "102"})
		},
	)
}
