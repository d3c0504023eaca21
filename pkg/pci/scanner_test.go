package pci

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

// fixtureTree writes the named fixture into a temp folder, as a Tree that can still grow.
func fixtureTree(t *testing.T, name string) *pcitest.Tree {
	t.Helper()
	tr, err := pcitest.NewTree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := pcitest.Fixtures[name](tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func funcDir(t *testing.T, tr *pcitest.Tree, addr string) string {
	t.Helper()
	d, err := tr.FuncDir(addr)
	mustDo(t, err)
	return d
}

// Update re-reads what an event names and only that: the functions named, the PF of one that came
// or went, and nothing else from sysfs (counted in Reads); VFs of a re-read PF are re-linked from
// memory. After every change the scanner knows exactly what a full scan of the tree finds, and
// reports as touched every device whose Device differs (and no device outside the touched set
// differs).
func TestScannerUpdate(t *testing.T) {
	const pf0, vf0, vf1, vf2 = "0000:3b:00.0", "0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2"
	tests := []struct {
		name    string
		fixture string
		change  func(t *testing.T, tr *pcitest.Tree)
		update  []string
		reads   int64    // functions read by the Update
		touched []string // at least these IDs reported
	}{
		{
			name: "VF netdev state: that VF only", fixture: "e810", update: []string{vf0}, reads: 1,
			change: func(t *testing.T, tr *pcitest.Tree) {
				mustDo(t, os.WriteFile(filepath.Join(funcDir(t, tr, vf0), "net/ens1f0v0/operstate"), []byte("down\n"), 0o644))
				mustDo(t, os.WriteFile(filepath.Join(funcDir(t, tr, vf0), "net/ens1f0v0/carrier"), []byte("0\n"), 0o644))
			},
			touched: []string{vf0},
		},
		{
			name: "VF unbound from its driver", fixture: "e810", update: []string{vf1}, reads: 1,
			change: func(t *testing.T, tr *pcitest.Tree) {
				mustDo(t, os.Remove(filepath.Join(funcDir(t, tr, vf1), "driver")))
			},
			touched: []string{vf1},
		},
		{
			name: "VF created (sriov_numvfs raised): it and its PF read, the PF's VFs re-linked", fixture: "e810",
			update: []string{"0000:3b:01.4"}, reads: 2,
			change: func(t *testing.T, tr *pcitest.Tree) {
				mustDo(t, tr.AddVF(pf0, 4, pcitest.Function{Driver: "iavf", IOMMUGroup: "154"}))
				mustDo(t, tr.AddNetdev("0000:3b:01.4", pcitest.Netdev{Name: "ens1f0v4", MAC: "02:00:00:00:00:04", Carrier: "1"}))
			},
			touched: []string{pf0, vf0, vf1, vf2, "0000:3b:01.3", "0000:3b:01.4"},
		},
		{
			name: "VF destroyed: it leaves, its PF read again", fixture: "e810", update: []string{vf2}, reads: 2,
			change: func(t *testing.T, tr *pcitest.Tree) {
				mustDo(t, os.Remove(filepath.Join(tr.Root, "bus/pci/devices", vf2)))
				mustDo(t, os.Remove(filepath.Join(funcDir(t, tr, pf0), "virtfn2")))
			},
			touched: []string{pf0, vf2},
		},
		{
			name: "PF netdev renamed: the PF read, its VFs take the name without being read", fixture: "e810",
			update: []string{pf0}, reads: 1,
			change: func(t *testing.T, tr *pcitest.Tree) {
				dir := funcDir(t, tr, pf0)
				mustDo(t, os.Rename(filepath.Join(dir, "net/ens1f0"), filepath.Join(dir, "net/ens1f0new")))
			},
			touched: []string{pf0, vf0, vf1, vf2, "0000:3b:01.3"},
		},
		{
			name: "representor renamed: the PF read, representors old and new touched", fixture: "cx6dx-switchdev",
			update: []string{"0000:86:00.0"}, reads: 1,
			change: func(t *testing.T, tr *pcitest.Tree) {
				dir := funcDir(t, tr, "0000:86:00.0")
				mustDo(t, os.Rename(filepath.Join(dir, "net/ens2f0npf0vf1"), filepath.Join(dir, "net/rep1")))
			},
			touched: []string{"0000:86:00.0", "ens2f0npf0vf1", "rep1"},
		},
		{
			name: "InfiniBand VF: its partition key read again with it", fixture: "mlx-rdma",
			update: []string{"0000:4b:00.1"}, reads: 1,
			change: func(t *testing.T, tr *pcitest.Tree) {
				mustDo(t, os.WriteFile(filepath.Join(funcDir(t, tr, "0000:4b:00.1"), "infiniband/mlx5_16/ports/1/pkeys/0"), []byte("0x8001\n"), 0o644))
			},
			touched: []string{"0000:4b:00.1"},
		},
		{
			name: "InfiniBand PF netdev gone: its VFs re-linked, the key of a VF without netdev follows", fixture: "mlx-rdma",
			update: []string{"0000:4b:00.0"}, reads: 1,
			change: func(t *testing.T, tr *pcitest.Tree) {
				mustDo(t, os.RemoveAll(filepath.Join(funcDir(t, tr, "0000:4b:00.0"), "net")))
			},
			touched: []string{"0000:4b:00.0", "0000:4b:00.1", "0000:4b:00.2"},
		},
		{
			name: "not a PCI address, and an address not on the bus: nothing", fixture: "e810",
			update: []string{"../../etc", "0000:ff:1f.7"}, reads: 1,
			change:  func(t *testing.T, tr *pcitest.Tree) {},
			touched: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := fixtureTree(t, tt.fixture)
			ids, err := OpenIDs(testPCIIDs)
			mustDo(t, err)
			s := NewScanner(tr.Root, ids)
			before, err := s.Scan()
			mustDo(t, err)
			tt.change(t, tr)
			reads := s.Reads()
			touched, err := s.Update(tt.update)
			mustDo(t, err)
			if got := s.Reads() - reads; got != tt.reads {
				t.Errorf("Update read %d functions, want %d", got, tt.reads)
			}
			for _, id := range tt.touched {
				if !slices.Contains(touched, id) {
					t.Errorf("touched %v lacks %s", touched, id)
				}
			}
			want, err := Scan(tr.Root, ids)
			mustDo(t, err)
			checkDevices(t, s.Devices(), want)
			// Outside the touched set nothing differs from before.
			old := map[string]device.Device{}
			for _, d := range before {
				old[d.ID] = d
			}
			for _, d := range want {
				if o, ok := old[d.ID]; !slices.Contains(touched, d.ID) && (!ok || diff(o, d) != nil) {
					t.Errorf("%s changed (%v) but was not reported touched", d.ID, diff(o, d))
				}
				if got, ok := s.Device(d.ID); !ok || diff(got, d) != nil {
					t.Errorf("Device(%s) = %v: %v", d.ID, ok, diff(got, d))
				}
			}
		})
	}
}

// A function whose netdev the sysfs root lists in class/net is found by name, a nested virtio-net
// one too; a software link or a name that is not there is no function.
func TestFunctionOf(t *testing.T) {
	tests := []struct{ fixture, netdev, want string }{
		{"e810", "ens1f0v0", "0000:3b:01.0"},
		{"e810", "ens1f0", "0000:3b:00.0"},
		{"virtio", "eth1", "0000:00:03.0"},
		{"cx6dx-switchdev", "ens2f0npf0vf0", "0000:86:00.0"},
		{"e810", "veth0", ""},
		{"e810", "../../bus", ""},
		{"e810", "", ""},
	}
	for _, tt := range tests {
		s := NewScanner(fixtureRoot(tt.fixture), nil)
		if got := s.FunctionOf(tt.netdev); got != tt.want {
			t.Errorf("%s: FunctionOf(%q) = %q, want %q", tt.fixture, tt.netdev, got, tt.want)
		}
	}
}
