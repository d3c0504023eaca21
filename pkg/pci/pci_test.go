package pci

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

const testPCIIDs = "../../testdata/pci.ids"

func fixtureRoot(name string) string { return filepath.Join("../../testdata/sysfs", name, "sys") }

// diff names every field where got and want differ.
func diff(got, want device.Device) []string {
	var out []string
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := 0; i < g.NumField(); i++ {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			out = append(out, fmt.Sprintf("%s = %#v, want %#v", g.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface()))
		}
	}
	return out
}

func ids(devs []device.Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.ID
	}
	return out
}

func checkDevices(t *testing.T, got, want []device.Device) {
	t.Helper()
	if !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("device IDs = %v, want %v", ids(got), ids(want))
	}
	for i := range want {
		if d := diff(got[i], want[i]); d != nil {
			t.Errorf("device %s:\n  %s", want[i].ID, strings.Join(d, "\n  "))
		}
	}
}

func TestScanFixtures(t *testing.T) {
	db, err := OpenIDs(testPCIIDs)
	if err != nil || db == nil {
		t.Fatalf("OpenIDs(%s) = %v, %v", testPCIIDs, db, err)
	}
	for _, name := range pcitest.FixtureNames() {
		want, ok := wantFixtures[name]
		if !ok {
			t.Errorf("fixture %s has no expected devices", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			got, err := Scan(fixtureRoot(name), db)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			checkDevices(t, got, want)
		})
		// Without pci.ids every name is empty and nothing else changes.
		t.Run(name+"/no-pci.ids", func(t *testing.T) {
			got, err := Scan(fixtureRoot(name), nil)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			noNames := slices.Clone(want)
			for i := range noNames {
				noNames[i].VendorName, noNames[i].DeviceName = "", ""
			}
			checkDevices(t, got, noNames)
		})
	}
}

// The committed trees are exactly what the generator writes (regenerate with `go generate ./pkg/pci`),
// and hold no empty folder, which git would drop.
func TestFixturesMatchGenerator(t *testing.T) {
	for _, name := range pcitest.FixtureNames() {
		t.Run(name, func(t *testing.T) {
			gen, err := pcitest.BuildFixture(name, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			want, err := snapshot(gen)
			if err != nil {
				t.Fatal(err)
			}
			got, err := snapshot(fixtureRoot(name))
			if err != nil {
				t.Fatal(err)
			}
			for p, w := range want {
				if g, ok := got[p]; !ok {
					t.Errorf("%s: missing in testdata (run go generate ./pkg/pci)", p)
				} else if g != w {
					t.Errorf("%s: testdata has %q, generator writes %q", p, g, w)
				}
			}
			for p := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: in testdata, not written by the generator", p)
				}
			}
		})
	}
}

// snapshot maps each path under root to "file:<content>", "link:<target>" or "dir"; an empty folder
// is an error.
func snapshot(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link:" + target
		case d.IsDir():
			entries, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				return fmt.Errorf("%s: empty folder (git drops it)", p)
			}
			out[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file:" + string(b)
		}
		return nil
	})
	return out, err
}

// Each surprise of the untidy tree is logged on one line that names the function and the file.
func TestScanLogsSurprises(t *testing.T) {
	var buf bytes.Buffer
	klog.LogToStderr(false)
	klog.SetOutput(&buf)
	t.Cleanup(func() {
		klog.SetOutput(os.Stderr)
		klog.LogToStderr(true)
	})
	if _, err := Scan(fixtureRoot("untidy"), nil); err != nil {
		t.Fatal(err)
	}
	klog.Flush()
	lines := strings.Split(buf.String(), "\n")
	for _, want := range []struct{ addr, file string }{
		{"0000:af:00.1", "driver"},
		{"0000:af:00.2", "numa_node"},
		{"0000:af:00.3", "vendor"},
	} {
		if !slices.ContainsFunc(lines, func(l string) bool {
			return strings.Contains(l, want.addr) && strings.Contains(l, want.file)
		}) {
			t.Errorf("no log line names %s and %s in:\n%s", want.addr, want.file, buf.String())
		}
	}
}

