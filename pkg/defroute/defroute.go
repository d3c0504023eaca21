// Package defroute finds the links of a network namespace that carry its default route, and the
// links other links are bound to. Discovery uses it to keep carriers out of pools and the hook to
// refuse them, so both apply the same rule. It depends on netlink alone, to keep the hook binary
// small.
//
// A carrier is a link that a default route of any routing table goes out of, and every link beneath
// one, transitively: the ports of a bridge or bond (their master is above them), the device a VLAN,
// macvlan, ipvlan or macsec link sits on (IFLA_LINK), the device a vxlan or an ip tunnel (gre, ipip,
// sit, ip6tnl, vti) is bound to. Moving any of them cuts the node off: moving a vxlan's or a
// macvlan's lower device makes the kernel delete the upper link, and its routes with it.
//
// A default route is a unicast route to a prefix of at most DefaultPrefixBits bits: 0.0.0.0/0 and
// ::/0, and the split defaults VPN clients install so as to win over the real one without replacing
// it (0.0.0.0/1 + 128.0.0.0/1, ::/1 + 8000::/1, OpenVPN's 2000::/4 + 3000::/4).
package defroute

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tries is how many times Carriers dumps links and routes before it gives up on a namespace whose
// links or routes keep changing under the dump.
const Tries = 5

// DefaultPrefixBits is the longest prefix a route may have and still count as a default route: a
// route that short sends the bulk of the node's traffic (the shortest LAN or cluster routes are /8).
const DefaultPrefixBits = 4

// lister is the part of *netlink.Handle that Carriers reads through.
type lister interface {
	LinkList() ([]netlink.Link, error)
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
}

// View is one consistent read of a namespace's links and default-route carriers.
type View struct {
	Links []netlink.Link
	// Carriers holds the indexes of the links that carry a default route, themselves or beneath one.
	Carriers map[int]bool
	// Uppers maps a link's index to the links bound to it (see Lowers), and its master: the links
	// the kernel deletes or detaches when it leaves the namespace. Sorted by index.
	Uppers map[int][]int
	// RouteLinks are the indexes of the links the default routes go out of (RouteLinks), sorted:
	// with Nodes of the links, what CarriersOf needs to apply the rule again after a link changes.
	RouteLinks []int
}

// Read lists the namespace's links and routes once and derives the carriers and upper links. A dump
// the kernel marks interrupted (links or routes changed meanwhile) may miss entries, so it is
// retried; after Tries interrupted attempts Read fails (the error wraps netlink.ErrDumpInterrupted)
// rather than answer from a partial view.
func Read(h *netlink.Handle) (*View, error) {
	return readFrom(h)
}

// Carriers is Read for callers that need only the links and the carriers (discovery).
func Carriers(h *netlink.Handle) (links []netlink.Link, carriers map[int]bool, err error) {
	v, err := readFrom(h)
	if err != nil {
		return nil, nil, err
	}
	return v.Links, v.Carriers, nil
}

func readFrom(l lister) (*View, error) {
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
			return nil, err
		}
		nodes, via := NodesOf(links), RouteLinks(routes)
		return &View{Links: links, Carriers: CarriersOf(nodes, via), Uppers: UppersOf(nodes), RouteLinks: via}, nil
	}
	return nil, fmt.Errorf("links or routes kept changing during %d dumps: %w", Tries, err)
}

// carriersOf returns the indexes of the links that default routes go out of, and of the links
// beneath them.
func carriersOf(links []netlink.Link, routes []netlink.Route) map[int]bool {
	return CarriersOf(NodesOf(links), RouteLinks(routes))
}

// Node is what the rule reads of one link: its index, its master and the devices beneath it
// (Lowers). A caller that keeps a namespace's links from netlink events, rather than dumping them,
// keeps these and applies the rule with CarriersOf and UppersOf.
type Node struct {
	Index  int
	Master int
	Lowers []int
}

// NodeOf is the rule's view of one link.
func NodeOf(l netlink.Link) Node {
	a := l.Attrs()
	return Node{Index: a.Index, Master: a.MasterIndex, Lowers: Lowers(l)}
}

// NodesOf is NodeOf of every link.
func NodesOf(links []netlink.Link) []Node {
	out := make([]Node, len(links))
	for i, l := range links {
		out[i] = NodeOf(l)
	}
	return out
}

