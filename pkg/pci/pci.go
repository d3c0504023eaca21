// Package pci finds the PCI network functions of a node in a sysfs tree: PFs, SR-IOV VFs (netdev or
// vfio-pci), their netdevs, and the switchdev representors in a PF's net/ folder. The sysfs root is a
// parameter, so the same code reads a real host's /sys and the fixture trees of testdata/sysfs.
//
// Everything but the names is read straight from sysfs, one readdir per function plus the attributes
// needed, by several goroutines in a full scan. Names come from pci.ids (IDs: only the vendor:device
// pairs found, looked up once per process). A Scanner keeps what it read, so that an event re-reads
// only the functions it names (Scanner.Update). sriovnet tells switchdev representors from uplinks
// (devlink on a real host, phys_port_name otherwise), reading the sysfs root through its replaceable
// filesystem.
package pci

//go:generate go run ./pcitest/genfixtures -out ../../testdata/sysfs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// function is a scanned network function with what VF linking needs.
type function struct {
	dev     device.Device
	pkeyOf  string         // the RDMA device whose partition key the function has, if IB
	physfn  string         // PF address of a VF
	virtfns map[string]int // VF address -> index, of a PF
	reps    []netdev       // switchdev representors in its net/
}

// Scan returns every PCI function of class 0x02xxxx under sysfsRoot (the sysfs folder itself: "/sys",
// "testdata/sysfs/e810/sys") and one Device per switchdev representor netdev of a PF, sorted by ID.
// ids may be nil (no pci.ids): names stay "". A root without bus/pci/devices is an error; a surprise in
// one function (unreadable file, dangling link, garbage number) is logged and leaves the absent value.
// It is NewScanner(sysfsRoot, ids).Scan(); a Scanner kept between scans re-reads single functions.
func Scan(sysfsRoot string, ids *IDs) ([]device.Device, error) {
	return NewScanner(sysfsRoot, ids).Scan()
}

// readFunction reads one PCI function, names and PF facts aside (the scanner adds them); nil when it
// is not a network function. Class, vendor and device come from modalias, one file instead of
// three, when the three files are there too (the kernel prints all four from the same fields);
// otherwise from the files, each surprise logged as it always was.
func readFunction(dir *sysDir, addr string) *function {
	m, fromModalias := modaliasIDs(dir)
	class := m.class
	if !fromModalias {
		var ok bool
		if class, ok = readClass(dir, addr); !ok {
			return nil
		}
	}
	if !strings.HasPrefix(class, "0x02") {
		return nil
	}
	entries, err := dir.keptNames(keepEntry)
	if err != nil {
		klog.Warningf("pci: %s: %v", addr, err)
	}
	if fromModalias && !(slices.Contains(entries, "class") && slices.Contains(entries, "vendor") && slices.Contains(entries, "device")) {
		fromModalias = false
		var ok bool
		if class, ok = readClass(dir, addr); !ok || !strings.HasPrefix(class, "0x02") {
			return nil
		}
	}
	f := &function{dev: device.New()}
	d := &f.dev
	d.ID, d.PCIAddress, d.Class = addr, addr, class
	if fromModalias {
		d.Vendor, d.Device = m.vendor, m.device
	} else {
		d.Vendor = idAttr(dir, addr, "vendor")
		d.Device = idAttr(dir, addr, "device")
	}
	d.Driver = driver(dir, addr)
	d.NUMANode = numaNode(dir, addr)
	d.IOMMUGroup = iommuGroup(dir, addr)

	for _, e := range entries {
		switch {
		case e == "sriov_totalvfs":
			d.SriovTotalVFs = intAttr(dir, addr, e)
		case e == "sriov_numvfs":
			d.SriovNumVFs = intAttr(dir, addr, e)
		case e == "physfn":
			pf, err := dir.linkBase(e)
			if err != nil || !device.IsPCIAddress(pf) {
				klog.Warningf("pci: %s: physfn link to %q: %v", addr, pf, err)
				continue
			}
			f.physfn = pf
		case e == "uio":
			d.UIODevice = uioNode(dir, addr)
		case e == "acpi_index":
			if v, err := dir.attr(e); err == nil {
				d.ACPIIndex = v
			} else {
				klog.Warningf("pci: %s: acpi_index unreadable: %v", addr, err)
			}
		case strings.HasPrefix(e, "virtfn"):
			idx, err := strconv.Atoi(e[len("virtfn"):])
			if err != nil {
				continue
			}
			vf, err := dir.linkBase(e)
			if err != nil || !device.IsPCIAddress(vf) {
				klog.Warningf("pci: %s: %s link to %q: %v", addr, e, vf, err)
				continue
			}
			if f.virtfns == nil {
				f.virtfns = make(map[string]int)
			}
			f.virtfns[vf] = idx
		}
	}

	r := readRDMA(addr, dir, entries)
	d.RDMADevices, d.RDMACharDevices, f.pkeyOf = r.devices, r.chars, r.pkeyOf

	// A VF's netdevs are never representors: only its PF owns the eswitch.
	nds := readNetdevs(addr, dir, entries, f.physfn == "")
	ports := make([]netdev, 0, len(nds))
	for _, n := range nds {
		if n.representor {
			f.reps = append(f.reps, n)
		} else {
			ports = append(ports, n)
		}
	}
	sortPorts(ports)
	for _, n := range ports {
		d.IfNames = append(d.IfNames, n.name)
	}
	if len(ports) > 0 {
		d.IfName = ports[0].name
		ports[0].apply(d)
	}
	return f
}

