// Package pcitest builds sysfs trees that copy the layout of real hosts' PCI network devices: functions
// under /sys/devices/pci<dom>:<bus>/..., /sys/bus/pci/devices/<bdf> symlinks into them, driver and
// iommu_group links, SR-IOV physfn/virtfnN links, netdevs with /sys/class/net symlinks. Tests and
// benchmarks of every package that reads sysfs use it; the named fixtures under testdata/sysfs are its
// output.
package pcitest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Tree is a sysfs tree under construction. Root is the sysfs folder itself ("<dir>/sys"), the value
// handed to pci.Scan.
type Tree struct {
	Root    string
	ifindex int
	pfs     map[string]*pfState
}

type pfState struct {
	fn     Function
	sriov  SRIOV
	numVFs int
}

// Function is one PCI function. Zero values pick the common case: subsystem IDs equal to the IDs,
// revision 0x00, no numa_node file, no IOMMU group, unbound.
type Function struct {
	Addr       string // "0000:3b:00.0"
	Parent     string // folder under devices/ ("pci0000:3a/0000:3a:00.0"); "" = the root bus "pci<dom>:<bus>"
	Vendor     string // 4 hex digits, no 0x
	Device     string
	SubVendor  string
	SubDevice  string
	Class      string // "0x020000"
	Revision   string // "0x02"
	Driver     string // "" = unbound
	NUMANode   string // file content ("0", "-1"); "" = no numa_node file
	IOMMUGroup string // "" = none
	NoIOMMU    bool   // the IOMMU group is a vfio-noiommu group (its name file says so)
	UIO        string // uio-bound: the uio device ("uio0"): <function>/uio/uio0 and /sys/class/uio/uio0
	ACPIIndex  string // acpi_index file content (firmware's onboard index, "1"); "" = no file
	NoModalias bool   // leave out modalias (a sysfs surprise some tools choke on)
	NoVendor   bool   // leave out the vendor file
}

// SRIOV is the SR-IOV capability of a PF.
type SRIOV struct {
	TotalVFs int
	Offset   int
	Stride   int
	VFDevice string // device ID of its VFs, 4 hex digits
}

// Netdev is one network interface of a function.
type Netdev struct {
	Name         string
	Sub          string // nesting folder inside the function ("virtio0"); "" = directly in net/
	Type         int    // ARPHRD: 1 ether, 32 infiniband; 0 = 1
	MAC          string
	MTU          int    // 0 = 1500
	OperState    string // "" = "up"
	Carrier      string // "1", "0"; "" = no carrier file (reading it fails, as for an admin-down link)
	DevPort      int
	PhysPortName string // "" = no file (drivers without it answer EOPNOTSUPP)
	PhysSwitchID string // "" = no file
}

// NewTree starts an empty sysfs tree at dir/sys.
func NewTree(dir string) (*Tree, error) {
	t := &Tree{Root: filepath.Join(dir, "sys"), pfs: map[string]*pfState{}}
	// Folders that may stay empty (class/net, kernel/iommu_groups) are made on first use: git keeps no
	// empty folder, so the committed trees could not hold them.
	for _, d := range []string{"bus/pci/devices", "devices"} {
		if err := os.MkdirAll(filepath.Join(t.Root, d), 0o755); err != nil {
			return nil, fmt.Errorf("pcitest: creating %s: %w", d, err)
		}
	}
	return t, nil
}

// FuncDir is the real folder of a function, under devices/.
func (t *Tree) FuncDir(addr string) (string, error) {
	target, err := os.Readlink(filepath.Join(t.Root, "bus/pci/devices", addr))
	if err != nil {
		return "", fmt.Errorf("pcitest: function %s: %w", addr, err)
	}
	return filepath.Join(t.Root, "bus/pci/devices", target), nil
}

