package inventory

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/uevent"
)

const (
	pf0 = "0000:3b:00.0"
	vf0 = "0000:3b:01.0"
	vf1 = "0000:3b:01.1"
)

func pciEvent(action, addr string) uevent.Event {
	return uevent.Event{Action: action, DevPath: "/devices/pci0000:3a/0000:3a:00.0/" + addr, Subsystem: "pci",
		Vars: map[string]string{"PCI_SLOT_NAME": addr}}
}

// linkEvent is the event netlink sends for the link as it is now.
func linkEvent(t *testing.T, h *netlink.Handle, name string) netdev.LinkEvent {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return netdev.LinkEvent{Name: name, Index: l.Attrs().Index, Link: netdev.LinkOf(l)}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Each batch of events re-reads only what it names, and leaves the scanner knowing what a fresh
// scan knows; the IDs it reports are the devices whose Device changed (and maybe a few more), never
// fewer.
func TestApply(t *testing.T) {
	ns, h := newNamespace(t)
	tr, err := pcitest.NewTree(t.TempDir())
	must(t, err)
	must(t, pcitest.Fixtures["e810"](tr))
	opts := Options{SysfsRoot: tr.Root, PCIIDsPath: "../../testdata/pci.ids", SoftwareLinks: true}
	s, err := New(opts)
	must(t, err)
	defer s.Close()
	scanIn(t, ns, s)
	dir := func(addr string) string {
		d, err := tr.FuncDir(addr)
		must(t, err)
		return d
	}
	steps := []struct {
		name    string
		do      func() Events
		reads   int64    // PCI functions read
		changed []string // exactly the devices that differ afterwards are among the IDs reported, and these are
	}{
		{
			name: "VF unbound: one uevent, that VF read", reads: 1, changed: []string{vf1},
			do: func() Events {
				must(t, os.Remove(filepath.Join(dir(vf1), "driver")))
				return Events{Uevents: []uevent.Event{pciEvent("unbind", vf1)}}
			},
		},
		{
			name: "VF created: it and its PF read", reads: 2, changed: []string{pf0, "0000:3b:01.4"},
			do: func() Events {
				must(t, tr.AddVF(pf0, 4, pcitest.Function{Driver: "iavf", IOMMUGroup: "154"}))
				must(t, tr.AddNetdev("0000:3b:01.4", pcitest.Netdev{Name: "ens1f0v4", MAC: "02:00:00:00:00:04", Carrier: "1"}))
				return Events{Uevents: []uevent.Event{pciEvent("add", "0000:3b:01.4"), pciEvent("bind", "0000:3b:01.4")}}
			},
		},
		{
			name: "software link created: nothing read", reads: 0, changed: []string{"ndi0", "ndi0p"},
			do: func() Events {
				la := netlink.NewLinkAttrs()
				la.Name = "ndi0"
				must(t, h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "ndi0p"}))
				return Events{Links: []netdev.LinkEvent{linkEvent(t, h, "ndi0"), linkEvent(t, h, "ndi0p")}}
			},
		},
		{
			name: "link named as a VF's netdev: the VF read, the link is the VF", reads: 1, changed: []string{vf0},
			do: func() Events {
				la := netlink.NewLinkAttrs()
				la.Name = "ens1f0v0"
				must(t, h.LinkAdd(&netlink.Ifb{LinkAttrs: la}))
				return Events{Links: []netdev.LinkEvent{linkEvent(t, h, "ens1f0v0")}}
			},
		},
		{
			name: "default route through a link named as the PF's netdev: the PF read for its state, the routes for the route", reads: 1, changed: []string{pf0},
			do: func() Events {
				la := netlink.NewLinkAttrs()
				la.Name = "ens1f0"
				must(t, h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "ens1f0p"}))
				l, err := h.LinkByName("ens1f0")
				must(t, err)
				must(t, h.LinkSetUp(l))
				addr, _ := netlink.ParseAddr("10.8.0.2/24")
				must(t, h.AddrAdd(l, addr))
				must(t, h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("10.8.0.1")}))
				return Events{Links: []netdev.LinkEvent{linkEvent(t, h, "ens1f0"), linkEvent(t, h, "ens1f0p")},
					Routes: []netdev.RouteEvent{{LinkIndex: l.Attrs().Index}}}
			},
		},
		{
			name: "an address update repeats the link: nothing", reads: 0, changed: nil,
			do: func() Events {
				return Events{Links: []netdev.LinkEvent{linkEvent(t, h, "ndi0")}}
			},
		},
		{
			name: "VF destroyed while a uevent is not for PCI: only the PCI one counts", reads: 2, changed: []string{pf0, "0000:3b:01.4"},
			do: func() Events {
				must(t, os.Remove(filepath.Join(tr.Root, "bus/pci/devices/0000:3b:01.4")))
				return Events{Uevents: []uevent.Event{pciEvent("remove", "0000:3b:01.4"),
					{Action: "add", DevPath: "/devices/virtual/net/ndi0", Subsystem: "net"}}}
			},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := s.Devices()
			ev := st.do()
			reads := s.Reads()
			got, err := s.Apply(ev)
			must(t, err)
			if r := s.Reads() - reads; r != st.reads {
				t.Errorf("read %d PCI functions, want %d", r, st.reads)
			}
			for _, id := range st.changed {
				if !slices.Contains(got, id) {
					t.Errorf("reported %v, lacks %s", got, id)
				}
			}
			fresh, err := New(opts)
			must(t, err)
			defer fresh.Close()
			want := scanIn(t, ns, fresh)
			now := s.Devices()
			if !reflect.DeepEqual(now, want) {
				t.Errorf("after the events the scanner knows\n%v\na fresh scan finds\n%v", ids(now), ids(want))
				for _, id := range differences(now, want) {
					a, _ := s.Device(id)
					b := find(want, id)
					t.Errorf("%s: %+v\nvs %+v", id, a, b)
				}
			}
			for _, id := range differences(before, now) {
				if !slices.Contains(got, id) {
					t.Errorf("%s changed but was not reported (reported %v)", id, got)
				}
			}
		})
	}
}

