package pcitest

import "testing"

func TestVFAddr(t *testing.T) {
	tests := []struct {
		name  string
		pf    string
		sriov SRIOV
		index int
		want  string
	}{
		{"E810 port 0, offset 8", "0000:3b:00.0", SRIOV{TotalVFs: 128, Offset: 8, Stride: 1}, 0, "0000:3b:01.0"},
		{"E810 port 0, VF 3", "0000:3b:00.0", SRIOV{TotalVFs: 128, Offset: 8, Stride: 1}, 3, "0000:3b:01.3"},
		{"E810 port 0, last VF", "0000:3b:00.0", SRIOV{TotalVFs: 128, Offset: 8, Stride: 1}, 127, "0000:3b:10.7"},
		{"I350 PF0 VF1, stride 4", "0000:05:00.0", SRIOV{TotalVFs: 7, Offset: 128, Stride: 4}, 1, "0000:05:10.4"},
		{"I350 PF1 VF0 interleaves", "0000:05:00.1", SRIOV{TotalVFs: 7, Offset: 128, Stride: 4}, 0, "0000:05:10.1"},
		{"ConnectX-6 Dx, offset 2", "0000:86:00.0", SRIOV{TotalVFs: 8, Offset: 2, Stride: 1}, 2, "0000:86:00.4"},
		{"past the bus", "0000:3b:00.0", SRIOV{TotalVFs: 300, Offset: 8, Stride: 1}, 250, "0000:3c:00.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := NewTree(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.AddPF(Function{Addr: tc.pf, Vendor: "8086", Device: "159b", Class: "0x020000"}, tc.sriov); err != nil {
				t.Fatal(err)
			}
			got, err := tr.VFAddr(tc.pf, tc.index)
			if err != nil || got != tc.want {
				t.Errorf("VFAddr(%s, %d) = %q, %v, want %q", tc.pf, tc.index, got, err, tc.want)
			}
		})
	}
}

func TestTreeErrors(t *testing.T) {
	tr, err := NewTree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.AddFunction(Function{Addr: "3b:00.0"}); err == nil {
		t.Error("AddFunction accepted a short address")
	}
	if err := tr.AddVF("0000:3b:00.0", 0, Function{}); err == nil {
		t.Error("AddVF accepted a PF the tree does not have")
	}
	if err := tr.AddPF(Function{Addr: "0000:3b:00.0", Vendor: "8086", Device: "1521", Class: "0x020000"},
		SRIOV{TotalVFs: 1, Offset: 128, Stride: 4}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddVF("0000:3b:00.0", 1, Function{}); err == nil {
		t.Error("AddVF accepted VF 1 of a PF with one VF")
	}
	if _, err := Generate(t.TempDir(), 1, 249); err == nil {
		t.Error("Generate accepted 249 VFs per PF")
	}
}
