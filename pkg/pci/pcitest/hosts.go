package pcitest

import (
	"fmt"
	"strconv"
)

// The corpus hosts: whole machines whose NIC layouts copy real ones (PCI IDs, SR-IOV offsets and
// strides, driver mixes, udev names, mlx5 RDMA devices with their char devices), with netdev names
// and addresses chosen so that the real-world sriov-dp configs of testdata/sriovdp-corpus select
// something on them. What sriov-dp v3.11.0 itself selects on them is in
// testdata/sriovdp-corpus/expected.json.

// host is a fixture being written: the first error stops every later step.
type host struct {
	t   *Tree
	err error
}

func (h *host) do(f func() error) {
	if h.err == nil {
		h.err = f()
	}
}

func (h *host) fn(f Function) { h.do(func() error { return h.t.AddFunction(f) }) }

// bridge writes a PCIe root port (or host bridge, with class 0x060000) that functions sit behind.
func (h *host) bridge(addr, vendor, device, class, numa string) {
	h.fn(Function{Addr: addr, Vendor: vendor, Device: device, SubDevice: "0000", Class: class,
		Driver: map[string]string{"0x060400": "pcieport"}[class], NUMANode: numa})
}

// pf writes a PF and, when nd.Name is set, its netdev.
func (h *host) pf(f Function, s SRIOV, nd Netdev) {
	h.do(func() error { return h.t.AddPF(f, s) })
	if nd.Name != "" {
		h.do(func() error { return h.t.AddNetdev(f.Addr, nd) })
	}
}

// vf writes VF i of pf with the given driver ("" = unbound), IOMMU group and, when nd.Name is set,
// its netdev; it returns the VF's address.
func (h *host) vf(pf string, i int, drv string, group int, nd Netdev) string {
	return h.vfUIO(pf, i, drv, group, "", nd)
}

// vfUIO is vf for a uio-bound VF too: uio names its uio device ("uio0").
func (h *host) vfUIO(pf string, i int, drv string, group int, uio string, nd Netdev) string {
	var addr string
	h.do(func() (err error) {
		addr, err = h.t.VFAddr(pf, i)
		return err
	})
	f := Function{Addr: addr, Driver: drv, IOMMUGroup: strconv.Itoa(group), UIO: uio}
	if st, ok := h.t.pfs[pf]; ok {
		// Intel VFs read subsystem <vendor>:0000; Mellanox and Broadcom VFs repeat the PF's.
		f.SubVendor, f.SubDevice, f.Revision = st.fn.SubVendor, st.fn.SubDevice, st.fn.Revision
		if st.fn.Vendor == "8086" {
			f.SubDevice = "0000"
		}
	}
	h.do(func() error { return h.t.AddVF(pf, i, f) })
	if nd.Name != "" {
		if nd.MAC == "" {
			nd.MAC = vfMAC(addr)
		}
		if nd.Carrier == "" {
			nd.Carrier = "1"
		}
		h.do(func() error { return h.t.AddNetdev(addr, nd) })
	}
	return addr
}

func (h *host) netdev(addr string, nd Netdev) { h.do(func() error { return h.t.AddNetdev(addr, nd) }) }

// mlx5 writes RDMA device mlx5_<n> (uverbs<n>, umad<n>, issm<n>: every device here has one port, so
// the indices agree) of the function at addr; netdev is its RoCE netdev ("" for none on the host).
func (h *host) mlx5(addr string, n int, netdev, guid string) {
	h.do(func() error {
		return h.t.AddRDMA(addr, RDMA{Name: "mlx5_" + strconv.Itoa(n), Verbs: n, MAD: n, Netdev: netdev, NodeGUID: guid})
	})
}

