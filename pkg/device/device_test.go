package device

import "testing"

func TestVFIOGroupNode(t *testing.T) {
	tests := []struct {
		name    string
		group   int
		noIOMMU bool
		want    string
	}{
		{"IOMMU group", 42, false, "/dev/vfio/42"},
		{"no-IOMMU group", 7, true, "/dev/vfio/noiommu-7"},
		{"group 0", 0, false, "/dev/vfio/0"},
		{"no group", -1, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New()
			d.Driver, d.IOMMUGroup, d.VFIONoIOMMU = VFIODriver, tt.group, tt.noIOMMU
			if got := d.VFIOGroupNode(); got != tt.want {
				t.Errorf("VFIOGroupNode() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExclusionReason(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Device)
		want string
	}{
		{"plain device", func(*Device) {}, ""},
		{"loopback", func(d *Device) { d.Loopback = true }, ReasonLoopback},
		{"default route", func(d *Device) { d.DefaultRoute = true }, ReasonDefaultRoute},
		{"representor", func(d *Device) { d.Representor = true }, ReasonRepresentor},
		{"loopback wins over default route", func(d *Device) { d.Loopback, d.DefaultRoute = true, true }, ReasonLoopback},
		// VFs enabled depends on the config: pkg/pool decides, not the device.
		{"PF with VFs", func(d *Device) { d.SriovNumVFs = 4 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New()
			tt.set(&d)
			if got := d.ExclusionReason(); got != tt.want {
				t.Errorf("ExclusionReason() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSortByID(t *testing.T) {
	devs := []Device{{ID: "veth1"}, {ID: "0000:3b:01.0"}, {ID: "dummy0"}, {ID: "0000:05:10.4"}}
	SortByID(devs)
	want := []string{"0000:05:10.4", "0000:3b:01.0", "dummy0", "veth1"}
	for i, d := range devs {
		if d.ID != want[i] {
			t.Fatalf("order %v, want %v", devs, want)
		}
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
		if got := IsPCIAddress(tt.addr); got != tt.want {
			t.Errorf("IsPCIAddress(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
