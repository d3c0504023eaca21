package pci

import (
	"path/filepath"
	"testing"

	"github.com/jaypipes/ghw"
	ghwpci "github.com/jaypipes/ghw/pkg/pci"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

// Scans name functions as ghw did when it named them: for every fixture ghw can read (all but
// untidy, whose function without a modalias makes ghw return nothing), each function's names are
// ghw's, with ghw's "unknown" for IDs missing from pci.ids as "".
func TestNamesAsGHW(t *testing.T) {
	db, err := LoadPCIDB(testPCIIDs)
	if err != nil || db == nil {
		t.Fatalf("load %s: %v", testPCIIDs, err)
	}
	ids, err := OpenIDs(testPCIIDs)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pcitest.FixtureNames() {
		t.Run(name, func(t *testing.T) {
			root, err := filepath.Abs(fixtureRoot(name))
			if err != nil {
				t.Fatal(err)
			}
			info, err := ghw.PCI(ghw.WithChroot(filepath.Dir(root)), ghw.WithPCIDB(db), ghw.WithDisableTopology(), ghw.WithDisableWarnings())
			if err != nil {
				t.Fatal(err)
			}
			if name == "untidy" {
				if len(info.Devices) != 0 {
					t.Fatalf("ghw read %d functions of untidy; this test assumed it drops them all", len(info.Devices))
				}
				return
			}
			devs, err := Scan(root, ids)
			if err != nil {
				t.Fatal(err)
			}
			byAddr := map[string]*ghwpci.Device{}
			for _, d := range info.Devices {
				byAddr[d.Address] = d
			}
			checked := 0
			for _, d := range devs {
				g, ok := byAddr[d.PCIAddress]
				if !ok || d.Representor {
					continue
				}
				checked++
				if v, p := unknownToEmpty(g.Vendor.Name), unknownToEmpty(g.Product.Name); d.VendorName != v || d.DeviceName != p {
					t.Errorf("%s: names %q / %q, ghw %q / %q", d.ID, d.VendorName, d.DeviceName, v, p)
				}
			}
			if checked == 0 {
				t.Error("no function compared")
			}
		})
	}
}

// unknownToEmpty maps ghw's placeholder for IDs missing from pci.ids to the absent value.
func unknownToEmpty(name string) string {
	if name == "unknown" {
		return ""
	}
	return name
}

// sriovnet reads the fixture's class/net through the rooted filesystem: the uplink is a physical
// port, representors are VF ports, and a netdev without phys_switch_id is not its business.
func TestSriovnetRepresentor(t *testing.T) {
	tests := []struct {
		fixture, netdev    string
		representor, known bool
	}{
		{"cx6dx-switchdev", "ens2f0np0", false, true},
		{"cx6dx-switchdev", "ens2f0npf0vf0", true, true},
		{"cx6dx-switchdev", "58609951635cbfa", true, true},
		{"e810", "ens1f0", false, true}, // legacy mode: phys_switch_id and port p0
		{"i350", "eno1", false, false},  // no eswitch at all
	}
	for _, tt := range tests {
		t.Run(tt.fixture+"/"+tt.netdev, func(t *testing.T) {
			var rep, known bool
			withSriovnetRoot(fixtureRoot(tt.fixture), func() { rep, known = sriovnetRepresentor(tt.netdev) })
			if rep != tt.representor || known != tt.known {
				t.Errorf("representor=%v known=%v, want %v %v", rep, known, tt.representor, tt.known)
			}
		})
	}
}

func TestRootedFsIsReadOnly(t *testing.T) {
	r := rootedFs{root: t.TempDir()}
	if err := r.MkdirAll("/sys/x", 0o755); err != errReadOnly {
		t.Errorf("MkdirAll = %v, want read-only error", err)
	}
	if err := r.WriteFile("/sys/x", nil, 0o644); err != errReadOnly {
		t.Errorf("WriteFile = %v, want read-only error", err)
	}
	if got := r.path("/sys/bus/pci"); got != r.root+"/bus/pci" {
		t.Errorf("path(/sys/bus/pci) = %s", got)
	}
	if got := r.path("/sysfoo"); got != "/sysfoo" {
		t.Errorf("path(/sysfoo) = %s, want unchanged", got)
	}
}
