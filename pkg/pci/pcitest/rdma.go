package pcitest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RDMA link layers, as ports/<p>/link_layer says them.
const (
	LinkLayerEthernet   = "Ethernet"   // RoCE
	LinkLayerInfiniBand = "InfiniBand" // IB and IPoIB
)

// Character device majors and fixed minor ranges of the RDMA user-space interfaces (kernel
// uverbs_main.c and user_mad.c): uverbsN is 231:(192+N) for N < 32, umadN 231:N and issmN 231:(64+N)
// for N < 64. Past those the kernel takes a dynamic major, which fixtures do not model.
const (
	RDMACharMajor   = 231
	uverbsBaseMinor = 192
	uverbsFixed     = 32
	umadFixed       = 64
	issmBaseMinor   = 64
)

// RDMA is one RDMA (verbs) device of a PCI function with its single port, as ib_core, ib_uverbs and
// ib_umad write it for an mlx5 function: ConnectX-4 to -8, PF or VF alike, each with its own device.
type RDMA struct {
	Name      string // "mlx5_2"; names are free (udev may rename to rocep134s0f0 or ibp75s0)
	Verbs     int    // N of uverbsN: the device's index among verbs devices
	MAD       int    // N of umadN and issmN: the port's index among MAD ports
	LinkLayer string // LinkLayerEthernet (RoCE) or LinkLayerInfiniBand; "" = Ethernet
	PKey      string // ports/1/pkeys/0 as the kernel prints it ("0xffff"); "" = "0xffff"
	NodeGUID  string // node_guid, four groups of four hex digits ("b859:9f03:00a1:b2c3"); "" = all zero (a VF nobody gave a GUID)
	Netdev    string // RoCE: the netdev of GID 0 (ports/1/gid_attrs/ndevs/0); "" = no netdev (IB ports have none)
	FWVer     string // fw_ver; "" = "22.36.1010"
	HCAType   string // hca_type; "" = "MT" + the function's PCI device ID in decimal (mlx5's rule: 101e -> MT4126)
	PortDown  bool   // ports/1/state "1: DOWN" and phys_state "3: Disabled" instead of ACTIVE / LinkUp
}