// vfMAC is a locally administered MAC made of the VF's address, as a random one would look.
func vfMAC(addr string) string {
	var dom, bus, dev, fn int
	if _, err := fmt.Sscanf(addr, "%04x:%02x:%02x.%01x", &dom, &bus, &dev, &fn); err != nil {
		return "02:00:00:00:00:00"
	}
	return fmt.Sprintf("4a:%02x:7e:%02x:%02x:%02x", dom&0xff, bus, dev, fn)
}

// pathName is udev's path-based netdev name enp<bus>s<slot>f<fn>; multi says whether the function is
// part of a multi-function device: a VF's slot is not, so function 0 is left out (enp61s2).
func pathName(addr string, multi bool) string {
	var dom, bus, dev, fn int
	if _, err := fmt.Sscanf(addr, "%04x:%02x:%02x.%01x", &dom, &bus, &dev, &fn); err != nil {
		return ""
	}
	if fn == 0 && !multi {
		return fmt.Sprintf("enp%ds%d", bus, dev)
	}
	return fmt.Sprintf("enp%ds%df%d", bus, dev, fn)
}

// x710DPDK: a 2019-era telco DPDK node (kernel before 4.17, so Intel VFs bind i40evf; DPDK with
// igb_uio, uio_pci_generic and vfio-pci), with the ports the configs of sriov-dp issue #184 and of the
// CNCF CNF testbed name:
//   - a Dell rNDC-style onboard X710 quad port eno1..eno4 (acpi_index 1..4): eno1 with no VFs, eno2
//     with 2 vfio-pci + 2 i40evf VFs, eno3 with 1 + 1, eno4 bound to vfio-pci itself (a PF with 0 VFs
//     and no netdev, the CNF testbed's "PF as a DPDK port");
//   - an X710-DA4 card ens3f0..ens3f3: ens3f0 i40evf VFs, ens3f1 vfio-pci VFs, ens3f2 one i40evf VF
//     and one VF no driver is bound to, ens3f3 one igb_uio and one uio_pci_generic VF;
//   - an XL710-QDA2 enp216s0f0 (0000:d8:00.0) with 3 i40evf VFs and a vfio-pci one, enp216s0f1 with
//     none, on socket 1.
//
// X710 VFs sit at PF + sriov_offset 16/47/78/109 (32 VFs per port of a quad), XL710 at 16/79.
func x710DPDK(t *Tree) error {
	h := &host{t: t}
	h.bridge("0000:17:02.0", "8086", "2032", "0x060400", "0")
	h.bridge("0000:3a:02.0", "8086", "2032", "0x060400", "0")
	h.bridge("0000:d7:00.0", "8086", "2030", "0x060400", "1")
	x710 := func(addr, parent, subVendor, sub, numa string, group, offset int) (Function, SRIOV) {
		return Function{Addr: addr, Parent: parent, Vendor: "8086", Device: "1572", SubVendor: subVendor, SubDevice: sub,
				Class: "0x020000", Revision: "0x02", Driver: "i40e", NUMANode: numa, IOMMUGroup: strconv.Itoa(group)},
			SRIOV{TotalVFs: 32, Offset: offset, Stride: 1, VFDevice: "154c"}
	}
	// Onboard quad port.
	const ndc = "pci0000:17/0000:17:02.0"
	for i, off := range []int{16, 47, 78, 109} {
		f, s := x710(fmt.Sprintf("0000:19:00.%d", i), ndc, "1028", "1f9c", "0", 30+i, off)
		f.ACPIIndex = strconv.Itoa(i + 1) // onboard: eno<acpi_index>
		nd := Netdev{Name: fmt.Sprintf("eno%d", i+1), MAC: fmt.Sprintf("24:6e:96:1c:3a:%02x", 0x80+i), Carrier: "1"}
		if i == 3 {
			f.Driver, nd = "vfio-pci", Netdev{}
		}
		if i == 1 {
			nd.MTU = 9000
		}
		h.pf(f, s, nd)
	}
	h.vf("0000:19:00.1", 0, "vfio-pci", 40, Netdev{})
	h.vf("0000:19:00.1", 1, "vfio-pci", 41, Netdev{})
	h.vf("0000:19:00.1", 2, "i40evf", 42, Netdev{Name: "enp25s6f2", MTU: 9000})
	h.vf("0000:19:00.1", 3, "i40evf", 43, Netdev{Name: "enp25s6f3", MTU: 9000})
	h.vf("0000:19:00.2", 0, "vfio-pci", 44, Netdev{})
	h.vf("0000:19:00.2", 1, "i40evf", 45, Netdev{Name: "enp25s10f1"})

	// X710-DA4 card.
	const card = "pci0000:3a/0000:3a:02.0"
	for i, off := range []int{16, 47, 78, 109} {
		f, s := x710(fmt.Sprintf("0000:3d:00.%d", i), card, "8086", "0001", "0", 50+i, off)
		h.pf(f, s, Netdev{Name: fmt.Sprintf("ens3f%d", i), MAC: fmt.Sprintf("3c:fd:fe:a7:1b:%02x", 0x40+i), Carrier: "1"})
	}
	for i := 0; i < 2; i++ {
		addr, _ := t.VFAddr("0000:3d:00.0", i)
		h.vf("0000:3d:00.0", i, "i40evf", 60+i, Netdev{Name: pathName(addr, false)})
	}
	h.vf("0000:3d:00.1", 0, "vfio-pci", 62, Netdev{})
	h.vf("0000:3d:00.1", 1, "vfio-pci", 63, Netdev{})
	h.vf("0000:3d:00.2", 0, "i40evf", 64, Netdev{Name: "enp61s10"})
	h.vf("0000:3d:00.2", 1, "", 65, Netdev{}) // left unbound
	h.vfUIO("0000:3d:00.3", 0, "igb_uio", 66, "uio0", Netdev{})
	h.vfUIO("0000:3d:00.3", 1, "uio_pci_generic", 67, "uio1", Netdev{})

	// XL710-QDA2 on socket 1.
	const q = "pci0000:d7/0000:d7:00.0"
	for i, off := range []int{16, 79} {
		f, s := x710(fmt.Sprintf("0000:d8:00.%d", i), q, "8086", "0002", "1", 70+i, off)
		f.Device, s.TotalVFs = "1583", 64
		h.pf(f, s, Netdev{Name: fmt.Sprintf("enp216s0f%d", i), MAC: fmt.Sprintf("3c:fd:fe:c4:88:%02x", 0x10+i),
			Carrier: map[int]string{0: "1", 1: "0"}[i], OperState: map[int]string{0: "up", 1: "down"}[i]})
	}
	for i := 0; i < 3; i++ {
		addr, _ := t.VFAddr("0000:d8:00.0", i)
		h.vf("0000:d8:00.0", i, "i40evf", 80+i, Netdev{Name: pathName(addr, false)})
	}
	h.vf("0000:d8:00.0", 3, "vfio-pci", 83, Netdev{})
	return h.err
}

