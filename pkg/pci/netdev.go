package pci

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// netdev is one network interface of a PCI function, as its sysfs folder shows it.
type netdev struct {
	name        string
	devPort     int
	representor bool
	linkType    string
	operState   string
	carrier     string
	mac         string
	mtu         int
}

// representorPort matches the phys_port_name of switchdev representors: VF "pf0vf1", SF "pf0sf3", and
// the host-PF representor of a DPU "pf0", each with an optional controller "c1" in front. Uplinks are
// "p0", "p1"; ports of drivers without switchdev have no phys_port_name at all. A legacy-mode E810 PF
// also has a phys_switch_id, so the port name, not the switch id, decides.
var representorPort = regexp.MustCompile(`^(?:c\d+)?pf\d+(?:vf\d+|sf\d+)?$`)

// isRepresentor decides by phys_port_name; switchID is read only for the pre-4.x kernels that named a
// VF representor's port by the bare VF number.
func isRepresentor(physPortName string, switchID func() string) bool {
	if physPortName == "" {
		return false
	}
	if representorPort.MatchString(physPortName) {
		return true
	}
	if _, err := strconv.Atoi(physPortName); err == nil {
		return switchID() != ""
	}
	return false
}

// linkTypeName names an ARPHRD type number as sriov-dp's linkTypes selector does.
func linkTypeName(t string) string {
	switch t {
	case "1":
		return "ether"
	case "32":
		return "infiniband"
	case "772":
		return "loopback"
	}
	return t
}

// readNetdevs reads the netdevs of the function folder fn: net/<if> and, for virtio-net,
// virtioN/net/<if>. Only virtio folders are searched one level down: other subfolders with a net/
// (mlx5_core.sf.N) are auxiliary devices with functions of their own. Representors are looked for
// only when eswitch is set.
func readNetdevs(addr string, fn *sysDir, entries []string, eswitch bool) []netdev {
	type place struct{ dir, name string }
	var found []place
	for _, e := range entries {
		var rel string
		switch {
		case e == "net":
			rel = "net"
		case strings.HasPrefix(e, "virtio"):
			rel = e + "/net"
		default:
			continue
		}
		d, err := fn.sub(rel)
		if err != nil {
			if !notExist(err) && !errors.Is(err, unix.ENOTDIR) {
				klog.Warningf("pci: %s: listing netdevs: %v", addr, err)
			}
			continue
		}
		names, err := d.names()
		d.close()
		if err != nil {
			klog.Warningf("pci: %s: listing netdevs: %v", addr, err)
			continue
		}
		for _, n := range names {
			found = append(found, place{rel, n})
		}
	}
	out := make([]netdev, 0, len(found))
	for _, p := range found {
		d, err := fn.sub(p.dir + "/" + p.name)
		if err != nil {
			// Gone between listing and reading: moved to another namespace or removed.
			klog.V(2).Infof("pci: %s: netdev %s: %v", addr, p.name, err)
			continue
		}
		out = append(out, readNetdev(addr, &d, p.name, len(found) > 1, eswitch))
		d.close()
	}
	return out
}

// readNetdev reads one netdev folder; withPort also reads dev_port, needed only to order several
// netdevs of one function; eswitch also reads phys_port_name to tell representors. A missing or unreadable attribute leaves its absent value.
func readNetdev(addr string, dir *sysDir, name string, withPort, eswitch bool) netdev {
	nd := netdev{name: name, mtu: -1, carrier: device.CarrierUnknown}
	attr := func(file string) string {
		v, err := dir.attr(file)
		if err != nil {
			// phys_port_name answers EOPNOTSUPP on most drivers; carrier EINVAL on admin-down links.
			if file != "phys_port_name" && file != "carrier" && file != "phys_switch_id" {
				klog.V(2).Infof("pci: %s: netdev %s: %v", addr, name, err)
			}
			return ""
		}
		return v
	}
	if eswitch {
		if rep, known := sriovnetRepresentor(name); known {
			nd.representor = rep
		} else {
			nd.representor = isRepresentor(attr("phys_port_name"), func() string { return attr("phys_switch_id") })
		}
	}
	nd.linkType = linkTypeName(attr("type"))
	if v, err := dir.interned("operstate"); err == nil {
		nd.operState = v
	} else {
		klog.V(2).Infof("pci: %s: netdev %s: %v", addr, name, err)
	}
	nd.mac = attr("address")
	if s := attr("mtu"); s != "" {
		if m, err := strconv.Atoi(s); err == nil {
			nd.mtu = m
		} else {
			klog.Warningf("pci: %s: netdev %s: mtu %q is not a number", addr, name, s)
		}
	}
	// The kernel refuses to read the carrier of an admin-down link: unknown, not down. Such a link
	// is set up when it is attached to a pod, so it is not broken.
	switch attr("carrier") {
	case "1":
		nd.carrier = device.CarrierUp
	case "0":
		nd.carrier = device.CarrierDown
	}
	if withPort {
		if p, err := strconv.Atoi(attr("dev_port")); err == nil {
			nd.devPort = p
		}
	}
	return nd
}

// sortPorts orders a function's netdevs by dev_port (port 0 first), then by name.
func sortPorts(nds []netdev) {
	slices.SortFunc(nds, func(a, b netdev) int {
		if d := a.devPort - b.devPort; d != 0 {
			return d
		}
		return strings.Compare(a.name, b.name)
	})
}

// apply copies the link facts of the netdev onto the device.
func (n *netdev) apply(d *device.Device) {
	d.LinkType = n.linkType
	d.OperState = n.operState
	d.Carrier = n.carrier
	d.MAC = n.mac
	d.MTU = n.mtu
}