// AddRDMA writes the RDMA device r of the function at addr where the kernel puts it: a real folder
// <function>/infiniband/<name>/ (rdmamap, and so sriov-dp's isRdma, count only folders there), the
// uverbsN folder under <function>/infiniband_verbs/ and the umadN and issmN folders under
// <function>/infiniband_mad/ (their parent is the PCI function too), the class links
// class/infiniband/<name>, class/infiniband_verbs/uverbsN and class/infiniband_mad/{umadN,issmN}
// pointing into them, and the classes' plain abi_version files.
func (t *Tree) AddRDMA(addr string, r RDMA) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("pcitest: RDMA device of %s: %w", addr, err)
	}
	fdir, err := t.FuncDir(addr)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(t.Root, fdir) // devices/pci0000:85/0000:85:00.0/0000:86:00.2
	if err != nil {
		return fmt.Errorf("pcitest: RDMA device of %s: %w", addr, err)
	}
	verbs := "uverbs" + strconv.Itoa(r.Verbs)
	umad, issm := "umad"+strconv.Itoa(r.MAD), "issm"+strconv.Itoa(r.MAD)
	for _, taken := range []string{"class/infiniband/" + r.Name, "class/infiniband_verbs/" + verbs,
		"class/infiniband_mad/" + umad} {
		if _, err := os.Lstat(filepath.Join(t.Root, taken)); err == nil {
			return fmt.Errorf("pcitest: RDMA device of %s: %s exists already", addr, taken)
		}
	}
	hca := r.HCAType
	if hca == "" {
		dev, err := os.ReadFile(filepath.Join(fdir, "device"))
		if err != nil {
			return fmt.Errorf("pcitest: RDMA device of %s: %w", addr, err)
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(dev)), "0x"), 16, 16)
		if err != nil {
			return fmt.Errorf("pcitest: RDMA device of %s: device ID %q: %w", addr, dev, err)
		}
		hca = "MT" + strconv.FormatUint(id, 10)
	}
	guid := or(r.NodeGUID, "0000:0000:0000:0000")
	state, phys := "4: ACTIVE", "5: LinkUp"
	if r.PortDown {
		state, phys = "1: DOWN", "3: Disabled"
	}
	port := map[string]string{
		"state":      state,
		"phys_state": phys,
		"link_layer": or(r.LinkLayer, LinkLayerEthernet),
	}
	ib := filepath.Join(fdir, "infiniband", r.Name)
	class := map[string]string{ // folder -> class, for the subsystem links
		ib: "infiniband",
		filepath.Join(fdir, "infiniband_verbs", verbs): "infiniband_verbs",
		filepath.Join(fdir, "infiniband_mad", umad):    "infiniband_mad",
		filepath.Join(fdir, "infiniband_mad", issm):    "infiniband_mad",
	}
	files := map[string]map[string]string{
		ib: {
			"node_type":      "1: CA",
			"node_guid":      guid,
			"sys_image_guid": guid,
			"fw_ver":         or(r.FWVer, "22.36.1010"),
			"hca_type":       hca,
		},
		filepath.Join(ib, "ports/1"):                   port,
		filepath.Join(ib, "ports/1/pkeys"):             {"0": or(r.PKey, "0xffff")},
		filepath.Join(fdir, "infiniband_verbs", verbs): {"ibdev": r.Name, "abi_version": "1", "dev": devNum(uverbsBaseMinor + r.Verbs)},
		filepath.Join(fdir, "infiniband_mad", umad):    {"ibdev": r.Name, "port": "1", "dev": devNum(r.MAD)},
		filepath.Join(fdir, "infiniband_mad", issm):    {"ibdev": r.Name, "port": "1", "dev": devNum(issmBaseMinor + r.MAD)},
	}
	if r.Netdev != "" {
		files[filepath.Join(ib, "ports/1/gid_attrs/ndevs")] = map[string]string{"0": r.Netdev}
		files[filepath.Join(ib, "ports/1/gid_attrs/types")] = map[string]string{"0": "IB/RoCE v1"}
	}
	for dir, fs := range files {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("pcitest: RDMA device of %s: %w", addr, err)
		}
		if err := writeFiles(dir, fs); err != nil {
			return fmt.Errorf("pcitest: RDMA device of %s: %w", addr, err)
		}
	}
	for dir, cls := range class {
		// <function>/<class folder>/<name>/device -> ../../../<bdf>, subsystem -> .../class/<class>
		if err := link("../../../"+addr, filepath.Join(dir, "device")); err != nil {
			return err
		}
		up := upTo(filepath.Join(rel, filepath.Base(filepath.Dir(dir)), filepath.Base(dir)))
		if err := link(filepath.Join(up, "class", cls), filepath.Join(dir, "subsystem")); err != nil {
			return err
		}
		name := filepath.Base(dir)
		if err := os.MkdirAll(filepath.Join(t.Root, "class", cls), 0o755); err != nil {
			return fmt.Errorf("pcitest: RDMA class %s: %w", cls, err)
		}
		// class/<class>/<name> -> ../../devices/.../<bdf>/<class folder>/<name>
		target := filepath.Join("../..", rel, filepath.Base(filepath.Dir(dir)), name)
		if err := link(target, filepath.Join(t.Root, "class", cls, name)); err != nil {
			return err
		}
	}
	return writeFiles(t.Root, map[string]string{
		"class/infiniband_verbs/abi_version": "6",
		"class/infiniband_mad/abi_version":   "5",
	})
}

