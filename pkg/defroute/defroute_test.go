package defroute

import (
	"errors"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// carrierNames turns Carriers' index set into sorted link names.
func carrierNames(t *testing.T, links []netlink.Link, carriers map[int]bool) []string {
	t.Helper()
	byIndex := map[int]string{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l.Attrs().Name
	}
	var names []string
	for idx := range carriers {
		name, ok := byIndex[idx]
		if !ok {
			t.Errorf("carrier index %d is not among the listed links", idx)
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func TestCarriers(t *testing.T) {
	netnstest.RequireRoot(t)
	tests := []struct {
		name string
		// setup builds links and routes in ns and returns the names that must be carriers.
		setup func(t *testing.T, ns *netnstest.NS) []string
	}{
		{
			name: "no default route",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.AddAddr(t, dev, "198.18.10.2/24")
				return nil
			},
		},
		{
			name: "IPv4 default on a veth: not its peer",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.AddAddr(t, dev, "198.18.11.2/24")
				ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.11.1", "dev", dev)
				return []string{dev}
			},
		},
		{
			name: "IPv6 default on a bridge: its port too",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				br := ns.Bridge(t)
				port, _ := ns.Veth(t)
				ns.Exec(t, "ip", "link", "set", port, "master", br)
				ns.AddAddr(t, br, "fdb5:1e6f:7d2a:12::2/64")
				ns.Exec(t, "ip", "-6", "route", "add", "default", "via", "fdb5:1e6f:7d2a:12::1", "dev", br)
				return []string{br, port}
			},
		},
		{
			name: "default on a macvlan: its parent too",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				parent, _ := ns.Veth(t)
				mv := ns.Macvlan(t, parent)
				ns.AddAddr(t, mv, "198.18.13.2/24")
				ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.13.1", "dev", mv)
				return []string{mv, parent}
			},
		},
		{
			name: "default in table 100 behind an ip rule",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.AddAddr(t, dev, "198.18.14.2/24")
				ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.14.1", "dev", dev, "table", "100")
				ns.Exec(t, "ip", "rule", "add", "from", "198.18.14.2", "table", "100")
				return []string{dev}
			},
		},
		{
			name: "multipath default: every next hop",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				a, _ := ns.Veth(t)
				b, _ := ns.Veth(t)
				ns.AddAddr(t, a, "198.18.15.2/24")
				ns.AddAddr(t, b, "198.18.16.2/24")
				ns.Exec(t, "ip", "route", "add", "default",
					"nexthop", "via", "198.18.15.1", "dev", a, "nexthop", "via", "198.18.16.1", "dev", b)
				return []string{a, b}
			},
		},
		{
			name: "a local default route (transparent proxy) carries nothing out",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.Exec(t, "ip", "route", "add", "local", "default", "dev", dev, "table", "100")
				return nil
			},
		},
		{
			// The kernel deletes a vxlan whose lower device leaves the namespace, and the default
			// route with it. The lower device is IFLA_VXLAN_LINK; IFLA_LINK is not set.
			name: "default on a vxlan: its lower device too",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				lower, _ := ns.Veth(t)
				vx := vxlan(t, ns, lower, "198.18.19")
				ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.19.1", "dev", vx)
				return []string{vx, lower}
			},
		},
		{
			name: "split default 0.0.0.0/1 + 128.0.0.0/1 (VPN style) on a vxlan: it and its lower device",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				lower, _ := ns.Veth(t)
				vx := vxlan(t, ns, lower, "198.18.20")
				ns.Exec(t, "ip", "route", "add", "0.0.0.0/1", "via", "198.18.20.1", "dev", vx)
				ns.Exec(t, "ip", "route", "add", "128.0.0.0/1", "via", "198.18.20.1", "dev", vx)
				return []string{vx, lower}
			},
		},
		{
			name: "IPv6 split default ::/1 + 8000::/1",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.AddAddr(t, dev, "fdb5:1e6f:7d2a:21::2/64")
				ns.Exec(t, "ip", "-6", "route", "add", "::/1", "via", "fdb5:1e6f:7d2a:21::1", "dev", dev)
				ns.Exec(t, "ip", "-6", "route", "add", "8000::/1", "via", "fdb5:1e6f:7d2a:21::1", "dev", dev)
				return []string{dev}
			},
		},
		{
			name: "OpenVPN's IPv6 def1: 2000::/4 + 3000::/4",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.AddAddr(t, dev, "fdb5:1e6f:7d2a:22::2/64")
				ns.Exec(t, "ip", "-6", "route", "add", "2000::/4", "via", "fdb5:1e6f:7d2a:22::1", "dev", dev)
				ns.Exec(t, "ip", "-6", "route", "add", "3000::/4", "via", "fdb5:1e6f:7d2a:22::1", "dev", dev)
				return []string{dev}
			},
		},
		{
			name: "LAN and cluster routes (/5, /8, /16) are not default routes",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.AddAddr(t, dev, "198.18.23.2/24")
				ns.Exec(t, "ip", "route", "add", "0.0.0.0/5", "via", "198.18.23.1", "dev", dev)
				ns.Exec(t, "ip", "route", "add", "10.0.0.0/8", "via", "198.18.23.1", "dev", dev)
				ns.Exec(t, "ip", "route", "add", "172.16.0.0/16", "via", "198.18.23.1", "dev", dev)
				return nil
			},
		},
		{
			name: "default on a macvlan over a bridge: the bridge, its ports (a veth, a tap), all beneath",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				br := ns.Bridge(t)
				port, _ := ns.Veth(t)
				tap := netnstest.Name("ndt")
				ns.Exec(t, "ip", "tuntap", "add", "mode", "tap", "name", tap)
				for _, p := range []string{port, tap} {
					ns.Exec(t, "ip", "link", "set", p, "master", br)
				}
				mv := ns.Macvlan(t, br)
				ns.AddAddr(t, mv, "198.18.24.2/24")
				ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.24.1", "dev", mv)
				return []string{mv, br, port, tap}
			},
		},
		{
			name: "links bound to a carrier are not carriers themselves",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				dev, _ := ns.Veth(t)
				ns.AddAddr(t, dev, "198.18.25.2/24")
				ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.25.1", "dev", dev)
				ns.Macvlan(t, dev)
				vxlan(t, ns, dev, "198.18.26")
				return []string{dev}
			},
		},
		{
			// The macvlan's IFLA_LINK names its parent's index in the other namespace; the link
			// with that index here is unrelated.
			name: "a macvlan whose parent is in another namespace",
			setup: func(t *testing.T, ns *netnstest.NS) []string {
				other := netnstest.New(t)
				parent, _ := other.Veth(t)
				mv := other.Macvlan(t, parent)
				if err := other.H.LinkSetNsFd(other.Link(t, mv), ns.FD()); err != nil {
					t.Fatal(err)
				}
				bystander := netnstest.Name("ndx")
				ns.Exec(t, "ip", "link", "add", "name", bystander,
					"index", strconv.Itoa(other.Link(t, parent).Attrs().Index), "type", "ifb")
				ns.Exec(t, "ip", "link", "set", mv, "up")
				ns.AddAddr(t, mv, "198.18.17.2/24")
				ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.17.1", "dev", mv)
				return []string{mv}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := netnstest.New(t)
			want := tt.setup(t, ns)
			slices.Sort(want)
			links, carriers, err := Carriers(ns.H)
			if err != nil {
				t.Fatal(err)
			}
			if got := carrierNames(t, links, carriers); !slices.Equal(got, want) {
				t.Errorf("carriers %v, want %v", got, want)
			}
			if names := ns.LinkNames(t); len(links) != len(names) {
				t.Errorf("listed %d links, the namespace has %v", len(links), names)
			}
		})
	}
}