// AddFunction writes a PCI function: its folder with the identity files, the bus/pci/devices link,
// and the driver and iommu_group links with their back links.
func (t *Tree) AddFunction(f Function) error {
	bus, err := busOf(f.Addr)
	if err != nil {
		return err
	}
	parent := f.Parent
	if parent == "" {
		parent = "pci" + bus
	}
	rel := filepath.Join("devices", parent, f.Addr) // relative to Root
	dir := filepath.Join(t.Root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pcitest: function %s: %w", f.Addr, err)
	}
	sv, sd := or(f.SubVendor, f.Vendor), or(f.SubDevice, f.Device)
	files := map[string]string{
		"device":           "0x" + f.Device,
		"subsystem_vendor": "0x" + sv,
		"subsystem_device": "0x" + sd,
		"class":            f.Class,
		"revision":         or(f.Revision, "0x00"),
	}
	if !f.NoVendor {
		files["vendor"] = "0x" + f.Vendor
	}
	if !f.NoModalias {
		files["modalias"] = modalias(f.Vendor, f.Device, sv, sd, f.Class)
	}
	if f.NUMANode != "" {
		files["numa_node"] = f.NUMANode
	}
	if f.ACPIIndex != "" {
		files["acpi_index"] = f.ACPIIndex
	}
	if err := writeFiles(dir, files); err != nil {
		return fmt.Errorf("pcitest: function %s: %w", f.Addr, err)
	}
	// bus/pci/devices/<bdf> -> ../../../devices/...
	if err := link(filepath.Join("../../..", rel), filepath.Join(t.Root, "bus/pci/devices", f.Addr)); err != nil {
		return err
	}
	up := upTo(rel) // from the function folder back to Root
	if f.Driver != "" {
		drv := filepath.Join(t.Root, "bus/pci/drivers", f.Driver)
		if err := os.MkdirAll(drv, 0o755); err != nil {
			return fmt.Errorf("pcitest: driver %s: %w", f.Driver, err)
		}
		if err := link(filepath.Join(up, "bus/pci/drivers", f.Driver), filepath.Join(dir, "driver")); err != nil {
			return err
		}
		if err := link(filepath.Join("../../../..", rel), filepath.Join(drv, f.Addr)); err != nil {
			return err
		}
	}
	if f.UIO != "" {
		if err := t.addUIO(dir, rel, f); err != nil {
			return err
		}
	}
	if f.IOMMUGroup != "" {
		grp := filepath.Join(t.Root, "kernel/iommu_groups", f.IOMMUGroup)
		if err := os.MkdirAll(filepath.Join(grp, "devices"), 0o755); err != nil {
			return fmt.Errorf("pcitest: iommu group %s: %w", f.IOMMUGroup, err)
		}
		if err := writeFiles(grp, map[string]string{"type": "DMA"}); err != nil {
			return err
		}
		if f.NoIOMMU {
			if err := writeFiles(grp, map[string]string{"name": "vfio-noiommu"}); err != nil {
				return err
			}
		}
		if err := link(filepath.Join(up, "kernel/iommu_groups", f.IOMMUGroup), filepath.Join(dir, "iommu_group")); err != nil {
			return err
		}
		if err := link(filepath.Join("../../../..", rel), filepath.Join(grp, "devices", f.Addr)); err != nil {
			return err
		}
	}
	return nil
}

// addUIO writes the uio device of a uio-bound function as the kernel's uio core does:
// <function>/uio/uioN/{name,dev,version,device}, and /sys/class/uio/uioN linking to it.
func (t *Tree) addUIO(dir, rel string, f Function) error {
	n, err := strconv.Atoi(strings.TrimPrefix(f.UIO, "uio"))
	if err != nil || !strings.HasPrefix(f.UIO, "uio") {
		return fmt.Errorf("pcitest: function %s: uio device %q is not uioN", f.Addr, f.UIO)
	}
	udir := filepath.Join(dir, "uio", f.UIO)
	if err := os.MkdirAll(udir, 0o755); err != nil {
		return fmt.Errorf("pcitest: function %s: %w", f.Addr, err)
	}
	if err := writeFiles(udir, map[string]string{"name": f.Driver, "dev": "243:" + strconv.Itoa(n), "version": "0.01"}); err != nil {
		return fmt.Errorf("pcitest: function %s: %w", f.Addr, err)
	}
	if err := link("../../../"+f.Addr, filepath.Join(udir, "device")); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(t.Root, "class/uio"), 0o755); err != nil {
		return fmt.Errorf("pcitest: uio class: %w", err)
	}
	return link(filepath.Join("../..", rel, "uio", f.UIO), filepath.Join(t.Root, "class/uio", f.UIO))
}

// AddPF writes a function with the SR-IOV capability and no VFs enabled yet (sriov_numvfs 0).
func (t *Tree) AddPF(f Function, s SRIOV) error {
	if err := t.AddFunction(f); err != nil {
		return err
	}
	dir, err := t.FuncDir(f.Addr)
	if err != nil {
		return err
	}
	t.pfs[f.Addr] = &pfState{fn: f, sriov: s}
	return writeFiles(dir, map[string]string{
		"sriov_totalvfs":  strconv.Itoa(s.TotalVFs),
		"sriov_numvfs":    "0",
		"sriov_offset":    strconv.Itoa(s.Offset),
		"sriov_stride":    strconv.Itoa(s.Stride),
		"sriov_vf_device": s.VFDevice,
	})
}

// VFAddr is the address the kernel gives VF index of the PF: routing ID = PF + offset + index*stride.
func (t *Tree) VFAddr(pf string, index int) (string, error) {
	st, ok := t.pfs[pf]
	if !ok {
		return "", fmt.Errorf("pcitest: %s is not a PF of this tree", pf)
	}
	return vfAddr(pf, st.sriov.Offset+index*st.sriov.Stride)
}