// e810VRAN: a 5G vRAN / FlexRAN node (current kernel, iavf):
//   - an E810-XXV ens785f0 with 8 VFs (iavf, one left unbound, two vfio-pci) and ens785f1 with 12
//     (8 iavf, 4 vfio-pci), the ports of the sriov-dp per-node config example;
//   - an ACC100 FEC card (class 0x120000, PF on pci-pf-stub, 2 VFs on vfio-pci) for the accelerator
//     pools of the SRIOV-FEC operator;
//   - an onboard I350 eno1 (no VFs), eno2 with one vfio-pci VF (the Virtink sample) and one igbvf VF;
//   - a Broadcom BCM57508 ens2f0np0 with no VFs (sriov-dp's brcm_sriov_bnxt pool selects the PF
//     itself) and ens2f1np1 with 2 bnxt_en VFs.
func e810VRAN(t *Tree) error {
	h := &host{t: t}
	h.bridge("0000:00:1c.0", "8086", "a190", "0x060400", "0")
	h.bridge("0000:16:02.0", "8086", "2032", "0x060400", "0")
	h.bridge("0000:30:02.0", "8086", "2032", "0x060400", "0")
	h.bridge("0000:4a:02.0", "8086", "2032", "0x060400", "0")

	// I350 onboard: PF1's VFs at 02:10.1, 02:10.5 (offset 128, stride 4).
	i350 := SRIOV{TotalVFs: 7, Offset: 128, Stride: 4, VFDevice: "1520"}
	for i := 0; i < 2; i++ {
		h.pf(Function{Addr: fmt.Sprintf("0000:02:00.%d", i), Parent: "pci0000:00/0000:00:1c.0", Vendor: "8086", Device: "1521",
			Class: "0x020000", Revision: "0x01", Driver: "igb", NUMANode: "0", IOMMUGroup: strconv.Itoa(20 + i),
			ACPIIndex: strconv.Itoa(i + 1)}, i350,
			Netdev{Name: fmt.Sprintf("eno%d", i+1), MAC: fmt.Sprintf("ac:1f:6b:e0:51:%02x", 0x3a+i), Carrier: "1"})
	}
	h.vf("0000:02:00.1", 0, "vfio-pci", 22, Netdev{})
	h.vf("0000:02:00.1", 1, "igbvf", 23, Netdev{Name: "enp2s16f5"})

	// ACC100: not a network function; sriov-dp's accelerator pools take it.
	h.do(func() error {
		return t.AddPF(Function{Addr: "0000:17:00.0", Parent: "pci0000:16/0000:16:02.0", Vendor: "8086", Device: "0d5c",
			Class: "0x120000", Driver: "pci-pf-stub", NUMANode: "0", IOMMUGroup: "25"},
			SRIOV{TotalVFs: 16, Offset: 1, Stride: 1, VFDevice: "0d5d"})
	})
	h.vf("0000:17:00.0", 0, "vfio-pci", 26, Netdev{})
	h.vf("0000:17:00.0", 1, "vfio-pci", 27, Netdev{})

	// BCM57508: bnxt_en names its ports p0, p1.
	for i, off := range []int{2, 9} {
		h.pf(Function{Addr: fmt.Sprintf("0000:31:00.%d", i), Parent: "pci0000:30/0000:30:02.0", Vendor: "14e4", Device: "1750",
			SubDevice: "5208", Class: "0x020000", Revision: "0x11", Driver: "bnxt_en", NUMANode: "0", IOMMUGroup: strconv.Itoa(28 + i)},
			SRIOV{TotalVFs: 7, Offset: off, Stride: 1, VFDevice: "1806"},
			Netdev{Name: fmt.Sprintf("ens2f%dnp%d", i, i), MAC: fmt.Sprintf("bc:97:e1:5e:40:%02x", 0x70+i), Carrier: "1",
				PhysPortName: fmt.Sprintf("p%d", i)})
	}
	h.vf("0000:31:00.1", 0, "bnxt_en", 32, Netdev{Name: "ens2f1v0"})
	h.vf("0000:31:00.1", 1, "bnxt_en", 33, Netdev{Name: "ens2f1v1"})

	// E810-XXV: port 0 VFs from 4b:01.0 (offset 8), port 1 from 4b:11.0 (offset 135); a legacy E810
	// PF has a switch id and port name p0/p1.
	for i, off := range []int{8, 135} {
		h.pf(Function{Addr: fmt.Sprintf("0000:4b:00.%d", i), Parent: "pci0000:4a/0000:4a:02.0", Vendor: "8086", Device: "159b",
			SubDevice: "0003", Class: "0x020000", Revision: "0x02", Driver: "ice", NUMANode: "0", IOMMUGroup: strconv.Itoa(90 + i)},
			SRIOV{TotalVFs: 128, Offset: off, Stride: 1, VFDevice: "1889"},
			Netdev{Name: fmt.Sprintf("ens785f%d", i), MAC: fmt.Sprintf("b4:96:91:b3:d0:%02x", 0x68+i), MTU: 9000, Carrier: "1",
				PhysPortName: fmt.Sprintf("p%d", i), PhysSwitchID: "68d0b3ffff9196b4"})
	}
	for i, drv := range []string{"iavf", "iavf", "", "iavf", "iavf", "vfio-pci", "vfio-pci", "iavf"} {
		nd := Netdev{}
		if drv == "iavf" {
			nd = Netdev{Name: fmt.Sprintf("ens785f0v%d", i), MTU: 9000}
		}
		h.vf("0000:4b:00.0", i, drv, 100+i, nd)
	}
	for i := 0; i < 12; i++ {
		drv, nd := "iavf", Netdev{Name: fmt.Sprintf("ens785f1v%d", i)}
		if i >= 8 {
			drv, nd = "vfio-pci", Netdev{}
		}
		h.vf("0000:4b:00.1", i, drv, 110+i, nd)
	}
	return h.err
}

