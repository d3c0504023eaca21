// Package netdev reads the links of one network namespace over netlink: the software links (dummy,
// veth, ifb, macvlan, ...) that pools can select by name or kind, the loopback, and which links carry
// the node's default route and so must never be handed out.
package netdev

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// physicalLinkType is what netlink reports for a link with no IFLA_INFO_KIND: a driver-backed
// netdev (a PCI NIC, a representor, a virtio-net). Those are found through sysfs, not here.
const physicalLinkType = "device"

// Namespace reads links of one network namespace.
type Namespace struct {
	handle *netlink.Handle
	dump   int // an rtnetlink socket in the namespace, for streamed link dumps (dumpLinks)
}

// Current opens the namespace the calling process runs in.
func Current() (*Namespace, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	fd, err := routeSocket(netns.None())
	if err != nil {
		h.Close()
		return nil, err
	}
	return &Namespace{handle: h, dump: fd}, nil
}

// At opens the namespace behind ns; the caller keeps ownership of ns.
func At(ns netns.NsHandle) (*Namespace, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket in namespace %s: %w", ns, err)
	}
	fd, err := routeSocket(ns)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &Namespace{handle: h, dump: fd}, nil
}

// Close releases the netlink sockets.
func (n *Namespace) Close() {
	n.handle.Close()
	unix.Close(n.dump)
}

// Scan reads the namespace with one dump of its links and routes. soft holds every link that has a
// netlink kind (veth, dummy, ifb, ...) and the loopback, as devices whose ID is the interface name,
// sorted; physical netdevs are left to sysfs. routed names the links that carry an IPv4 or IPv6
// default route (split ones such as 0.0.0.0/1 + 128.0.0.0/1 too), in any routing table: the link the
// route names and every link beneath it (bridge and bond ports, the lower device of a VLAN, macvlan,
// vxlan or tunnel), by pkg/defroute's rule, which the hook applies too, since moving any of them cuts
// the node off; such software links are marked DefaultRoute, the loopback Loopback. A namespace whose links or routes
// keep changing during the dumps is an error, never a partial answer.
func (n *Namespace) Scan() (soft []device.Device, facts Facts, err error) {
	t := NewTable()
	if err := t.Load(n); err != nil {
		return nil, Facts{}, err
	}
	return t.SoftDevices(), t.Facts(), nil
}

// Facts are what a scan of the namespace says of its links by name, for the PCI functions'
// netdevs too.
type Facts struct {
	Routed map[string]bool     // carries a default route, itself or beneath the link that does
	Uppers map[string][]string // the links bound to it and its master, by name
}

// FromLink describes a software link as a device.
func FromLink(l netlink.Link) device.Device {
	a := l.Attrs()
	d := device.New()
	d.ID = a.Name
	d.IfName = a.Name
	d.IfNames = []string{a.Name}
	if l.Type() != physicalLinkType {
		d.Kind = l.Type()
	}
	d.LinkType = a.EncapType
	d.OperState = a.OperState.String()
	d.MAC = a.HardwareAddr.String()
	d.MTU = a.MTU
	d.Carrier = Carrier(a)
	return d
}

// Carrier tells from the link flags whether the link has a carrier (IFF_LOWER_UP). An admin-down
// link has no carrier to speak of: unknown, not down, since attaching it to a pod sets it up.
func Carrier(a *netlink.LinkAttrs) string {
	return carrierFromFlags(a.RawFlags)
}

func carrierFromFlags(flags uint32) string {
	switch {
	case flags&unix.IFF_UP == 0:
		return device.CarrierUnknown
	case flags&unix.IFF_LOWER_UP != 0:
		return device.CarrierUp
	}
	return device.CarrierDown
}