// AddVF writes VF index of PF pf next to it: physfn and virtfn<index> links, sriov_numvfs raised to
// cover it. f.Addr "" = the address the kernel would give it; Vendor, Device default to the PF's
// vendor and the VF device ID, Parent and NUMANode to the PF's.
func (t *Tree) AddVF(pf string, index int, f Function) error {
	st, ok := t.pfs[pf]
	if !ok {
		return fmt.Errorf("pcitest: %s is not a PF of this tree", pf)
	}
	if index >= st.sriov.TotalVFs {
		return fmt.Errorf("pcitest: VF %d of %s: only %d VFs", index, pf, st.sriov.TotalVFs)
	}
	if f.Addr == "" {
		a, err := t.VFAddr(pf, index)
		if err != nil {
			return err
		}
		f.Addr = a
	}
	f.Vendor = or(f.Vendor, st.fn.Vendor)
	f.Device = or(f.Device, st.sriov.VFDevice)
	f.Class = or(f.Class, st.fn.Class)
	f.Parent = or(f.Parent, st.fn.Parent)
	f.NUMANode = or(f.NUMANode, st.fn.NUMANode)
	if err := t.AddFunction(f); err != nil {
		return err
	}
	vfDir, err := t.FuncDir(f.Addr)
	if err != nil {
		return err
	}
	pfDir, err := t.FuncDir(pf)
	if err != nil {
		return err
	}
	// Real links go through the common parent: physfn -> ../0000:3b:00.0, virtfn0 -> ../0000:3b:01.0.
	if err := link("../"+pf, filepath.Join(vfDir, "physfn")); err != nil {
		return err
	}
	if err := link("../"+f.Addr, filepath.Join(pfDir, "virtfn"+strconv.Itoa(index))); err != nil {
		return err
	}
	if index+1 > st.numVFs {
		st.numVFs = index + 1
		return writeFiles(pfDir, map[string]string{"sriov_numvfs": strconv.Itoa(st.numVFs)})
	}
	return nil
}

// AddNetdev writes a netdev of the function at addr and its /sys/class/net link.
func (t *Tree) AddNetdev(addr string, n Netdev) error {
	fdir, err := t.FuncDir(addr)
	if err != nil {
		return err
	}
	base := fdir
	if n.Sub != "" {
		base = filepath.Join(fdir, n.Sub)
	}
	dir := filepath.Join(base, "net", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pcitest: netdev %s of %s: %w", n.Name, addr, err)
	}
	if strings.HasPrefix(n.Sub, "virtio") {
		// The virtio device in between has its own device/vendor files; they are not the PCI IDs.
		if err := writeFiles(base, map[string]string{"device": "0x0001", "vendor": "0x1af4",
			"modalias": "virtio:d00000001v00001AF4", "status": "0x0000000f"}); err != nil {
			return fmt.Errorf("pcitest: %s of %s: %w", n.Sub, addr, err)
		}
	}
	t.ifindex++
	typ := n.Type
	if typ == 0 {
		typ = 1
	}
	mtu := n.MTU
	if mtu == 0 {
		mtu = 1500
	}
	files := map[string]string{
		"address":   n.MAC,
		"type":      strconv.Itoa(typ),
		"mtu":       strconv.Itoa(mtu),
		"operstate": or(n.OperState, "up"),
		"ifindex":   strconv.Itoa(t.ifindex),
		"iflink":    strconv.Itoa(t.ifindex),
		"dev_port":  strconv.Itoa(n.DevPort),
		"addr_len":  "6",
	}
	if typ == 32 {
		files["addr_len"] = "20"
	}
	if n.Carrier != "" {
		files["carrier"] = n.Carrier
	}
	if n.PhysPortName != "" {
		files["phys_port_name"] = n.PhysPortName
	}
	if n.PhysSwitchID != "" {
		files["phys_switch_id"] = n.PhysSwitchID
	}
	if err := writeFiles(dir, files); err != nil {
		return fmt.Errorf("pcitest: netdev %s of %s: %w", n.Name, addr, err)
	}
	if err := os.MkdirAll(filepath.Join(t.Root, "class/net"), 0o755); err != nil {
		return fmt.Errorf("pcitest: netdev %s: %w", n.Name, err)
	}
	rel, err := filepath.Rel(filepath.Join(t.Root, "class/net"), dir)
	if err != nil {
		return fmt.Errorf("pcitest: netdev %s: %w", n.Name, err)
	}
	if err := link(rel, filepath.Join(t.Root, "class/net", n.Name)); err != nil {
		return err
	}
	// net/<if>/device -> ../../../0000:3b:00.0 (or ../../../virtio0 for a nested netdev)
	return link("../../../"+filepath.Base(base), filepath.Join(dir, "device"))
}