// interrupting reads a real namespace but reports the first links link dumps and the first routes
// route dumps as interrupted, as netlink does when links or routes change during a dump (the
// kernel's NLM_F_DUMP_INTR): a race too narrow to provoke on demand.
type interrupting struct {
	lister
	links, routes int // dumps still to interrupt
	dumps         int // dumps made
}

func (i *interrupting) LinkList() ([]netlink.Link, error) {
	i.dumps++
	ls, err := i.lister.LinkList()
	if err == nil && i.links > 0 {
		i.links--
		err = netlink.ErrDumpInterrupted
	}
	return ls, err
}

func (i *interrupting) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	i.dumps++
	rs, err := i.lister.RouteListFiltered(family, filter, mask)
	if err == nil && i.routes > 0 {
		i.routes--
		err = netlink.ErrDumpInterrupted
	}
	return rs, err
}

func TestCarriersInterruptedDump(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	dev, _ := ns.Veth(t)
	ns.AddAddr(t, dev, "198.18.18.2/24")
	ns.Exec(t, "ip", "route", "add", "default", "via", "198.18.18.1", "dev", dev)
	tests := []struct {
		name          string
		links, routes int // interrupted dumps in a row
		wantErr       bool
	}{
		{name: "nothing interrupted"},
		{name: "a link dump interrupted: retried", links: 1},
		{name: "a route dump interrupted: retried", routes: 1},
		{name: "route dumps interrupted on all but the last try", routes: Tries - 1},
		{name: "route dumps interrupted on every try: fails closed", routes: Tries, wantErr: true},
		{name: "link dumps interrupted on every try: fails closed", links: Tries, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &interrupting{lister: ns.H, links: tt.links, routes: tt.routes}
			v, err := readFrom(l)
			if tt.wantErr {
				if !errors.Is(err, netlink.ErrDumpInterrupted) || v != nil {
					t.Errorf("readFrom = %+v, %v; want no result and ErrDumpInterrupted", v, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := carrierNames(t, v.Links, v.Carriers); !slices.Equal(got, []string{dev}) {
				t.Errorf("carriers %v, want [%s]", got, dev)
			}
			if want := 2 + tt.links + 2*tt.routes; l.dumps != want { // an interrupted link dump skips the routes
				t.Errorf("%d dumps, want %d", l.dumps, want)
			}
		})
	}
}

// vxlan adds a vxlan bound to lower, up, with the address <prefix>.2/24, and returns its name.
// Each gets its own VNI (one VNI per port and namespace).
func vxlan(t *testing.T, ns *netnstest.NS, lower, prefix string) string {
	t.Helper()
	name := netnstest.Name("ndv")
	vni++
	ns.Exec(t, "ip", "link", "add", name, "type", "vxlan", "id", strconv.Itoa(vni), "dev", lower, "dstport", "4789", "remote", "198.18.99.1")
	t.Cleanup(func() {
		if l, err := ns.H.LinkByName(name); err == nil {
			_ = ns.H.LinkDel(l)
		}
	})
	ns.Exec(t, "ip", "link", "set", name, "up")
	ns.AddAddr(t, name, prefix+".2/24")
	return name
}

var vni = 100

// TestCarriersOfTunnels covers the links this kernel cannot create (gre, ipip, sit, ip6tnl, vti,
// geneve): a default route through a tunnel bound to a device makes that device a carrier; a tunnel
// bound to nothing (geneve has no lower device) has nothing beneath it.
func TestCarriersOfTunnels(t *testing.T) {
	attrs := func(index, parent int) netlink.LinkAttrs {
		return netlink.LinkAttrs{Index: index, Name: "l" + strconv.Itoa(index), ParentIndex: parent, NetNsID: -1}
	}
	lower := &netlink.Device{LinkAttrs: attrs(2, 0)}
	tests := []struct {
		name   string
		tunnel netlink.Link
		want   []int
	}{
		{name: "gre, by IFLA_GRE_LINK", tunnel: &netlink.Gretun{LinkAttrs: attrs(10, 0), Link: 2}, want: []int{2, 10}},
		{name: "gretap", tunnel: &netlink.Gretap{LinkAttrs: attrs(10, 0), Link: 2}, want: []int{2, 10}},
		{name: "ipip", tunnel: &netlink.Iptun{LinkAttrs: attrs(10, 0), Link: 2}, want: []int{2, 10}},
		{name: "ip6tnl", tunnel: &netlink.Ip6tnl{LinkAttrs: attrs(10, 0), Link: 2}, want: []int{2, 10}},
		{name: "sit", tunnel: &netlink.Sittun{LinkAttrs: attrs(10, 0), Link: 2}, want: []int{2, 10}},
		{name: "vti", tunnel: &netlink.Vti{LinkAttrs: attrs(10, 0), Link: 2}, want: []int{2, 10}},
		{name: "ipip by IFLA_LINK alone", tunnel: &netlink.Iptun{LinkAttrs: attrs(10, 2)}, want: []int{2, 10}},
		{name: "geneve: no lower device", tunnel: &netlink.Geneve{LinkAttrs: attrs(10, 0)}, want: []int{10}},
		{name: "gre bound to a device of another namespace", tunnel: &netlink.Gretun{LinkAttrs: netlink.LinkAttrs{Index: 10, NetNsID: 3}, Link: 2}, want: []int{10}},
		{name: "veth: IFLA_LINK is the peer", tunnel: &netlink.Veth{LinkAttrs: attrs(10, 2)}, want: []int{10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dst, _ := net.ParseCIDR("0.0.0.0/0")
			routes := []netlink.Route{{LinkIndex: 10, Dst: dst, Type: unix.RTN_UNICAST}}
			got := carriersOf([]netlink.Link{lower, tt.tunnel}, routes)
			var idx []int
			for i := range got {
				idx = append(idx, i)
			}
			slices.Sort(idx)
			if !slices.Equal(idx, tt.want) {
				t.Errorf("carriers %v, want %v", idx, tt.want)
			}
		})
	}
}

func TestIsDefault(t *testing.T) {
	tests := []struct {
		dst  string // "" for no destination (the kernel's way of saying 0/0)
		typ  int
		want bool
	}{
		{dst: "", typ: unix.RTN_UNICAST, want: true},
		{dst: "0.0.0.0/0", typ: unix.RTN_UNICAST, want: true},
		{dst: "0.0.0.0/1", typ: unix.RTN_UNICAST, want: true},
		{dst: "128.0.0.0/1", typ: unix.RTN_UNICAST, want: true},
		{dst: "64.0.0.0/2", typ: unix.RTN_UNICAST, want: true},
		{dst: "0.0.0.0/4", typ: unix.RTN_UNICAST, want: true},
		{dst: "0.0.0.0/5", typ: unix.RTN_UNICAST},
		{dst: "10.0.0.0/8", typ: unix.RTN_UNICAST},
		{dst: "::/0", typ: unix.RTN_UNICAST, want: true},
		{dst: "8000::/1", typ: unix.RTN_UNICAST, want: true},
		{dst: "2000::/3", typ: unix.RTN_UNICAST, want: true},
		{dst: "3000::/4", typ: unix.RTN_UNICAST, want: true},
		{dst: "fc00::/7", typ: unix.RTN_UNICAST},
		{dst: "0.0.0.0/0", typ: unix.RTN_LOCAL},
		{dst: "0.0.0.0/0", typ: unix.RTN_BLACKHOLE},
		{dst: "::/0", typ: unix.RTN_UNREACHABLE},
		{dst: "ff00::/8", typ: unix.RTN_MULTICAST},
	}
	for _, tt := range tests {
		r := netlink.Route{Type: tt.typ}
		if tt.dst != "" {
			_, r.Dst, _ = net.ParseCIDR(tt.dst)
		}
		if got := IsDefault(r); got != tt.want {
			t.Errorf("IsDefault(%s type %d) = %v, want %v", tt.dst, tt.typ, got, tt.want)
		}
	}
}

// TestUppers: the links bound to a link (a macvlan on it, a vxlan over it) and its master are its
// upper links; a veth's peer is not.
func TestUppers(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	plain, peer := ns.Veth(t)
	withMacvlan, _ := ns.Veth(t)
	mv := ns.Macvlan(t, withMacvlan)
	withVxlan, _ := ns.Veth(t)
	vx := vxlan(t, ns, withVxlan, "198.18.27")
	br := ns.Bridge(t)
	port, _ := ns.Veth(t)
	ns.Exec(t, "ip", "link", "set", port, "master", br)
	both, _ := ns.Veth(t) // a bridge port with a vxlan over it (a macvlan would need its rx handler)
	ns.Exec(t, "ip", "link", "set", both, "master", br)
	vx2 := vxlan(t, ns, both, "198.18.28")

	v, err := Read(ns.H)
	if err != nil {
		t.Fatal(err)
	}
	names := func(idx []int) []string {
		var out []string
		for _, i := range idx {
			for _, l := range v.Links {
				if l.Attrs().Index == i {
					out = append(out, l.Attrs().Name)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	for name, want := range map[string][]string{
		plain:       nil,
		peer:        nil,
		withMacvlan: {mv},
		withVxlan:   {vx},
		port:        {br},
		both:        sorted(br, vx2),
		br:          nil, // its ports are beneath it, not above
		mv:          nil,
	} {
		if got := names(v.Uppers[ns.Link(t, name).Attrs().Index]); !slices.Equal(got, want) {
			t.Errorf("uppers of %s = %v, want %v", name, got, want)
		}
	}
}