// linkVF fills the PF facts of a VF: its PF's address, its index among the PF's virtfnN links and the
// PF's uplink netdev.
func linkVF(d *device.Device, addr, pfAddr string, fns map[string]*function) {
	d.PFPCIAddress = pfAddr
	pf := fns[pfAddr]
	if pf == nil {
		klog.Warningf("pci: %s: PF %s of the physfn link is not a network function here", addr, pfAddr)
		return
	}
	idx, ok := pf.virtfns[addr]
	if !ok {
		klog.Warningf("pci: %s: no virtfnN link of PF %s points at it: VF index unknown", addr, pfAddr)
	} else {
		d.VFIndex = idx
	}
	d.PFName = pf.dev.IfName
	d.PFLinkType = pf.dev.LinkType
}

// uioNode is the device node of a uio-bound function: /dev/<first entry of <function>/uio/>, as
// sriov-dp finds it ("uio0" -> "/dev/uio0"); "" when the folder is empty or unreadable.
func uioNode(dir *sysDir, addr string) string {
	sub, err := dir.sub("uio")
	if err != nil {
		klog.Warningf("pci: %s: uio folder unreadable: %v", addr, err)
		return ""
	}
	defer sub.close()
	names, err := sub.names()
	if err != nil {
		klog.Warningf("pci: %s: uio folder unreadable: %v", addr, err)
		return ""
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.HasPrefix(n, "uio") && !strings.ContainsAny(n, "/") {
			return "/dev/" + n
		}
	}
	klog.Warningf("pci: %s: uio folder lists no uioN device", addr)
	return ""
}

// effectiveLinkType is the netdev's link type, or for a VF without netdev its PF's.
func effectiveLinkType(d *device.Device) string {
	if len(d.IfNames) == 0 && d.IsVF() {
		return d.PFLinkType
	}
	return d.LinkType
}

// representor is the Device of a switchdev representor netdev of PF pf.
func representor(pf *device.Device, n *netdev) device.Device {
	d := device.New()
	d.ID, d.IfName, d.IfNames = n.name, n.name, []string{n.name}
	d.PCIAddress = pf.PCIAddress
	d.Representor = true
	d.Vendor, d.Device, d.VendorName, d.DeviceName = pf.Vendor, pf.Device, pf.VendorName, pf.DeviceName
	d.Driver, d.NUMANode, d.Class = pf.Driver, pf.NUMANode, pf.Class
	n.apply(&d)
	return d
}

// keepEntry keeps the entries of a function's folder that discovery looks at, as constant strings
// where it can (virtfnN and virtioN are made).
func keepEntry(name []byte) (string, bool) {
	switch string(name) {
	case "class":
		return "class", true
	case "vendor":
		return "vendor", true
	case "device":
		return "device", true
	case "sriov_totalvfs":
		return "sriov_totalvfs", true
	case "sriov_numvfs":
		return "sriov_numvfs", true
	case "physfn":
		return "physfn", true
	case "uio":
		return "uio", true
	case "acpi_index":
		return "acpi_index", true
	case "net":
		return "net", true
	case "infiniband":
		return "infiniband", true
	case "infiniband_mad":
		return "infiniband_mad", true
	case "infiniband_verbs":
		return "infiniband_verbs", true
	}
	if bytes.HasPrefix(name, []byte("virtfn")) || bytes.HasPrefix(name, []byte("virtio")) {
		return string(name), true
	}
	return "", false
}

// pciIDs are the IDs modalias gives.
type pciIDs struct{ vendor, device, class string }