// mlxRDMA: a ConnectX RDMA node in legacy SR-IOV, ib_core in shared mode, names of a kernel whose
// mlx5 legacy ports have no phys_port_name (enp4s0f0, not enp4s0f0np0):
//   - a ConnectX-5 enp2s0f0/enp2s0f1 (0000:02:00.x) with no VFs: PFs a pool may take, with RDMA;
//   - a ConnectX-4 Lx enp3s0f0 with 3 RoCE VFs and a vfio-pci one, enp3s0f1 with one RoCE VF and one
//     left unbound;
//   - a ConnectX-5 enp4s0f0 with 4 RoCE VFs (the netdev of the last one is inside a pod, its RDMA
//     device still visible: shared mode) and a vfio-pci VF (for a VM), enp4s0f1 with none;
//   - a ConnectX-6 InfiniBand HCA ibp12s0 with no VFs and one, ibp75s0, with 4 IPoIB VFs
//     (ibp75s0v0..v3, class 0x020700, ARPHRD 32), each VF with its own mlx5_N as on real hosts.
//
// mlx5_N numbers follow registration: the PFs in bus order at boot, then the VFs as they were made.
func mlxRDMA(t *Tree) error {
	h := &host{t: t}
	for _, rp := range []string{"0000:00:01.0", "0000:00:01.1", "0000:00:02.0", "0000:00:03.0"} {
		h.bridge(rp, "8086", "2030", "0x060400", "0")
	}
	h.bridge("0000:4a:00.0", "8086", "2030", "0x060400", "1")
	type card struct {
		bus, parent, dev, vf, sub, numa string
		group                           int
		macs                            string
	}
	eth := func(c card, port, rdma int, carrier string) string {
		addr := fmt.Sprintf("0000:%s:00.%d", c.bus, port)
		mac := fmt.Sprintf("%s:%02x", c.macs, 0x20+port)
		name := pathName(addr, true)
		h.pf(Function{Addr: addr, Parent: c.parent, Vendor: "15b3", Device: c.dev, SubDevice: c.sub, Class: "0x020000",
			Driver: "mlx5_core", NUMANode: c.numa, IOMMUGroup: strconv.Itoa(c.group + port)},
			SRIOV{TotalVFs: 8, Offset: map[int]int{0: 2, 1: 9}[port], Stride: 1, VFDevice: c.vf},
			Netdev{Name: name, MAC: mac, Carrier: carrier,
				OperState: map[string]string{"1": "up", "0": "down"}[carrier]})
		h.mlx5(addr, rdma, name, macGUID(mac))
		return addr
	}
	cx5a := card{bus: "02", parent: "pci0000:00/0000:00:01.0", dev: "1017", vf: "1018", sub: "0007", numa: "0", group: 10, macs: "98:03:9b:5c:02"}
	cx4 := card{bus: "03", parent: "pci0000:00/0000:00:01.1", dev: "1015", vf: "1016", sub: "0003", numa: "0", group: 12, macs: "24:8a:07:b4:03"}
	cx5b := card{bus: "04", parent: "pci0000:00/0000:00:02.0", dev: "1017", vf: "1018", sub: "0020", numa: "0", group: 14, macs: "98:03:9b:5c:04"}
	eth(cx5a, 0, 0, "1")
	eth(cx5a, 1, 1, "0")
	cx4p0 := eth(cx4, 0, 2, "1")
	cx4p1 := eth(cx4, 1, 3, "1")
	cx5p0 := eth(cx5b, 0, 4, "1")
	eth(cx5b, 1, 5, "1")

	ib := func(addr, parent, numa, name string, rdma, group int, guid string) {
		h.pf(Function{Addr: addr, Parent: parent, Vendor: "15b3", Device: "101b", Class: "0x020700",
			Driver: "mlx5_core", NUMANode: numa, IOMMUGroup: strconv.Itoa(group)},
			SRIOV{TotalVFs: 8, Offset: 1, Stride: 1, VFDevice: "101c"}, Netdev{})
		h.do(func() error {
			return t.AddIPoIB(addr, "00:00:10:87", Netdev{Name: name, Carrier: "1"},
				RDMA{Name: "mlx5_" + strconv.Itoa(rdma), Verbs: rdma, MAD: rdma, NodeGUID: guid})
		})
	}
	ib("0000:0c:00.0", "pci0000:00/0000:00:03.0", "0", "ibp12s0", 6, 16, "b859:9f03:00c3:0c00")
	ib("0000:4b:00.0", "pci0000:4a/0000:4a:00.0", "1", "ibp75s0", 7, 17, "b859:9f03:00c3:4b00")

	// VFs, in the order they were made: their mlx5_N follow the PFs'.
	n := 8
	roce := func(pf string, i, group int, name string) {
		addr := h.vf(pf, i, "mlx5_core", group, Netdev{Name: name})
		h.mlx5(addr, n, name, "")
		n++
	}
	roce(cx4p0, 0, 30, "enp3s0f2")
	roce(cx4p0, 1, 31, "enp3s0f3")
	roce(cx4p0, 2, 32, "enp3s0f4")
	h.vf(cx4p0, 3, "vfio-pci", 33, Netdev{})
	roce(cx4p1, 0, 34, "enp3s1f2")
	h.vf(cx4p1, 1, "", 35, Netdev{}) // sriov_drivers_autoprobe 0: nothing bound
	roce(cx5p0, 0, 40, "enp4s0f2")
	roce(cx5p0, 1, 41, "enp4s0f3")
	roce(cx5p0, 2, 42, "enp4s0f4")
	// Its netdev is in a pod: no net/ on the host, the RDMA device (shared mode) still there.
	addr := h.vf(cx5p0, 3, "mlx5_core", 43, Netdev{})
	h.mlx5(addr, n, "", "")
	n++
	h.vf(cx5p0, 4, "vfio-pci", 44, Netdev{})
	for i := 0; i < 4; i++ {
		addr := h.vf("0000:4b:00.0", i, "mlx5_core", 50+i, Netdev{})
		guid := fmt.Sprintf("0200:0000:0000:4b%02x", i+1) // set by the admin (ib-kubernetes)
		h.do(func() error {
			return t.AddIPoIB(addr, fmt.Sprintf("00:00:%02x:27", 1+i), Netdev{Name: fmt.Sprintf("ibp75s0v%d", i), Carrier: "1"},
				RDMA{Name: "mlx5_" + strconv.Itoa(n), Verbs: n, MAD: n, NodeGUID: guid})
		})
		n++
	}
	return h.err
}

