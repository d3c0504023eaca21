package inventory

import (
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

// BenchmarkRescanLinks is the inventory's periodic rescan of a node whose VF netdevs are links
// of its namespace, as on real hardware: 8 PFs x 128 VFs in sysfs (pcitest.Generate) and an ifb
// link named as each of their netdevs. One op reads every function and dumps every link.
func BenchmarkRescanLinks(b *testing.B) {
	ns, h := newNamespace(b)
	tr, err := pcitest.NewTree(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	const pfs, vfs = 8, 128
	if err := pcitest.GenerateInto(tr, pfs, vfs); err != nil {
		b.Fatal(err)
	}
	for p := range pfs {
		pf := fmt.Sprintf("ens%df0", p+1)
		for v := -1; v < vfs; v++ {
			name := pf
			if v >= 0 {
				name = fmt.Sprintf("%sv%d", pf, v)
			}
			la := netlink.NewLinkAttrs()
			la.Name = name
			if err := h.LinkAdd(&netlink.Ifb{LinkAttrs: la}); err != nil {
				b.Fatal(err)
			}
		}
	}
	s, err := New(Options{SysfsRoot: tr.Root, SoftwareLinks: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := netnstest.Within(ns, func() error { _, err := s.Scan(); return err }); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if missed, err := s.Rescan(); err != nil || len(missed) != 0 {
			b.Fatalf("Rescan: missed %v, %v", missed, err)
		}
	}
}