// What the events missed, the rescan finds and names: exactly the devices that differ from what
// the scanner knew.
func TestRescanNamesWhatEventsMissed(t *testing.T) {
	ns, h := newNamespace(t)
	tr, err := pcitest.NewTree(t.TempDir())
	must(t, err)
	must(t, pcitest.Fixtures["e810"](tr))
	s, err := New(Options{SysfsRoot: tr.Root, SoftwareLinks: true})
	must(t, err)
	defer s.Close()
	rescan := func() []string {
		t.Helper()
		var missed []string
		err := netnstest.Within(ns, func() error {
			var err error
			missed, err = s.Rescan()
			return err
		})
		must(t, err)
		return missed
	}
	if missed := rescan(); missed != nil {
		t.Fatalf("first Rescan: missed %v, want nothing (nothing known before)", missed)
	}
	d, err := tr.FuncDir(vf0)
	must(t, err)
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"a VF's carrier and a VF gone", func() {
			must(t, os.WriteFile(filepath.Join(d, "net/ens1f0v0/carrier"), []byte("0\n"), 0o644))
			must(t, os.Remove(filepath.Join(tr.Root, "bus/pci/devices", vf1)))
		}, []string{vf0, vf1}},
		{"nothing", func() {}, nil},
		{"a software link, and a link named as the PF's netdev", func() {
			la := netlink.NewLinkAttrs()
			la.Name = "ndr0"
			must(t, h.LinkAdd(&netlink.Ifb{LinkAttrs: la}))
			la = netlink.NewLinkAttrs()
			la.Name = "ens1f0"
			must(t, h.LinkAdd(&netlink.Ifb{LinkAttrs: la}))
		}, []string{"ndr0"}},
		{"that link under a bridge: the PF has an upper now", func() {
			la := netlink.NewLinkAttrs()
			la.Name = "ndrbr"
			must(t, h.LinkAdd(&netlink.Bridge{LinkAttrs: la}))
			br, err := h.LinkByName("ndrbr")
			must(t, err)
			l, err := h.LinkByName("ens1f0")
			must(t, err)
			must(t, h.LinkSetMaster(l, br))
		}, []string{pf0, "ndrbr"}},
	}
	for _, st := range steps {
		before := s.Devices()
		st.do()
		missed := rescan()
		if !slices.Equal(missed, st.want) {
			t.Errorf("%s: missed %v, want %v", st.name, missed, st.want)
		}
		if diff := differences(before, s.Devices()); !slices.Equal(diff, missed) {
			t.Errorf("%s: missed %v, but the devices that differ are %v", st.name, missed, diff)
		}
	}
}

// Lost events are the batch's to tell.
func TestEventsLost(t *testing.T) {
	tests := []struct {
		name string
		ev   Events
		want bool
	}{
		{"nothing", Events{}, false},
		{"a link", Events{Links: []netdev.LinkEvent{{Name: "x"}}}, false},
		{"links resubscribed", Events{Links: []netdev.LinkEvent{{Name: "x"}, {Resync: true}}}, true},
		{"routes resubscribed", Events{Routes: []netdev.RouteEvent{{Resync: true}}}, true},
		{"uevent overflow", Events{Uevents: []uevent.Event{pciEvent("add", vf0), {Overflow: true}}}, true},
	}
	for _, tt := range tests {
		if got := tt.ev.Lost(); got != tt.want {
			t.Errorf("%s: Lost = %v, want %v", tt.name, got, tt.want)
		}
	}
	s, err := New(Options{SysfsRoot: e810Root})
	must(t, err)
	if _, err := s.Apply(Events{Uevents: []uevent.Event{pciEvent("add", vf0)}}); err != ErrNotScanned {
		t.Errorf("Apply before a scan: %v, want ErrNotScanned", err)
	}
}

func ids(devs []device.Device) []string {
	out := make([]string, len(devs))
	for i := range devs {
		out[i] = devs[i].ID
	}
	return out
}

func find(devs []device.Device, id string) device.Device {
	for _, d := range devs {
		if d.ID == id {
			return d
		}
	}
	return device.Device{}
}
