package inventory

import (
	"net"
	"runtime"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

const e810Root = "../../testdata/sysfs/e810/sys"

// scanIn runs the scan with the calling thread inside ns, as the daemon runs in the host's.
func scanIn(t *testing.T, ns netns.NsHandle, s *Scanner) []device.Device {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // a thread left in the test namespace would poison later tests
		}
	}()
	devs, err := s.Scan()
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return devs
}

func newNamespace(t testing.TB) (netns.NsHandle, *netlink.Handle) {
	n := netnstest.New(t)
	return netns.NsHandle(n.FD()), n.H
}

// The scan joins the fixture's PCI functions with the namespace's software links, and a PCI netdev
// holding the namespace's default route is marked (here a veth stands in for the E810 PF's netdev
// ens1f0, which the fixture's sysfs lists).
func TestScanJoinsPCIAndSoftwareLinks(t *testing.T) {
	ns, h := newNamespace(t)
	for _, name := range []string{"dummy0", "ens1f0"} {
		la := netlink.NewLinkAttrs()
		la.Name = name
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
			t.Fatal(err)
		}
	}
	uplink, _ := h.LinkByName("ens1f0")
	if err := h.LinkSetUp(uplink); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.7.0.2/24")
	if err := h.AddrAdd(uplink, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: uplink.Attrs().Index, Gw: net.ParseIP("10.7.0.1")}); err != nil {
		t.Fatal(err)
	}

	s, err := New(Options{SysfsRoot: e810Root, PCIIDsPath: "../../testdata/pci.ids", SoftwareLinks: true})
	if err != nil {
		t.Fatal(err)
	}
	devs := scanIn(t, ns, s)
	byID := map[string]device.Device{}
	for i, d := range devs {
		byID[d.ID] = d
		if i > 0 && devs[i-1].ID >= d.ID {
			t.Errorf("not sorted: %s before %s", devs[i-1].ID, d.ID)
		}
	}
	tests := []struct {
		id           string
		pci          bool
		defaultRoute bool
		loopback     bool
		kind         string
	}{
		{id: "0000:3b:00.0", pci: true, defaultRoute: true}, // PF ens1f0
		{id: "0000:3b:00.1", pci: true},
		{id: "0000:3b:01.0", pci: true},
		{id: "dummy0", kind: "veth"},
		{id: "lo", loopback: true},
	}
	for _, tt := range tests {
		d, ok := byID[tt.id]
		if !ok {
			t.Errorf("%s missing from %d devices", tt.id, len(devs))
			continue
		}
		if d.IsPCI() != tt.pci || d.DefaultRoute != tt.defaultRoute || d.Loopback != tt.loopback || d.Kind != tt.kind {
			t.Errorf("%s: pci=%v defaultRoute=%v loopback=%v kind=%q, want %v %v %v %q",
				tt.id, d.IsPCI(), d.DefaultRoute, d.Loopback, d.Kind, tt.pci, tt.defaultRoute, tt.loopback, tt.kind)
		}
	}
	// On a real host the link named ens1f0 is the PF's netdev: listed once, as the PCI device,
	// whatever its netlink kind (veth here; IPoIB's are "ipoib").
	if _, dup := byID["ens1f0"]; dup {
		t.Error("the PF's netdev ens1f0 is listed a second time as a software link")
	}
	if got := byID["0000:3b:01.0"].VendorName; got != "Intel Corporation" {
		t.Errorf("VF vendor name %q: pci.ids not used", got)
	}
}

func TestScanWithoutSoftwareLinks(t *testing.T) {
	s, err := New(Options{SysfsRoot: e810Root})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if !d.IsPCI() {
			t.Errorf("software link %s listed with SoftwareLinks off", d.ID)
		}
	}
	if len(devs) == 0 {
		t.Fatal("no PCI devices from the e810 fixture")
	}
}

func TestScanBadRoot(t *testing.T) {
	s, err := New(Options{SysfsRoot: t.TempDir() + "/absent"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(); err == nil {
		t.Fatal("scan of a missing sysfs root succeeded")
	}
}
