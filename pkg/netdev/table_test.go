package netdev

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/defroute"
)

// A table kept by link and route events knows what a fresh dump knows, step after step, and names
// the links each step changed; an event that repeats what it knows changes nothing.
func TestTableFollowsEvents(t *testing.T) {
	ns, h := newTestNamespace(t)
	n, err := At(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	links, err := WatchLinksAt(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := WatchRoutesAt(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	table := NewTable()
	if err := table.Load(n); err != nil {
		t.Fatal(err)
	}
	link := func(name string) netlink.Link {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		do     func()
		names  []string // at least these reported
		routed []string // links carrying the default route after the step
	}{
		{"veth pair created, up", func() {
			mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("ta"), PeerName: "tap"}, true)
			must(h.LinkSetUp(link("tap")))
		}, []string{"ta", "tap"}, nil},
		{"peer down: carrier of ta", func() { must(h.LinkSetDown(link("tap"))) }, []string{"ta", "tap"}, nil},
		{"ta into a bridge", func() {
			br := mustLink(t, h, &netlink.Bridge{LinkAttrs: attrs("tbr")}, true)
			must(h.LinkSetMaster(link("ta"), br))
		}, []string{"ta", "tbr"}, nil},
		{"default route on the bridge: its port carries it", func() {
			mustDefaultRoute(t, h, link("tbr"), "10.77.0.2/24", "10.77.0.1")
		}, []string{"ta", "tbr"}, []string{"ta", "tbr"}},
		{"port renamed", func() {
			must(h.LinkSetDown(link("ta")))
			must(h.LinkSetName(link("ta"), "ta2"))
		}, []string{"ta", "ta2"}, []string{"ta2", "tbr"}},
		{"macvlan on the peer", func() {
			a := attrs("tmv")
			a.ParentIndex = link("tap").Attrs().Index
			mustLink(t, h, &netlink.Macvlan{LinkAttrs: a, Mode: netlink.MACVLAN_MODE_BRIDGE}, false)
		}, []string{"tmv", "tap"}, []string{"ta2", "tbr"}},
		{"default route gone", func() {
			must(h.RouteDel(&netlink.Route{LinkIndex: link("tbr").Attrs().Index, Gw: net.ParseIP("10.77.0.1")}))
		}, []string{"ta2", "tbr"}, nil},
		{"bridge deleted: the port has no upper", func() { must(h.LinkDel(link("tbr"))) }, []string{"ta2", "tbr"}, nil},
		{"veth deleted with its macvlan", func() { must(h.LinkDel(link("tap"))) }, []string{"ta2", "tap", "tmv"}, nil},
	}
	for _, st := range steps {
		st.do()
		var evs []LinkEvent
		routeChanged := false
		// Events come within milliseconds; take them until 150 ms pass without one.
		for quiet := time.After(150 * time.Millisecond); ; {
			select {
			case ev := <-links:
				evs = append(evs, ev)
				quiet = time.After(150 * time.Millisecond)
				continue
			case <-routes:
				routeChanged = true
				quiet = time.After(150 * time.Millisecond)
				continue
			case <-quiet:
			}
			break
		}
		got := table.Apply(evs)
		if routeChanged {
			more, err := table.ReadRoutes(n)
			must(err)
			got = append(got, more...)
		}
		for _, name := range st.names {
			if !slices.Contains(got, name) {
				t.Errorf("%s: changed %v lacks %s", st.name, got, name)
			}
		}
		fresh := NewTable()
		must(fresh.Load(n))
		if g, w := table.SoftDevices(), fresh.SoftDevices(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: devices from events\n%+v\nfrom a dump\n%+v", st.name, g, w)
		}
		if g, w := table.Facts(), fresh.Facts(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: facts from events %+v, from a dump %+v", st.name, g, w)
		}
		var routed []string
		for name := range table.Facts().Routed {
			routed = append(routed, name)
		}
		slices.Sort(routed)
		if !slices.Equal(routed, st.routed) {
			t.Errorf("%s: routed %v, want %v", st.name, routed, st.routed)
		}
		// The last event of each link again changes nothing.
		last := map[int]LinkEvent{}
		for _, ev := range evs {
			last[ev.Link.Index] = ev
		}
		var again []LinkEvent
		for _, ev := range last {
			if !ev.Deleted {
				again = append(again, ev)
			}
		}
		if names := table.Apply(again); len(names) != 0 {
			t.Errorf("%s: the same events again changed %v", st.name, names)
		}
	}
}

// A subscription whose socket fails is made again, and the stream says events may be lost.
func TestWatchResubscribes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subs := make(chan chan int, 3)
	subscribe := func(done <-chan struct{}, failed func(error)) (<-chan int, error) {
		ch := make(chan int, 1)
		subs <- ch
		return ch, nil
	}
	events, err := watch(ctx, "test", subscribe, func(u int) (int, bool) { return u, u >= 0 }, -100)
	if err != nil {
		t.Fatal(err)
	}
	next := func() int {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return 0
	}
	first := <-subs
	first <- 1
	if e := next(); e != 1 {
		t.Fatalf("event %d, want 1", e)
	}
	first <- -1  // dropped by convert
	close(first) // the socket failed
	second := <-subs
	if e := next(); e != -100 {
		t.Fatalf("event %d after a failed subscription, want the resync event", e)
	}
	second <- 2
	if e := next(); e != 2 {
		t.Fatalf("event %d from the new subscription, want 2", e)
	}
	cancel()
	for range events {
	}
}

