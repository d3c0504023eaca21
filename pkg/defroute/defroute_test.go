package defroute

import (
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"

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
			links, carriers, err := carriersFrom(l)
			if tt.wantErr {
				if !errors.Is(err, netlink.ErrDumpInterrupted) || links != nil || carriers != nil {
					t.Errorf("carriersFrom = %d links, %v, %v; want no result and ErrDumpInterrupted", len(links), carriers, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := carrierNames(t, links, carriers); !slices.Equal(got, []string{dev}) {
				t.Errorf("carriers %v, want [%s]", got, dev)
			}
			if want := 2 + tt.links + 2*tt.routes; l.dumps != want { // an interrupted link dump skips the routes
				t.Errorf("%d dumps, want %d", l.dumps, want)
			}
		})
	}
}
