// Package defroute finds the links of a network namespace that carry its default route: the links
// an IPv4 or IPv6 default route of any routing table goes out of, and every link beneath them (bridge
// and bond ports, the parent of a VLAN, macvlan or ipvlan), since moving any of them away cuts the
// node off. Discovery uses it to keep such links out of pools, and the hook to refuse them, so both
// apply the same rule. It depends on netlink alone, to keep the hook binary small.
package defroute

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tries is how many times Carriers dumps links and routes before it gives up on a namespace whose
// links or routes keep changing under the dump.
const Tries = 5

// lister is the part of *netlink.Handle that Carriers reads through.
type lister interface {
	LinkList() ([]netlink.Link, error)
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
}

// Carriers lists the namespace's links and returns them with the set of indexes of those carrying a
// default route. A dump the kernel marks interrupted (links or routes changed meanwhile) may miss
// entries, so it is retried; after Tries interrupted attempts Carriers fails (the error wraps
// netlink.ErrDumpInterrupted) rather than answer from a partial view.
func Carriers(h *netlink.Handle) (links []netlink.Link, carriers map[int]bool, err error) {
	return carriersFrom(h)
}

func carriersFrom(l lister) ([]netlink.Link, map[int]bool, error) {
	var err error
	for range Tries {
		var (
			links  []netlink.Link
			routes []netlink.Route
		)
		if links, err = l.LinkList(); err != nil {
			err = fmt.Errorf("list links: %w", err)
		} else if routes, err = l.RouteListFiltered(netlink.FAMILY_ALL,
			&netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE); err != nil { // every table
			err = fmt.Errorf("list routes: %w", err)
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		return links, carriersOf(links, routes), nil
	}
	return nil, nil, fmt.Errorf("links or routes kept changing during %d dumps: %w", Tries, err)
}

// carriersOf returns the indexes of the links that default routes go out of, and of the links
// beneath them.
func carriersOf(links []netlink.Link, routes []netlink.Route) map[int]bool {
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
	return carriers
}

// isDefault reports whether r is a unicast default route (0.0.0.0/0 or ::/0). Other types (local,
// blackhole, unreachable, ...) deliver nothing through a link.
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
// master is in the set, and the parents of set members (VLAN, macvlan, ipvlan).
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
