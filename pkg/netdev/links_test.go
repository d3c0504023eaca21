package netdev

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// newTestNamespace is a fresh named namespace, removed when the test ends, and a netlink handle in it.
func newTestNamespace(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	n := netnstest.New(t)
	return netns.NsHandle(n.FD()), n.H
}

func mustLink(t *testing.T, h *netlink.Handle, l netlink.Link, up bool) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(l); err != nil {
		t.Fatalf("add %s %s: %v", l.Type(), l.Attrs().Name, err)
	}
	got, err := h.LinkByName(l.Attrs().Name)
	if err != nil {
		t.Fatalf("lookup %s: %v", l.Attrs().Name, err)
	}
	if up {
		if err := h.LinkSetUp(got); err != nil {
			t.Fatalf("up %s: %v", l.Attrs().Name, err)
		}
	}
	return got
}

func mustDefaultRoute(t *testing.T, h *netlink.Handle, l netlink.Link, cidr, gw string) {
	t.Helper()
	mustDefaultRouteIn(t, h, l, cidr, gw, 0)
}

// mustDefaultRouteIn adds the default route to routing table table (0: main).
func mustDefaultRouteIn(t *testing.T, h *netlink.Handle, l netlink.Link, cidr, gw string, table int) {
	t.Helper()
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	addr.Flags = 0x80 // IFA_F_NODAD: no duplicate-address wait for IPv6
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("address %s on %s: %v", cidr, l.Attrs().Name, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw), Table: table}); err != nil {
		t.Fatalf("default route via %s on %s: %v", gw, l.Attrs().Name, err)
	}
}

func attrs(name string) netlink.LinkAttrs {
	a := netlink.NewLinkAttrs()
	a.Name = name
	return a
}

// carrierAdminDown stands in the table for the unknown carrier of an admin-down link ("" means
// "not checked" there).
const carrierAdminDown = "admin-down"

