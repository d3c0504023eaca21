package pcitest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// read returns a sysfs file's content without its newline; "" when it cannot be read.
func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// rdmaDevicesForPci is what rdmamap.GetRdmaDevicesForPcidev returns: the folders (not links) under
// bus/pci/devices/<bdf>/infiniband, in name order.
func rdmaDevicesForPci(root, addr string) []string {
	entries, err := os.ReadDir(filepath.Join(root, "bus/pci/devices", addr, "infiniband"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// rdmaCharDevices is what rdmamap.GetRdmaCharDevices returns for an RDMA device, less rdma_cm: the
// issm, umad and uverbs class entries whose ibdev names it.
func rdmaCharDevices(t *testing.T, root, ibdev string) []string {
	t.Helper()
	var out []string
	for _, c := range []struct{ dir, prefix string }{
		{"class/infiniband_mad", "issm"}, {"class/infiniband_mad", "umad"}, {"class/infiniband_verbs", "uverbs"},
	} {
		entries, err := os.ReadDir(filepath.Join(root, c.dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.Contains(e.Name(), c.prefix) {
				continue // abi_version
			}
			if read(t, filepath.Join(root, c.dir, e.Name(), "ibdev")) == ibdev {
				out = append(out, "/dev/infiniband/"+e.Name())
			}
		}
	}
	return out
}

func rdmaTree(t *testing.T) *Tree {
	t.Helper()
	tr, err := NewTree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const pf = "0000:86:00.0"
	if err := tr.AddPF(Function{Addr: pf, Parent: "pci0000:85/0000:85:00.0", Vendor: "15b3", Device: "101d",
		Class: "0x020000", Driver: "mlx5_core"}, SRIOV{TotalVFs: 8, Offset: 2, Stride: 1, VFDevice: "101e"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddVF(pf, 0, Function{Driver: "mlx5_core"}); err != nil {
		t.Fatal(err)
	}
	return tr
}

// A RoCE VF's RDMA device is where rdmamap, and so sriov-dp's isRdma, finds it: a real folder in the
// function, class links into it, char devices with the kernel's numbers.
func TestAddRDMA(t *testing.T) {
	tr := rdmaTree(t)
	const vf = "0000:86:00.2"
	if err := tr.AddNetdev(vf, Netdev{Name: "enp134s0f0v0", MAC: "3e:81:a7:15:60:10"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddRDMA(vf, RDMA{Name: "mlx5_2", Verbs: 2, MAD: 2, Netdev: "enp134s0f0v0"}); err != nil {
		t.Fatal(err)
	}
	if got := rdmaDevicesForPci(tr.Root, vf); !slices.Equal(got, []string{"mlx5_2"}) {
		t.Errorf("RDMA devices of %s = %v, want [mlx5_2]", vf, got)
	}
	if got := rdmaDevicesForPci(tr.Root, "0000:86:00.0"); got != nil {
		t.Errorf("RDMA devices of the PF = %v, want none", got)
	}
	want := []string{"/dev/infiniband/issm2", "/dev/infiniband/umad2", "/dev/infiniband/uverbs2"}
	if got := rdmaCharDevices(t, tr.Root, "mlx5_2"); !slices.Equal(got, want) {
		t.Errorf("char devices of mlx5_2 = %v, want %v", got, want)
	}
	fdir, err := tr.FuncDir(vf)
	if err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"class/infiniband/mlx5_2":                                 filepath.Join(fdir, "infiniband/mlx5_2"),
		"class/infiniband_verbs/uverbs2":                          filepath.Join(fdir, "infiniband_verbs/uverbs2"),
		"class/infiniband_mad/umad2":                              filepath.Join(fdir, "infiniband_mad/umad2"),
		"class/infiniband_mad/issm2":                              filepath.Join(fdir, "infiniband_mad/issm2"),
		filepath.Join(fdir, "infiniband/mlx5_2/device"):           fdir,
		filepath.Join(fdir, "infiniband_mad/issm2/device"):        fdir,
		filepath.Join(fdir, "infiniband/mlx5_2/subsystem"):        filepath.Join(tr.Root, "class/infiniband"),
		filepath.Join(fdir, "infiniband_verbs/uverbs2/subsystem"): filepath.Join(tr.Root, "class/infiniband_verbs"),
	} {
		if !filepath.IsAbs(link) {
			link = filepath.Join(tr.Root, link)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is not a link (%v)", link, err)
			continue
		}
		got, err := filepath.EvalSymlinks(link)
		if err != nil {
			t.Errorf("%s: %v", link, err)
			continue
		}
		if wantT, _ := filepath.EvalSymlinks(target); got != wantT {
			t.Errorf("%s resolves to %s, want %s", link, got, wantT)
		}
	}
	for file, want := range map[string]string{
		"class/infiniband/mlx5_2/node_type":                         "1: CA",
		"class/infiniband/mlx5_2/node_guid":                         "0000:0000:0000:0000",
		"class/infiniband/mlx5_2/hca_type":                          "MT4126", // 0x101e
		"class/infiniband/mlx5_2/fw_ver":                            "22.36.1010",
		"class/infiniband/mlx5_2/ports/1/state":                     "4: ACTIVE",
		"class/infiniband/mlx5_2/ports/1/link_layer":                "Ethernet",
		"class/infiniband/mlx5_2/ports/1/pkeys/0":                   "0xffff",
		"class/infiniband/mlx5_2/ports/1/gid_attrs/ndevs/0":         "enp134s0f0v0",
		"class/infiniband_verbs/abi_version":                        "6",
		"class/infiniband_mad/abi_version":                          "5",
		"class/infiniband_verbs/uverbs2/dev":                        "231:194",
		"class/infiniband_verbs/uverbs2/abi_version":                "1",
		"class/infiniband_mad/umad2/dev":                            "231:2",
		"class/infiniband_mad/umad2/port":                           "1",
		"class/infiniband_mad/issm2/dev":                            "231:66",
		"class/infiniband_mad/issm2/ibdev":                          "mlx5_2",
		"bus/pci/devices/" + vf + "/infiniband_verbs/uverbs2/ibdev": "mlx5_2",
	} {
		if got := read(t, filepath.Join(tr.Root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	for _, f := range []string{"class/infiniband_verbs/abi_version", "class/infiniband_mad/abi_version"} {
		if fi, err := os.Lstat(filepath.Join(tr.Root, f)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s is not a plain file (%v)", f, err)
		}
	}
}

// Every VF has its own RDMA device; the switchdev uplink's is the PF's own, with the uplink as the
// netdev of its port; a second device on the same function is listed too.
func TestAddRDMAPFAndVFs(t *testing.T) {
	tr := rdmaTree(t)
	const pf, vf = "0000:86:00.0", "0000:86:00.2"
	if err := tr.AddNetdev(pf, Netdev{Name: "ens2f0np0", PhysPortName: "p0", PhysSwitchID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddNetdev(pf, Netdev{Name: "ens2f0npf0vf0", PhysPortName: "pf0vf0", PhysSwitchID: "1"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		addr string
		r    RDMA
	}{
		{pf, RDMA{Name: "mlx5_0", Verbs: 0, MAD: 0, Netdev: "ens2f0np0", NodeGUID: "b8ce:f603:000b:7ea0", HCAType: "MT4125"}},
		{vf, RDMA{Name: "mlx5_2", Verbs: 2, MAD: 2}},
		{vf, RDMA{Name: "smi1", Verbs: 3, MAD: 3, PortDown: true}},
	} {
		if err := tr.AddRDMA(s.addr, s.r); err != nil {
			t.Fatal(err)
		}
	}
	if got := rdmaDevicesForPci(tr.Root, pf); !slices.Equal(got, []string{"mlx5_0"}) {
		t.Errorf("PF RDMA devices = %v", got)
	}
	if got := rdmaDevicesForPci(tr.Root, vf); !slices.Equal(got, []string{"mlx5_2", "smi1"}) {
		t.Errorf("VF RDMA devices = %v", got)
	}
	ib := filepath.Join(tr.Root, "class/infiniband")
	for file, want := range map[string]string{
		"mlx5_0/ports/1/gid_attrs/ndevs/0": "ens2f0np0",
		"mlx5_0/node_guid":                 "b8ce:f603:000b:7ea0",
		"mlx5_0/sys_image_guid":            "b8ce:f603:000b:7ea0",
		"mlx5_0/hca_type":                  "MT4125",
		"smi1/ports/1/state":               "1: DOWN",
		"smi1/ports/1/phys_state":          "3: Disabled",
	} {
		if got := read(t, filepath.Join(ib, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(ib, "mlx5_2/ports/1/gid_attrs")); !os.IsNotExist(err) {
		t.Errorf("a device without netdev has gid_attrs (%v)", err)
	}
}

// IPoIB: an Infiniband controller function, a type-32 netdev whose 20-byte address ends with the port
// GUID, an InfiniBand port without GID netdevs.
func TestAddIPoIB(t *testing.T) {
	tr, err := NewTree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const pf = "0000:4b:00.0"
	if err := tr.AddPF(Function{Addr: pf, Vendor: "15b3", Device: "101b", Class: "0x020700", Driver: "mlx5_core"},
		SRIOV{TotalVFs: 8, Offset: 1, Stride: 1, VFDevice: "101c"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddVF(pf, 0, Function{Driver: "mlx5_core"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddIPoIB(pf, "00:00:10:87", Netdev{Name: "ibp75s0"},
		RDMA{Name: "mlx5_6", Verbs: 6, MAD: 6, NodeGUID: "b859:9f03:00c3:4b00"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddIPoIB("0000:4b:00.1", "00:00:01:27", Netdev{Name: "ibp75s0v0", MTU: 2044},
		RDMA{Name: "mlx5_7", Verbs: 7, MAD: 7, PKey: "0x8001"}); err != nil {
		t.Fatal(err)
	}
	root := tr.Root
	for file, want := range map[string]string{
		"class/net/ibp75s0/type":                     "32",
		"class/net/ibp75s0/addr_len":                 "20",
		"class/net/ibp75s0/mtu":                      "4092",
		"class/net/ibp75s0/address":                  "00:00:10:87:fe:80:00:00:00:00:00:00:b8:59:9f:03:00:c3:4b:00",
		"class/net/ibp75s0v0/address":                "00:00:01:27:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
		"class/net/ibp75s0v0/mtu":                    "2044",
		"class/infiniband/mlx5_6/ports/1/link_layer": "InfiniBand",
		"class/infiniband/mlx5_7/ports/1/pkeys/0":    "0x8001",
		"class/infiniband/mlx5_7/hca_type":           "MT4124", // 0x101c
		"bus/pci/devices/0000:4b:00.1/class":         "0x020700",
	} {
		if got := read(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "class/infiniband/mlx5_6/ports/1/gid_attrs")); !os.IsNotExist(err) {
		t.Errorf("an InfiniBand port has gid_attrs (%v)", err)
	}
	if got := rdmaDevicesForPci(root, "0000:4b:00.1"); !slices.Equal(got, []string{"mlx5_7"}) {
		t.Errorf("VF RDMA devices = %v", got)
	}
}

func TestAddRDMAErrors(t *testing.T) {
	tr := rdmaTree(t)
	const vf = "0000:86:00.2"
	if err := tr.AddRDMA(vf, RDMA{Name: "mlx5_2", Verbs: 2, MAD: 2}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		addr string
		r    RDMA
	}{
		"no such function":       {"0000:99:00.0", RDMA{Name: "mlx5_9", Verbs: 9, MAD: 9}},
		"name taken":             {vf, RDMA{Name: "mlx5_2", Verbs: 5, MAD: 5}},
		"uverbs taken":           {vf, RDMA{Name: "mlx5_5", Verbs: 2, MAD: 5}},
		"umad taken":             {vf, RDMA{Name: "mlx5_5", Verbs: 5, MAD: 2}},
		"no name":                {vf, RDMA{Verbs: 5, MAD: 5}},
		"uverbs past fixed":      {vf, RDMA{Name: "mlx5_40", Verbs: 32, MAD: 5}},
		"umad past fixed":        {vf, RDMA{Name: "mlx5_40", Verbs: 5, MAD: 64}},
		"negative index":         {vf, RDMA{Name: "mlx5_40", Verbs: -1, MAD: 5}},
		"link layer":             {vf, RDMA{Name: "mlx5_5", Verbs: 5, MAD: 5, LinkLayer: "IB"}},
		"IB port with a netdev":  {vf, RDMA{Name: "mlx5_5", Verbs: 5, MAD: 5, LinkLayer: LinkLayerInfiniBand, Netdev: "ib0"}},
		"GUID":                   {vf, RDMA{Name: "mlx5_5", Verbs: 5, MAD: 5, NodeGUID: "b8:ce:f6:03:00:0b:7e:a0"}},
		"GUID group not 4 digit": {vf, RDMA{Name: "mlx5_5", Verbs: 5, MAD: 5, NodeGUID: "b8ce:f603:0b:7ea0"}},
	} {
		if err := tr.AddRDMA(tc.addr, tc.r); err == nil {
			t.Errorf("%s: AddRDMA(%s, %+v) accepted", name, tc.addr, tc.r)
		}
	}
	if err := tr.AddIPoIB(vf, "00:00:10:87", Netdev{Name: "ib0"}, RDMA{Name: "mlx5_6", Verbs: 6, MAD: 6, LinkLayer: LinkLayerEthernet}); err == nil {
		t.Error("AddIPoIB accepted an Ethernet port")
	}
	if err := tr.AddIPoIB(vf, "00:10:87", Netdev{Name: "ib0"}, RDMA{Name: "mlx5_6", Verbs: 6, MAD: 6}); err == nil {
		t.Error("AddIPoIB accepted a 3-byte QPN")
	}
}

func TestACPIIndex(t *testing.T) {
	tr, err := NewTree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.AddFunction(Function{Addr: "0000:19:00.0", Vendor: "8086", Device: "1572", Class: "0x020000",
		ACPIIndex: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddFunction(Function{Addr: "0000:3d:00.0", Vendor: "8086", Device: "1572", Class: "0x020000"}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(tr.Root, "bus/pci/devices/0000:19:00.0/acpi_index")); got != "1" {
		t.Errorf("acpi_index = %q, want 1", got)
	}
	if _, err := os.Stat(filepath.Join(tr.Root, "bus/pci/devices/0000:3d:00.0/acpi_index")); !os.IsNotExist(err) {
		t.Errorf("a function without ACPIIndex has an acpi_index file (%v)", err)
	}
}

// The corpus hosts hold RDMA devices only where real ones would be: on functions bound to mlx5_core,
// one per function, with uverbs and umad numbers that agree with the name, every class link resolving.
func TestHostsRDMA(t *testing.T) {
	for _, name := range []string{"mlx-rdma", "ovs-offload"} {
		t.Run(name, func(t *testing.T) {
			root, err := BuildFixture(name, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			devs, err := os.ReadDir(filepath.Join(root, "class/infiniband"))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, d := range devs {
				dir, err := filepath.EvalSymlinks(filepath.Join(root, "class/infiniband", d.Name()))
				if err != nil {
					t.Fatalf("%s: %v", d.Name(), err)
				}
				fn := filepath.Dir(filepath.Dir(dir))
				addr := filepath.Base(fn)
				if seen[addr] {
					t.Errorf("%s: a second RDMA device", addr)
				}
				seen[addr] = true
				if drv, err := os.Readlink(filepath.Join(fn, "driver")); err != nil || filepath.Base(drv) != "mlx5_core" {
					t.Errorf("%s on %s, bound to %q (%v)", d.Name(), addr, drv, err)
				}
				n := strings.TrimPrefix(d.Name(), "mlx5_")
				want := []string{"/dev/infiniband/issm" + n, "/dev/infiniband/umad" + n, "/dev/infiniband/uverbs" + n}
				if got := rdmaCharDevices(t, root, d.Name()); !slices.Equal(got, want) {
					t.Errorf("%s: char devices %v, want %v", d.Name(), got, want)
				}
			}
			if len(seen) < 10 {
				t.Errorf("only %d RDMA devices", len(seen))
			}
		})
	}
}