// ovsOffload: an AMD EPYC node for OVN-Kubernetes / kube-ovn hardware offload and F5 BIG-IP Next on
// BlueField-3, current kernel (mlx5 ports named ...np0):
//   - a ConnectX-6 Dx ens1f0np0 in switchdev mode: 4 VFs with RoCE, their representors
//     ens1f0npf0vf0..3 in the PF's net/, the uplink's own RDMA device; port 1 ens1f1np1 legacy, no VFs;
//   - a second ConnectX-6 Dx ens3f0np0/ens3f1np1 at 0000:03:00.x, legacy, 3 + 1 VFs (an OpenShift
//     node of sriov-network-operator issue #727);
//   - a BlueField-3 (a2dc) enp193s0f0np0/enp193s0f1np1, legacy, 2 + 1 VFs (101e) with RDMA;
//   - an E810-XXV enp129s0f0/enp129s0f1 with 2 vfio-pci VFs each.
func ovsOffload(t *Tree) error {
	h := &host{t: t}
	for _, rp := range []string{"0000:00:03.1", "0000:40:01.1", "0000:80:01.1", "0000:c0:01.1"} {
		h.bridge(rp, "1022", "1483", "0x060400", "0")
	}
	type cx struct {
		bus, parent, dev, sub, macs, swid string
		names                             [2]string
		group                             int
	}
	mlx := func(c cx, port, rdma int) string {
		addr := fmt.Sprintf("0000:%s:00.%d", c.bus, port)
		mac := fmt.Sprintf("%s:%02x", c.macs, 0x60+port)
		nd := Netdev{Name: c.names[port], MAC: mac, Carrier: "1", PhysPortName: fmt.Sprintf("p%d", port)}
		if port == 0 && c.swid != "" {
			nd.PhysSwitchID = c.swid
		}
		h.pf(Function{Addr: addr, Parent: c.parent, Vendor: "15b3", Device: c.dev, SubDevice: c.sub, Class: "0x020000",
			Driver: "mlx5_core", NUMANode: "0", IOMMUGroup: strconv.Itoa(c.group + port)},
			SRIOV{TotalVFs: 8, Offset: map[int]int{0: 2, 1: 9}[port], Stride: 1, VFDevice: "101e"}, nd)
		h.mlx5(addr, rdma, c.names[port], macGUID(mac))
		return addr
	}
	cx2 := cx{bus: "03", parent: "pci0000:00/0000:00:03.1", dev: "101d", sub: "0016", macs: "0c:42:a1:d5:03",
		names: [2]string{"ens3f0np0", "ens3f1np1"}, group: 10}
	cx1 := cx{bus: "41", parent: "pci0000:40/0000:40:01.1", dev: "101d", sub: "0016", macs: "0c:42:a1:d5:41",
		names: [2]string{"ens1f0np0", "ens1f1np1"}, group: 20, swid: "6141d5ffffa1420c"}
	bf3 := cx{bus: "c1", parent: "pci0000:c0/0000:c0:01.1", dev: "a2dc", macs: "a0:88:c2:3b:c1",
		names: [2]string{"enp193s0f0np0", "enp193s0f1np1"}, group: 40}
	c2p0, c2p1 := mlx(cx2, 0, 0), mlx(cx2, 1, 1)
	c1p0 := mlx(cx1, 0, 2)
	mlx(cx1, 1, 3)
	// Its representors, listed after the uplink in net/ (their names sort after it too).
	for i := 0; i < 4; i++ {
		h.netdev(c1p0, Netdev{Name: fmt.Sprintf("ens1f0npf0vf%d", i), MAC: fmt.Sprintf("d2:5e:41:00:00:%02x", i), Carrier: "1",
			PhysPortName: fmt.Sprintf("pf0vf%d", i), PhysSwitchID: cx1.swid})
	}
	b0, b1 := mlx(bf3, 0, 4), mlx(bf3, 1, 5)

	// E810-XXV for the DPDK data path.
	for i, off := range []int{8, 135} {
		h.pf(Function{Addr: fmt.Sprintf("0000:81:00.%d", i), Parent: "pci0000:80/0000:80:01.1", Vendor: "8086", Device: "159b",
			SubDevice: "0003", Class: "0x020000", Revision: "0x02", Driver: "ice", NUMANode: "0", IOMMUGroup: strconv.Itoa(50 + i)},
			SRIOV{TotalVFs: 128, Offset: off, Stride: 1, VFDevice: "1889"},
			Netdev{Name: fmt.Sprintf("enp129s0f%d", i), MAC: fmt.Sprintf("b4:83:51:00:81:%02x", i), Carrier: "1",
				PhysPortName: fmt.Sprintf("p%d", i), PhysSwitchID: "0081005183b4ffff"})
		h.vf(fmt.Sprintf("0000:81:00.%d", i), 0, "vfio-pci", 52+2*i, Netdev{})
		h.vf(fmt.Sprintf("0000:81:00.%d", i), 1, "vfio-pci", 53+2*i, Netdev{})
	}

	n := 6
	roce := func(pf string, i, group int, name string) {
		addr := h.vf(pf, i, "mlx5_core", group, Netdev{Name: name})
		h.mlx5(addr, n, name, "")
		n++
	}
	for i := 0; i < 3; i++ {
		roce(c2p0, i, 60+i, fmt.Sprintf("ens3f0v%d", i))
	}
	roce(c2p1, 0, 63, "ens3f1v0")
	for i := 0; i < 4; i++ {
		roce(c1p0, i, 64+i, fmt.Sprintf("ens1f0v%d", i))
	}
	roce(b0, 0, 70, "enp193s0f0v0")
	roce(b0, 1, 71, "enp193s0f0v1")
	roce(b1, 0, 72, "enp193s0f1v0")
	return h.err
}