func TestSoftwareLinks(t *testing.T) {
	ns, h := newTestNamespace(t)
	// Software links a pool can take.
	mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("dummy0"), PeerName: "dummy0p"}, true)
	if p, err := h.LinkByName("dummy0p"); err != nil || h.LinkSetUp(p) != nil {
		t.Fatalf("set dummy0p up: %v", err)
	}
	mustLink(t, h, &netlink.Ifb{LinkAttrs: attrs("ifbtest")}, false)
	// IPv4 default route on a macvlan over a veth: both carry it (this kernel has no 8021q).
	mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("uplink"), PeerName: "uplinkp"}, true)
	upl, _ := h.LinkByName("uplink")
	mvAttrs := attrs("uplink.mv")
	mvAttrs.ParentIndex = upl.Attrs().Index
	mv := mustLink(t, h, &netlink.Macvlan{LinkAttrs: mvAttrs, Mode: netlink.MACVLAN_MODE_BRIDGE}, true)
	mustDefaultRoute(t, h, mv, "10.9.0.2/24", "10.9.0.1")
	// IPv6 default route on a bridge: its port carries it too.
	br := mustLink(t, h, &netlink.Bridge{LinkAttrs: attrs("br6")}, true)
	port := mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("br6port"), PeerName: "br6portp"}, true)
	if err := h.LinkSetMaster(port, br); err != nil {
		t.Fatal(err)
	}
	mustDefaultRoute(t, h, br, "fd99::2/64", "fd99::1")
	// A default route in another table (policy routing) counts too.
	tbl := mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("tbl100"), PeerName: "tbl100p"}, true)
	mustDefaultRouteIn(t, h, tbl, "198.18.20.2/24", "198.18.20.1", 100)

	n, err := At(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	devs, facts, err := n.Scan()
	names := facts.Routed
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]device.Device{}
	var order []string
	for _, d := range devs {
		byID[d.ID] = d
		order = append(order, d.ID)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("not sorted by id: %v", order)
		}
	}

	tests := []struct {
		id           string
		kind         string
		loopback     bool
		defaultRoute bool
		carrier      string
	}{
		{id: "lo", loopback: true, carrier: carrierAdminDown},
		{id: "dummy0", kind: "veth", carrier: device.CarrierUp},
		{id: "dummy0p", kind: "veth", carrier: device.CarrierUp},
		{id: "ifbtest", kind: "ifb", carrier: carrierAdminDown},
		{id: "uplink", kind: "veth", defaultRoute: true, carrier: device.CarrierDown},
		{id: "uplink.mv", kind: "macvlan", defaultRoute: true},
		{id: "uplinkp", kind: "veth", carrier: carrierAdminDown},
		{id: "br6", kind: "bridge", defaultRoute: true},
		{id: "br6port", kind: "veth", defaultRoute: true, carrier: device.CarrierDown},
		{id: "br6portp", kind: "veth", carrier: carrierAdminDown},
		{id: "tbl100", kind: "veth", defaultRoute: true, carrier: device.CarrierDown},
		{id: "tbl100p", kind: "veth", carrier: carrierAdminDown},
	}
	if len(devs) != len(tests) {
		t.Errorf("got %d links %v, want %d", len(devs), order, len(tests))
	}
	for _, tt := range tests {
		d, ok := byID[tt.id]
		if !ok {
			t.Errorf("%s: not listed", tt.id)
			continue
		}
		if d.Kind != tt.kind || d.Loopback != tt.loopback || d.DefaultRoute != tt.defaultRoute {
			t.Errorf("%s: kind=%q loopback=%v defaultRoute=%v, want %q %v %v",
				tt.id, d.Kind, d.Loopback, d.DefaultRoute, tt.kind, tt.loopback, tt.defaultRoute)
		}
		want := tt.carrier
		if want == carrierAdminDown {
			want = device.CarrierUnknown
		}
		if tt.carrier != "" && d.Carrier != want {
			t.Errorf("%s: carrier %q, want %q", tt.id, d.Carrier, tt.carrier)
		}
		if d.IfName != tt.id || len(d.IfNames) != 1 || d.PCIAddress != "" || d.VFIndex != -1 || d.NUMANode != -1 || d.MTU <= 0 {
			t.Errorf("%s: unexpected identity fields %+v", tt.id, d)
		}
	}
	if got := byID["dummy0"]; got.LinkType != "ether" || len(got.MAC) != 17 || got.OperState == "" {
		t.Errorf("dummy0: linkType=%q mac=%q operState=%q", got.LinkType, got.MAC, got.OperState)
	}

	// Links others are bound to: the macvlan's parent, the bridge's port (its master is above it).
	for lower, upper := range map[string]string{"uplink": "uplink.mv", "br6port": "br6"} {
		if !slices.Contains(facts.Uppers[lower], upper) || !slices.Contains(byID[lower].Uppers, upper) {
			t.Errorf("%s: uppers %v (device %v), want %s among them", lower, facts.Uppers[lower], byID[lower].Uppers, upper)
		}
	}
	if u := facts.Uppers["dummy0"]; len(u) != 0 {
		t.Errorf("dummy0 (a veth with its peer) has uppers %v", u)
	}

	want := map[string]bool{"uplink": true, "uplink.mv": true, "br6": true, "br6port": true, "tbl100": true}
	if len(names) != len(want) {
		t.Errorf("default route links %v, want %v", names, want)
	}
	for name := range want {
		if !names[name] {
			t.Errorf("default route links %v miss %s", names, name)
		}
	}
}

func TestWatchLinks(t *testing.T) {
	ns, h := newTestNamespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := WatchLinksAt(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	next := func(want func(LinkEvent) bool, what string) LinkEvent {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("event stream closed waiting for %s", what)
				}
				if want(ev) {
					return ev
				}
			case <-timeout:
				t.Fatalf("no event for %s", what)
			}
		}
	}
	mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("w0"), PeerName: "w0p"}, true)
	next(func(e LinkEvent) bool { return e.Name == "w0" && !e.Deleted }, "w0 created")
	peer, _ := h.LinkByName("w0p")
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	next(func(e LinkEvent) bool { return e.Name == "w0" && e.Carrier == device.CarrierUp }, "w0 carrier up")
	if err := h.LinkSetDown(peer); err != nil {
		t.Fatal(err)
	}
	next(func(e LinkEvent) bool { return e.Name == "w0" && e.Carrier == device.CarrierDown && !e.Deleted }, "w0 carrier down")
	w0, _ := h.LinkByName("w0")
	if err := h.LinkSetDown(w0); err != nil {
		t.Fatal(err)
	}
	next(func(e LinkEvent) bool { return e.Name == "w0" && e.Carrier == device.CarrierUnknown }, "w0 admin down")
	if err := h.LinkDel(peer); err != nil {
		t.Fatal(err)
	}
	next(func(e LinkEvent) bool { return e.Name == "w0" && e.Deleted }, "w0 deleted")

	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("event stream not closed after cancel")
		}
	}
}
