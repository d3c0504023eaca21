package pci

import (
	"testing"
)

// The names of the fixture trees come through ghw, except in the untidy tree, whose function without
// a modalias makes ghw return nothing; there the scan falls back to pci.ids itself.
func TestGHWNames(t *testing.T) {
	db, err := LoadPCIDB(testPCIIDs)
	if err != nil || db == nil {
		t.Fatalf("load %s: %v", testPCIIDs, err)
	}
	tests := []struct {
		fixture    string
		addr       string
		wantVendor string
		wantDevice string
		wantNil    bool
	}{
		{fixture: "e810", addr: "0000:3b:01.0", wantVendor: "Intel Corporation", wantDevice: "Ethernet Adaptive Virtual Function"},
		{fixture: "cx6dx-switchdev", addr: "0000:86:00.0", wantVendor: "Mellanox Technologies", wantDevice: "MT2892 Family [ConnectX-6 Dx]"},
		{fixture: "virtio", addr: "0000:00:03.0", wantVendor: "Red Hat, Inc.", wantDevice: "Virtio 1.0 network device"},
		{fixture: "untidy", wantNil: true},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			got := ghwNames(fixtureRoot(tt.fixture), db, 1)
			if tt.wantNil {
				if got != nil {
					t.Fatalf("ghw names for %s = %v, want none (ghw drops all without modalias)", tt.fixture, got)
				}
				return
			}
			n, ok := got[tt.addr]
			if !ok {
				t.Fatalf("ghw has no %s among %d functions", tt.addr, len(got))
			}
			if n.vendor != tt.wantVendor || n.device != tt.wantDevice {
				t.Errorf("%s: names %q / %q, want %q / %q", tt.addr, n.vendor, n.device, tt.wantVendor, tt.wantDevice)
			}
		})
	}
	if got := ghwNames(fixtureRoot("e810"), nil, 1); got != nil {
		t.Errorf("without pci.ids ghw must not be asked (it would load its own): got %v", got)
	}
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

func TestIsPCIAddress(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"0000:3b:01.2", true},
		{"10000:e1:00.0", true}, // Intel VMD domain
		{"0000:3b:1f.7", true},
		{"0000:3b:20.0", false}, // device above 1f
		{"0000:3b:01.8", false}, // function above 7
		{"3b:01.2", false},      // no domain: sysfs always has one
		{"0000:3B:01.2", false}, // sysfs is lower case
		{"0000-3b:01.2", false},
		{"", false},
		{"123456789:3b:01.2", false},
	}
	for _, tt := range tests {
		if got := isPCIAddress(tt.addr); got != tt.want {
			t.Errorf("isPCIAddress(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