func TestScanRootErrors(t *testing.T) {
	noBus := t.TempDir()
	if err := os.MkdirAll(filepath.Join(noBus, "class/net"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{filepath.Join(t.TempDir(), "missing"), noBus} {
		devs, err := Scan(root, nil)
		if err == nil {
			t.Errorf("Scan(%s) = %d devices, want an error", root, len(devs))
			continue
		}
		if !strings.Contains(err.Error(), root) {
			t.Errorf("Scan(%s) error %q does not name the root", root, err)
		}
	}
}

// Surprises built on the fly: shapes git cannot hold (an empty net/ folder) or that need a broken file.
func TestScanSurprises(t *testing.T) {
	type setup func(t *testing.T, tr *pcitest.Tree)
	fn := func(addr string) pcitest.Function {
		return pcitest.Function{Addr: addr, Vendor: "8086", Device: "1572", Class: "0x020000", Driver: "i40e",
			NUMANode: "0", IOMMUGroup: "7"}
	}
	funcDir := func(t *testing.T, tr *pcitest.Tree, addr string) string {
		d, err := tr.FuncDir(addr)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup setup
		check func(t *testing.T, devs []device.Device)
	}{
		{
			name: "VF netdev in a pod leaves an empty net folder",
			setup: func(t *testing.T, tr *pcitest.Tree) {
				must(t, tr.AddPF(fn("0000:3b:00.0"), pcitest.SRIOV{TotalVFs: 4, Offset: 8, Stride: 1, VFDevice: "154c"}))
				must(t, tr.AddNetdev("0000:3b:00.0", pcitest.Netdev{Name: "ens1f0", MAC: "02:00:00:00:00:01", Carrier: "1"}))
				must(t, tr.AddVF("0000:3b:00.0", 0, pcitest.Function{Driver: "iavf", IOMMUGroup: "9"}))
				must(t, os.Mkdir(filepath.Join(funcDir(t, tr, "0000:3b:01.0"), "net"), 0o755))
			},
			check: func(t *testing.T, devs []device.Device) {
				vf := devs[1]
				if vf.ID != "0000:3b:01.0" || vf.IfName != "" || vf.IfNames != nil || vf.VFIndex != 0 || vf.PFName != "ens1f0" || vf.MTU != -1 {
					t.Errorf("VF = %+v, want listed with no netdev, index 0 of ens1f0", vf)
				}
			},
		},
		{
			name: "class file unreadable: class from modalias",
			setup: func(t *testing.T, tr *pcitest.Tree) {
				must(t, tr.AddFunction(fn("0000:18:00.0")))
				must(t, os.Remove(filepath.Join(funcDir(t, tr, "0000:18:00.0"), "class")))
			},
			check: func(t *testing.T, devs []device.Device) {
				if len(devs) != 1 || devs[0].Class != "0x020000" || devs[0].Vendor != "8086" {
					t.Errorf("devices = %+v, want 0000:18:00.0 of class 0x020000", devs)
				}
			},
		},
		{
			name: "neither class nor modalias: skipped, the rest found",
			setup: func(t *testing.T, tr *pcitest.Tree) {
				f := fn("0000:18:00.0")
				f.NoModalias = true
				must(t, tr.AddFunction(f))
				must(t, os.Remove(filepath.Join(funcDir(t, tr, "0000:18:00.0"), "class")))
				must(t, tr.AddFunction(fn("0000:18:00.1")))
			},
			check: func(t *testing.T, devs []device.Device) {
				if !slices.Equal(ids(devs), []string{"0000:18:00.1"}) {
					t.Errorf("devices = %v, want only 0000:18:00.1", ids(devs))
				}
			},
		},
		{
			name: "physfn link but no virtfn link back: PF known, index unknown",
			setup: func(t *testing.T, tr *pcitest.Tree) {
				must(t, tr.AddPF(fn("0000:3b:00.0"), pcitest.SRIOV{TotalVFs: 4, Offset: 8, Stride: 1, VFDevice: "154c"}))
				must(t, tr.AddNetdev("0000:3b:00.0", pcitest.Netdev{Name: "ens1f0", MAC: "02:00:00:00:00:01"}))
				must(t, tr.AddVF("0000:3b:00.0", 1, pcitest.Function{Driver: "iavf"}))
				must(t, os.Remove(filepath.Join(funcDir(t, tr, "0000:3b:00.0"), "virtfn1")))
			},
			check: func(t *testing.T, devs []device.Device) {
				vf := devs[1]
				if vf.PFPCIAddress != "0000:3b:00.0" || vf.VFIndex != -1 || vf.PFName != "ens1f0" {
					t.Errorf("VF = %+v, want PF 0000:3b:00.0 (ens1f0), index -1", vf)
				}
			},
		},
		{
			name: "garbage mtu, unknown link type, iommu_group link to a non-number",
			setup: func(t *testing.T, tr *pcitest.Tree) {
				f := fn("0000:18:00.0")
				f.IOMMUGroup = ""
				must(t, tr.AddFunction(f))
				must(t, tr.AddNetdev("0000:18:00.0", pcitest.Netdev{Name: "tun9", Type: 65534, MAC: "", Carrier: "1"}))
				dir := funcDir(t, tr, "0000:18:00.0")
				must(t, os.WriteFile(filepath.Join(dir, "net/tun9/mtu"), []byte("lots\n"), 0o644))
				must(t, os.Symlink("../../../kernel/iommu_groups/none", filepath.Join(dir, "iommu_group")))
			},
			check: func(t *testing.T, devs []device.Device) {
				d := devs[0]
				if d.MTU != -1 || d.LinkType != "65534" || d.IOMMUGroup != -1 || d.IfName != "tun9" {
					t.Errorf("device = %+v, want mtu -1, link type 65534, iommu group -1", d)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := pcitest.NewTree(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tc.setup(t, tr)
			devs, err := Scan(tr.Root, nil)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			tc.check(t, devs)
		})
	}
}

func TestIsRepresentor(t *testing.T) {
	tests := []struct {
		port, switchID string
		want           bool
	}{
		{"", "", false},                   // no switchdev (igb, iavf, virtio)
		{"", "b8e4a10003a16b9c", false},   // switch id without a port name: old uplink
		{"p0", "b8e4a10003a16b9c", false}, // uplink
		{"p1", "e0c7a5ffff9196b4", false}, // legacy-mode E810 port 1
		{"pf0vf0", "b8e4a10003a16b9c", true},
		{"pf1vf0", "b8e4a10003a16b9c", true},
		{"pf0vf127", "x", true},
		{"pf0sf3", "x", true},
		{"c1pf0vf1", "x", true},         // external controller (BlueField host)
		{"pf0", "x", true},              // host PF representor on a DPU
		{"3", "b8e4a10003a16b9c", true}, // pre-4.x kernels: the VF number
		{"3", "", false},
		{"vf0", "x", false},
		{"pf0vf", "x", false},
	}
	for _, tc := range tests {
		got := isRepresentor(tc.port, func() string { return tc.switchID })
		if got != tc.want {
			t.Errorf("isRepresentor(%q, switch id %q) = %v, want %v", tc.port, tc.switchID, got, tc.want)
		}
	}
}

func TestLinkTypeName(t *testing.T) {
	for in, want := range map[string]string{"1": "ether", "32": "infiniband", "772": "loopback", "65534": "65534", "": ""} {
		if got := linkTypeName(in); got != want {
			t.Errorf("linkTypeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClassFromModalias(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"pci:v00008086d0000159Bsv00008086sd00000003bc02sc00i00", "0x020000", true},
		{"pci:v000015B3d0000101Bsv000015B3sd00000007bc02sc07i00", "0x020700", true},
		{"pci:v00008086d0000159B", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := classFromModalias(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("classFromModalias(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLoadPCIDB(t *testing.T) {
	db, err := LoadPCIDB(testPCIIDs)
	if err != nil {
		t.Fatal(err)
	}
	if v, d := names(db, "8086", "159b"); v != intel || d != e810XXV {
		t.Errorf("names(8086, 159b) = %q, %q", v, d)
	}
	if v, d := names(db, "8086", "ffff"); v != intel || d != "" {
		t.Errorf("names of an unknown device = %q, %q, want vendor only", v, d)
	}
	if again, _ := LoadPCIDB(testPCIIDs); again != db {
		t.Error("second LoadPCIDB parsed the file again")
	}
	missing := filepath.Join(t.TempDir(), "pci.ids")
	db, err = LoadPCIDB(missing)
	if db != nil || err != nil {
		t.Errorf("LoadPCIDB(missing) = %v, %v, want nil, nil", db, err)
	}
}

// Smoke test on this machine's own /sys, read-only: every netdev /sys/class/net links into a PCI
// function is found on that function, and this VM's virtio-net (0000:00:03.0) reads right.
func TestScanRealSysfs(t *testing.T) {
	if _, err := os.Stat("/sys/bus/pci/devices"); err != nil {
		t.Skipf("no PCI bus in /sys: %v", err)
	}
	devs, err := Scan("/sys", nil)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]device.Device{}
	for _, d := range devs {
		byID[d.ID] = d
	}
	links, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, l := range links {
		target, err := filepath.EvalSymlinks(filepath.Join("/sys/class/net", l.Name()))
		if err != nil || !strings.HasPrefix(target, "/sys/devices/pci") {
			continue // virtual link
		}
		var addr string
		for p := filepath.Dir(target); p != "/sys/devices"; p = filepath.Dir(p) {
			if device.IsPCIAddress(filepath.Base(p)) {
				addr = filepath.Base(p)
				break
			}
		}
		d, ok := byID[addr]
		if !ok {
			if c, _ := readAttr(filepath.Join("/sys/bus/pci/devices", addr, "class")); strings.HasPrefix(c, "0x02") {
				t.Errorf("netdev %s of network function %s: function not found", l.Name(), addr)
			}
			continue
		}
		checked++
		if !d.Representor && !slices.Contains(d.IfNames, l.Name()) {
			t.Errorf("function %s: IfNames %v lack %s", addr, d.IfNames, l.Name())
		}
	}
	t.Logf("%d devices, %d netdevs cross-checked", len(devs), checked)

	d, ok := byID["0000:00:03.0"]
	if c, _ := readAttr("/sys/bus/pci/devices/0000:00:03.0/vendor"); c != "0x1af4" {
		t.Logf("no virtio-net at 0000:00:03.0 on this machine: only the cross-check ran")
		return
	}
	if !ok {
		t.Fatalf("virtio-net 0000:00:03.0 not found in %v", ids(devs))
	}
	if d.Vendor != "1af4" || d.Device != "1041" || d.Driver != "virtio-pci" || d.IfName == "" || d.Class != eth {
		t.Errorf("0000:00:03.0 = %+v, want 1af4:1041 virtio-pci with a netdev", d)
	}
}

// The benchmark tree reads back as generated: PFs with their VFs in order, uplinks as PF names.
func TestGenerate(t *testing.T) {
	root, err := pcitest.Generate(t.TempDir(), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0000:10:00.0", "0000:10:01.0", "0000:10:01.1", "0000:10:01.2",
		"0000:11:00.0", "0000:11:01.0", "0000:11:01.1", "0000:11:01.2"}
	if !slices.Equal(ids(devs), want) {
		t.Fatalf("devices = %v, want %v", ids(devs), want)
	}
	for i, d := range devs {
		pf, vf := i/4, i%4-1
		if vf < 0 {
			if d.SriovNumVFs != 3 || d.IfName != fmt.Sprintf("ens%df0", pf+1) || d.NUMANode != pf {
				t.Errorf("PF %s = %+v", d.ID, d)
			}
			continue
		}
		if d.VFIndex != vf || d.PFName != fmt.Sprintf("ens%df0", pf+1) || d.IfName != fmt.Sprintf("ens%df0v%d", pf+1, vf) ||
			d.Driver != "iavf" || d.Device != "1889" || d.IOMMUGroup < 1000 {
			t.Errorf("VF %s = %+v", d.ID, d)
		}
	}
}