// Generate writes a tree of pfs Intel E810 PFs with vfsPerPF iavf VFs each, every function with a
// netdev, on its own root bus, and returns its sysfs root. It is the tree of BenchmarkScan and of the
// `discover` wall-time measurement: 8 PFs x 128 VFs = 1,032 PCI functions.
func Generate(dir string, pfs, vfsPerPF int) (string, error) {
	t, err := NewTree(dir)
	if err != nil {
		return "", err
	}
	if err := GenerateInto(t, pfs, vfsPerPF); err != nil {
		return "", err
	}
	return t.Root, nil
}

// GenerateInto writes Generate's PFs and VFs into a tree.
func GenerateInto(t *Tree, pfs, vfsPerPF int) error {
	if vfsPerPF > 248 {
		return fmt.Errorf("pcitest: %d VFs per PF: at most 248 fit one bus after offset 8", vfsPerPF)
	}
	for p := 0; p < pfs; p++ {
		bus := 0x10 + p
		pf := fmt.Sprintf("0000:%02x:00.0", bus)
		if err := t.AddPF(Function{
			Addr: pf, Vendor: "8086", Device: "159b", SubDevice: "0003", Class: "0x020000",
			Revision: "0x02", Driver: "ice", NUMANode: strconv.Itoa(p % 2), IOMMUGroup: strconv.Itoa(p),
		}, SRIOV{TotalVFs: max(vfsPerPF, 1), Offset: 8, Stride: 1, VFDevice: "1889"}); err != nil {
			return err
		}
		pfName := fmt.Sprintf("ens%df0", p+1)
		if err := t.AddNetdev(pf, Netdev{Name: pfName, MAC: mac(p, 0xff), Carrier: "1",
			PhysPortName: "p0", PhysSwitchID: fmt.Sprintf("%016x", 0xb0fe_0000_0000+p)}); err != nil {
			return err
		}
		for v := 0; v < vfsPerPF; v++ {
			vf, err := t.VFAddr(pf, v)
			if err != nil {
				return err
			}
			if err := t.AddVF(pf, v, Function{Addr: vf, SubDevice: "0000", Revision: "0x02", Driver: "iavf",
				IOMMUGroup: strconv.Itoa(1000 + p*vfsPerPF + v)}); err != nil {
				return err
			}
			if err := t.AddNetdev(vf, Netdev{Name: fmt.Sprintf("%sv%d", pfName, v), MAC: mac(p, v), Carrier: "1"}); err != nil {
				return err
			}
		}
	}
	return nil
}

func mac(pf, vf int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", pf, vf>>8, vf&0xff)
}

// busOf returns "dddd:bb" of a full PCI address.
func busOf(addr string) (string, error) {
	if len(addr) != 12 || addr[4] != ':' || addr[7] != ':' || addr[10] != '.' {
		return "", fmt.Errorf("pcitest: %q is not a PCI address like 0000:3b:00.0", addr)
	}
	return addr[:7], nil
}

// vfAddr adds delta to the routing ID (bus<<8 | dev<<3 | fn) of pf.
func vfAddr(pf string, delta int) (string, error) {
	if _, err := busOf(pf); err != nil {
		return "", err
	}
	var dom, bus, dev, fn int
	if _, err := fmt.Sscanf(pf, "%04x:%02x:%02x.%01x", &dom, &bus, &dev, &fn); err != nil {
		return "", fmt.Errorf("pcitest: PF address %q: %w", pf, err)
	}
	rid := (bus<<8 | dev<<3 | fn) + delta
	if rid > 0xffff {
		return "", fmt.Errorf("pcitest: VF routing ID of %s + %d is past bus ff", pf, delta)
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", dom, rid>>8, rid>>3&0x1f, rid&7), nil
}

// modalias is the kernel's pci modalias: upper-case IDs, base class, subclass, prog-if.
func modalias(vendor, device, subVendor, subDevice, class string) string {
	c := strings.ToUpper(strings.TrimPrefix(class, "0x"))
	for len(c) < 6 {
		c = "0" + c
	}
	return fmt.Sprintf("pci:v0000%sd0000%ssv0000%ssd0000%sbc%ssc%si%s", strings.ToUpper(vendor),
		strings.ToUpper(device), strings.ToUpper(subVendor), strings.ToUpper(subDevice), c[0:2], c[2:4], c[4:6])
}

// upTo is the ../ path from the folder rel (relative to Root) back to Root.
func upTo(rel string) string {
	return strings.TrimSuffix(strings.Repeat("../", strings.Count(rel, "/")+1), "/")
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// writeFiles writes sysfs attribute files: content plus the newline the kernel prints.
func writeFiles(dir string, files map[string]string) error {
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

func link(target, at string) error {
	if err := os.Symlink(target, at); err != nil {
		return fmt.Errorf("pcitest: link %s: %w", at, err)
	}
	return nil
}