// modaliasIDs reads vendor, device and class from modalias
// ("pci:v00008086d00001889sv00008086sd00000000bc02sc00i00"); false when it is missing or not
// exactly that shape.
func modaliasIDs(dir *sysDir) (pciIDs, bool) {
	m, err := dir.attrBytes("modalias")
	if err != nil || len(m) != 53 || string(m[:5]) != "pci:v" || string(m[5:9]) != "0000" || m[13] != 'd' ||
		string(m[14:18]) != "0000" || string(m[22:24]) != "sv" || string(m[32:34]) != "sd" ||
		string(m[42:44]) != "bc" || string(m[46:48]) != "sc" || m[50] != 'i' {
		return pciIDs{}, false
	}
	lower := bytes.ToLower(m) // hex digits only past the checks above
	for _, r := range [][2]int{{9, 13}, {18, 22}, {44, 46}, {48, 50}, {51, 53}} {
		for _, c := range lower[r[0]:r[1]] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return pciIDs{}, false
			}
		}
	}
	var class [8]byte
	copy(class[:], "0x")
	copy(class[2:], lower[44:46])
	copy(class[4:], lower[48:50])
	copy(class[6:], lower[51:53])
	return pciIDs{vendor: intern(lower[9:13]), device: intern(lower[18:22]), class: intern(class[:])}, true
}

// readClass reads the PCI class ("0x020000"), from modalias when the class file fails.
func readClass(dir *sysDir, addr string) (string, bool) {
	c, err := dir.attr("class")
	if err == nil && len(c) == 8 && strings.HasPrefix(c, "0x") {
		return intern([]byte(strings.ToLower(c))), true
	}
	m, merr := dir.attr("modalias")
	if merr == nil {
		if c2, ok := classFromModalias(m); ok {
			klog.Warningf("pci: %s: class file unusable (%q, %v): class %s taken from modalias", addr, c, err, c2)
			return c2, true
		}
	}
	klog.Warningf("pci: %s: no class in class (%q, %v) nor modalias (%q, %v): skipped", addr, c, err, m, merr)
	return "", false
}

// idAttr reads a vendor or device ID file: "8086"; "" when unreadable.
func idAttr(dir *sysDir, addr, file string) string {
	v, err := dir.attr(file)
	if err != nil {
		klog.Warningf("pci: %s: %s unreadable: %v", addr, file, err)
		return ""
	}
	return intern([]byte(hexID(v)))
}

// intAttr reads a decimal attribute (sriov_totalvfs, sriov_numvfs); 0 when unreadable.
func intAttr(dir *sysDir, addr, file string) int {
	n, err := dir.integer(file)
	if err != nil {
		klog.Warningf("pci: %s: %s unreadable: %v", addr, file, err)
		return 0
	}
	return n
}

// driver is the bound driver, "" when unbound or when the link points at no driver.
func driver(dir *sysDir, addr string) string {
	name, err := dir.linkBaseInterned("driver")
	if err != nil {
		if !notExist(err) {
			klog.Warningf("pci: %s: driver link unreadable: %v", addr, err)
		}
		return ""
	}
	if err := dir.resolves("driver"); err != nil {
		klog.Warningf("pci: %s: driver link to %q leads nowhere (%v): treated as unbound", addr, name, err)
		return ""
	}
	return name
}

// numaNode is the function's NUMA node, -1 when the file is missing, negative or garbage.
func numaNode(dir *sysDir, addr string) int {
	n, err := dir.integer("numa_node")
	switch {
	case notExist(err):
		return -1
	case err != nil:
		klog.Warningf("pci: %s: numa_node unusable: %v", addr, err)
		return -1
	case n < 0:
		return -1
	}
	return n
}

// noIOMMUGroup reports whether the IOMMU group is a vfio no-IOMMU one, whose device node is
// /dev/vfio/noiommu-<group>: its name file says vfio-noiommu (most groups have no name file).
func noIOMMUGroup(sysfsRoot, addr string, group int) bool {
	if group < 0 {
		return false
	}
	p := filepath.Join(sysfsRoot, "kernel", "iommu_groups", strconv.Itoa(group), "name")
	name, err := os.ReadFile(p)
	if err != nil {
		if !os.IsNotExist(err) {
			klog.Warningf("pci: %s: %v: assuming an IOMMU-backed group", addr, err)
		}
		return false
	}
	return strings.TrimSpace(string(name)) == "vfio-noiommu"
}

// iommuGroup is the number of the iommu_group link, -1 without one.
func iommuGroup(dir *sysDir, addr string) int {
	g, err := dir.linkBase("iommu_group")
	if err != nil {
		if !notExist(err) {
			klog.Warningf("pci: %s: iommu_group link unreadable: %v", addr, err)
		}
		return -1
	}
	n, err := strconv.Atoi(g)
	if err != nil {
		klog.Warningf("pci: %s: iommu_group link names %q, not a number", addr, g)
		return -1
	}
	return n
}