func (r RDMA) check() error {
	switch {
	case r.Name == "" || strings.ContainsAny(r.Name, "/ \n"):
		return fmt.Errorf("name %q", r.Name)
	case r.Verbs < 0 || r.Verbs >= uverbsFixed:
		return fmt.Errorf("uverbs%d: only uverbs0..%d have fixed device numbers", r.Verbs, uverbsFixed-1)
	case r.MAD < 0 || r.MAD >= umadFixed:
		return fmt.Errorf("umad%d: only umad0..%d have fixed device numbers", r.MAD, umadFixed-1)
	case r.LinkLayer != "" && r.LinkLayer != LinkLayerEthernet && r.LinkLayer != LinkLayerInfiniBand:
		return fmt.Errorf("link layer %q, want %q or %q", r.LinkLayer, LinkLayerEthernet, LinkLayerInfiniBand)
	case r.LinkLayer == LinkLayerInfiniBand && r.Netdev != "":
		return fmt.Errorf("an InfiniBand port has no GID netdev (IPoIB is found by GUID), got %q", r.Netdev)
	}
	if r.NodeGUID != "" {
		if _, err := guidBytes(r.NodeGUID); err != nil {
			return err
		}
	}
	return nil
}

// devNum is the dev file of an RDMA char device: "231:<minor>".
func devNum(minor int) string { return strconv.Itoa(RDMACharMajor) + ":" + strconv.Itoa(minor) }

// guidBytes parses a node GUID "b859:9f03:00a1:b2c3" into its 8 bytes.
func guidBytes(guid string) ([]byte, error) {
	groups := strings.Split(guid, ":")
	if len(groups) != 4 {
		return nil, fmt.Errorf("node GUID %q: want four groups of four hex digits", guid)
	}
	out := make([]byte, 0, 8)
	for _, g := range groups {
		v, err := strconv.ParseUint(g, 16, 16)
		if err != nil || len(g) != 4 {
			return nil, fmt.Errorf("node GUID %q: group %q is not four hex digits", guid, g)
		}
		out = append(out, byte(v>>8), byte(v))
	}
	return out, nil
}

// IPoIBMAC is the 20-byte hardware address of an IPoIB netdev on the port with this GUID: the QP
// number with its flags (00:00:10:87 for the first interface of a port; a VF shows 00:00:01:27 and
// the like), the fe80:: subnet prefix, then the port GUID. rdmamap maps IPoIB netdevs to RDMA devices
// by comparing the last 8 bytes with node_guid.
func IPoIBMAC(qpn, guid string) (string, error) {
	b, err := guidBytes(guid)
	if err != nil {
		return "", err
	}
	parts := []string{}
	for _, x := range b {
		parts = append(parts, fmt.Sprintf("%02x", x))
	}
	if len(strings.Split(qpn, ":")) != 4 {
		return "", fmt.Errorf("pcitest: IPoIB QPN %q: want 4 bytes like 00:00:10:87", qpn)
	}
	return qpn + ":fe:80:00:00:00:00:00:00:" + strings.Join(parts, ":"), nil
}

// AddIPoIB writes an IPoIB netdev (ARPHRD_INFINIBAND, 20-byte address derived from the GUID of r,
// MTU 4092 unless n says otherwise) and the InfiniBand RDMA device r it runs on, for the function at
// addr, whose PCI class should be 0x020700 (Infiniband controller). qpn is the first 4 bytes of the
// address ("00:00:10:87").
func (t *Tree) AddIPoIB(addr, qpn string, n Netdev, r RDMA) error {
	if r.LinkLayer == "" {
		r.LinkLayer = LinkLayerInfiniBand
	}
	if r.LinkLayer != LinkLayerInfiniBand {
		return fmt.Errorf("pcitest: IPoIB %s of %s: link layer %q", n.Name, addr, r.LinkLayer)
	}
	mac, err := IPoIBMAC(qpn, or(r.NodeGUID, "0000:0000:0000:0000"))
	if err != nil {
		return err
	}
	n.Type = 32
	n.MAC = mac
	if n.MTU == 0 {
		n.MTU = 4092
	}
	if err := t.AddNetdev(addr, n); err != nil {
		return err
	}
	return t.AddRDMA(addr, r)
}