// ec2ENA: an AWS EC2 (Nitro) guest running a DPDK UPF: ens5 on the ENA device at 00:05.0 carries the
// host's traffic, the ENA devices at 00:06.0 and 00:07.0 are bound to vfio-pci in no-IOMMU mode, the
// one at 00:08.0 was unbound; no SR-IOV (ENA functions are VFs of the hypervisor, with no physfn
// here), no NUMA information.
func ec2ENA(t *Tree) error {
	h := &host{t: t}
	h.fn(Function{Addr: "0000:00:00.0", Vendor: "8086", Device: "1237", SubVendor: "1af4", SubDevice: "1100", Class: "0x060000",
		Revision: "0x02", NUMANode: "-1"})
	h.fn(Function{Addr: "0000:00:01.0", Vendor: "8086", Device: "7000", SubVendor: "1af4", SubDevice: "1100", Class: "0x060100",
		NUMANode: "-1"})
	h.fn(Function{Addr: "0000:00:04.0", Vendor: "1d0f", Device: "8061", Class: "0x010802", Driver: "nvme", NUMANode: "-1"})
	ena := func(slot int, drv string, group string) string {
		addr := fmt.Sprintf("0000:00:%02x.0", slot)
		h.fn(Function{Addr: addr, Vendor: "1d0f", Device: "ec20", Class: "0x020000", Driver: drv, NUMANode: "-1",
			IOMMUGroup: group, NoIOMMU: group != ""})
		return addr
	}
	h.netdev(ena(5, "ena", ""), Netdev{Name: "ens5", MAC: "0a:3c:5d:11:8e:4f", MTU: 9001, Carrier: "1"})
	ena(6, "vfio-pci", "0")
	ena(7, "vfio-pci", "1")
	ena(8, "", "")
	return h.err
}

// macGUID is the node GUID mlx5 firmware gives a port of this MAC: 24:8a:07:b4:03:20 ->
// 248a:0703:00b4:0320.
func macGUID(mac string) string {
	var b [6]int
	if _, err := fmt.Sscanf(mac, "%02x:%02x:%02x:%02x:%02x:%02x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]); err != nil {
		return ""
	}
	return fmt.Sprintf("%02x%02x:%02x03:00%02x:%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}