// The streamed dump reads what netlink's LinkList reads: a table loaded from it and one built from
// defroute.Read's view list the same software links with the same facts.
func TestLoadMatchesLinkList(t *testing.T) {
	ns, h := newTestNamespace(t)
	lv0 := mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("lv0"), PeerName: "lv0p"}, true)
	br := mustLink(t, h, &netlink.Bridge{LinkAttrs: attrs("lbr")}, true)
	port := mustLink(t, h, &netlink.Veth{LinkAttrs: attrs("lport"), PeerName: "lportp"}, true)
	if err := h.LinkSetMaster(port, br); err != nil {
		t.Fatal(err)
	}
	mustDefaultRoute(t, h, br, "10.78.0.2/24", "10.78.0.1")
	mv := attrs("lmv")
	mv.ParentIndex = lv0.Attrs().Index
	mustLink(t, h, &netlink.Macvlan{LinkAttrs: mv, Mode: netlink.MACVLAN_MODE_BRIDGE}, false)
	for i := range 40 {
		mustLink(t, h, &netlink.Ifb{LinkAttrs: attrs(fmt.Sprintf("lifb%d", i))}, i%2 == 0)
	}
	// Kinds this kernel may lack are tried; whichever it has takes part.
	la := attrs("lalias")
	la.Alias = "netdevice-plugin:lalias"
	optional := []netlink.Link{
		&netlink.Vxlan{LinkAttrs: attrs("lvx"), VxlanId: 42, VtepDevIndex: lv0.Attrs().Index, Port: 4789},
		&netlink.Tuntap{LinkAttrs: attrs("ltap"), Mode: netlink.TUNTAP_MODE_TAP},
		&netlink.Gretap{LinkAttrs: attrs("lgt"), Local: net.ParseIP("10.78.0.2"), Remote: net.ParseIP("10.78.0.9"), Link: uint32(lv0.Attrs().Index)},
		&netlink.IPVlan{LinkAttrs: func() netlink.LinkAttrs { a := attrs("lipv"); a.ParentIndex = lv0.Attrs().Index; return a }(), Mode: netlink.IPVLAN_MODE_L2},
		&netlink.Bond{LinkAttrs: attrs("lbond"), Mode: netlink.BOND_MODE_ACTIVE_BACKUP},
		&netlink.Ifb{LinkAttrs: la},
	}
	for _, l := range optional {
		if err := h.LinkAdd(l); err != nil {
			t.Logf("no %s link here: %v", l.Type(), err)
		}
	}
	n, err := At(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	streamed := NewTable()
	if err := streamed.Load(n); err != nil {
		t.Fatal(err)
	}
	view, err := defroute.Read(n.handle)
	if err != nil {
		t.Fatal(err)
	}
	listed := NewTable()
	for _, l := range view.Links {
		k := LinkOf(l)
		listed.links[k.Index], listed.byName[k.Name] = &k, k.Index
		if got, ok := streamed.Get(k.Index); !ok || !reflect.DeepEqual(got, k) {
			t.Errorf("%s: streamed %+v, LinkList %+v", k.Name, got, k)
		}
	}
	listed.via = view.RouteLinks
	listed.derive()
	if g, w := streamed.SoftDevices(), listed.SoftDevices(); !reflect.DeepEqual(g, w) {
		t.Errorf("streamed dump\n%+v\nLinkList\n%+v", g, w)
	}
	if g, w := streamed.Facts(), listed.Facts(); !reflect.DeepEqual(g, w) {
		t.Errorf("streamed facts %+v, LinkList's %+v", g, w)
	}
	if streamed.Len() != len(view.Links) || streamed.Len() < 47 {
		t.Errorf("streamed %d links, LinkList %d", streamed.Len(), len(view.Links))
	}
}

// sameDevice says what comparing the Devices of two links says.
func TestSameDevice(t *testing.T) {
	base := Link{Index: 3, Name: "v0", Kind: "veth", LinkType: "ether", OperState: "up", MAC: "02:00:00:00:00:01",
		MTU: 1500, Flags: unix.IFF_UP | unix.IFF_LOWER_UP, Alias: "a", Master: 4, Lowers: []int{5}}
	changes := []func(l *Link){
		func(l *Link) { l.Name = "v1" }, func(l *Link) { l.Kind = "ifb" }, func(l *Link) { l.LinkType = "none" },
		func(l *Link) { l.OperState = "down" }, func(l *Link) { l.MAC = "" }, func(l *Link) { l.MTU = 9000 },
		func(l *Link) { l.Flags &^= unix.IFF_LOWER_UP }, func(l *Link) { l.Flags |= unix.IFF_LOOPBACK },
		func(l *Link) { l.Flags |= unix.IFF_RUNNING }, // no effect on the Device
		func(l *Link) { l.Index = 9 }, func(l *Link) { l.Alias = "" }, func(l *Link) { l.Master = 0 }, func(l *Link) { l.Lowers = nil },
	}
	for i, change := range changes {
		b := base
		change(&b)
		da, db := deviceOf(&base), deviceOf(&b)
		da.Loopback, db.Loopback = base.Loopback(), b.Loopback()
		if got, want := sameDevice(&base, &b), reflect.DeepEqual(da, db); got != want {
			t.Errorf("change %d: sameDevice = %v, the Devices equal: %v", i, got, want)
		}
	}
}