// RouteLinks returns the indexes of the links the default routes among routes go out of (see
// IsDefault), multipath hops included, each once.
func RouteLinks(routes []netlink.Route) []int {
	var out []int
	add := func(i int) {
		if i > 0 && !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	for _, r := range routes {
		if !IsDefault(r) {
			continue
		}
		add(r.LinkIndex)
		for _, hop := range r.MultiPath {
			add(hop.LinkIndex)
		}
	}
	sort.Ints(out)
	return out
}

// CarriersOf is the rule: the links default routes go out of (routeLinks) and every link beneath
// one, transitively (a carrier's lower devices, and the ports whose master is a carrier).
func CarriersOf(nodes []Node, routeLinks []int) map[int]bool {
	carriers := make(map[int]bool, len(routeLinks))
	for _, i := range routeLinks {
		if i > 0 {
			carriers[i] = true
		}
	}
	addLowerLinks(carriers, nodes)
	return carriers
}

// IsDefault reports whether r is a unicast route to a prefix of at most DefaultPrefixBits bits. Other
// types (local, blackhole, unreachable, ...) deliver nothing through a link.
func IsDefault(r netlink.Route) bool {
	if r.Type != unix.RTN_UNICAST {
		return false
	}
	if r.Dst == nil {
		return true
	}
	ones, bits := r.Dst.Mask.Size()
	return bits != 0 && ones <= DefaultPrefixBits
}

// addLowerLinks grows the set with the links beneath its members until nothing changes: the lower
// devices of set members, and ports whose master is in the set.
func addLowerLinks(set map[int]bool, nodes []Node) {
	for changed := true; changed; {
		changed = false
		for _, n := range nodes {
			if set[n.Index] {
				for _, lower := range n.Lowers {
					if !set[lower] {
						set[lower] = true
						changed = true
					}
				}
			}
			if !set[n.Index] && n.Master > 0 && set[n.Master] {
				set[n.Index] = true
				changed = true
			}
		}
	}
}

// UppersOf maps each link bound to by another to those links, its master included, sorted by
// index: the links the kernel deletes or detaches when it leaves the namespace.
func UppersOf(nodes []Node) map[int][]int {
	up := map[int][]int{}
	add := func(lower, upper int) {
		for _, u := range up[lower] {
			if u == upper {
				return
			}
		}
		up[lower] = append(up[lower], upper)
	}
	for _, n := range nodes {
		for _, lower := range n.Lowers {
			add(lower, n.Index)
		}
		if n.Master > 0 && n.Master != n.Index {
			add(n.Index, n.Master)
		}
	}
	for _, us := range up {
		sort.Ints(us)
	}
	return up
}

// Lowers returns the indexes of the devices of its own namespace that l is bound to and carries its
// traffic over: IFLA_LINK (VLAN, macvlan, ipvlan, macsec, IPoIB children, ip tunnels bound to a
// device), a vxlan's VTEP device (IFLA_VXLAN_LINK, which IFLA_LINK does not repeat), a tunnel's
// bound device. A veth's (or vxcan's, netkit's) IFLA_LINK is its peer, not a lower device, and an
// index that comes with a link-netnsid belongs to another namespace, so neither counts. A master
// (bridge, bond) is above its ports, not beneath: see View.Uppers.
func Lowers(l netlink.Link) []int {
	a := l.Attrs()
	if a.NetNsID >= 0 {
		return nil
	}
	var out []int
	add := func(i int) {
		if i <= 0 || i == a.Index {
			return
		}
		for _, o := range out {
			if o == i {
				return
			}
		}
		out = append(out, i)
	}
	switch l.Type() {
	case "veth", "vxcan", "netkit":
	default:
		add(a.ParentIndex)
	}
	switch t := l.(type) {
	case *netlink.Vxlan:
		add(t.VtepDevIndex)
	case *netlink.Gretun:
		add(int(t.Link))
	case *netlink.Gretap:
		add(int(t.Link))
	case *netlink.Iptun:
		add(int(t.Link))
	case *netlink.Ip6tnl:
		add(int(t.Link))
	case *netlink.Sittun:
		add(int(t.Link))
	case *netlink.Vti:
		add(int(t.Link))
	}
	return out
}
