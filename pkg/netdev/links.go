// Package netdev reads the links of one network namespace over netlink: the software links (dummy,
// veth, ifb, macvlan, ...) that pools can select by name or kind, the loopback, and which links carry
// the node's default route and so must never be handed out.
package netdev

import (
	"errors"
	"fmt"
	"net"

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
}

// Current opens the namespace the calling process runs in.
func Current() (*Namespace, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	return &Namespace{handle: h}, nil
}

// At opens the namespace behind ns; the caller keeps ownership of ns.
func At(ns netns.NsHandle) (*Namespace, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket in namespace %s: %w", ns, err)
	}
	return &Namespace{handle: h}, nil
}

// Close releases the netlink socket.
func (n *Namespace) Close() { n.handle.Close() }

// SoftwareLinks returns every link that has a netlink kind (veth, dummy, ifb, ...) and the loopback,
// as devices whose ID is the interface name. Links holding the default route, and the links beneath
// them, are marked DefaultRoute; the loopback is marked Loopback. Physical netdevs are left to sysfs.
func (n *Namespace) SoftwareLinks() ([]device.Device, error) {
	links, carriers, err := n.linksAndCarriers()
	if err != nil {
		return nil, err
	}
	var devs []device.Device
	for _, l := range links {
		a := l.Attrs()
		loopback := a.Flags&net.FlagLoopback != 0
		if l.Type() == physicalLinkType && !loopback {
			continue
		}
		d := FromLink(l)
		d.Loopback = loopback
		d.DefaultRoute = carriers[a.Index]
		devs = append(devs, d)
	}
	device.SortByID(devs)
	return devs, nil
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

// DefaultRouteLinks returns the names of the links that carry an IPv4 or IPv6 default route, in any
// routing table: the link the route names and every link beneath it (bridge and bond ports, the
// parent of a VLAN or macvlan), since moving any of them cuts the node off.
func (n *Namespace) DefaultRouteLinks() (map[string]bool, error) {
	links, carriers, err := n.linksAndCarriers()
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(carriers))
	for _, l := range links {
		if carriers[l.Attrs().Index] {
			names[l.Attrs().Name] = true
		}
	}
	return names, nil
}

// linksAndCarriers lists the links and the indexes of those carrying a default route.
func (n *Namespace) linksAndCarriers() ([]netlink.Link, map[int]bool, error) {
	links, err := n.handle.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	carriers, err := n.defaultRouteCarriers(links)
	if err != nil {
		return nil, nil, err
	}
	return links, carriers, nil
}

// defaultRouteCarriers returns the indexes of the links carrying a default route.
func (n *Namespace) defaultRouteCarriers(links []netlink.Link) (map[int]bool, error) {
	routes, err := n.handle.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	carriers := map[int]bool{}
	for _, r := range routes {
		if !isDefault(r) {
			continue
		}
		if r.LinkIndex > 0 {
			carriers[r.LinkIndex] = true
		}
		for _, hop := range r.MultiPath {
			if hop.LinkIndex > 0 {
				carriers[hop.LinkIndex] = true
			}
		}
	}
	addLowerLinks(carriers, links)
	return carriers, nil
}

func isDefault(r netlink.Route) bool {
	if r.Type != unix.RTN_UNICAST {
		return false
	}
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// addLowerLinks grows the set with the links beneath its members until nothing changes: ports whose
// master is in the set, and the parents of set members (VLAN, macvlan).
func addLowerLinks(set map[int]bool, links []netlink.Link) {
	for changed := true; changed; {
		changed = false
		for _, l := range links {
			a := l.Attrs()
			if set[a.Index] && hasLowerParent(l) && !set[a.ParentIndex] {
				set[a.ParentIndex] = true
				changed = true
			}
			if !set[a.Index] && a.MasterIndex > 0 && set[a.MasterIndex] {
				set[a.Index] = true
				changed = true
			}
		}
	}
}

// hasLowerParent reports whether the link's IFLA_LINK names a lower device of this namespace that
// carries its traffic. A veth's IFLA_LINK is its peer, and an index with a link-netnsid belongs to
// another namespace, so neither counts.
func hasLowerParent(l netlink.Link) bool {
	a := l.Attrs()
	if a.ParentIndex <= 0 || a.ParentIndex == a.Index || a.NetNsID >= 0 {
		return false
	}
	switch l.Type() {
	case "vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "vxlan":
		return true
	}
	return false
}

// LinkState returns the operstate and carrier of the named link, or ErrNoLink.
func (n *Namespace) LinkState(name string) (operState, carrier string, err error) {
	l, err := n.handle.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return "", "", fmt.Errorf("link %s: %w", name, ErrNoLink)
		}
		return "", "", fmt.Errorf("link %s: %w", name, err)
	}
	return l.Attrs().OperState.String(), Carrier(l.Attrs()), nil
}

// ErrNoLink says the link does not exist in the namespace.
var ErrNoLink = errors.New("no such link")
