package pci

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jaypipes/ghw"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

// The 8 PF x 128 VF tree (1,032 functions) takes seconds to write: built once per test binary.
var (
	benchOnce sync.Once
	benchRoot string
	benchErr  error
)

func benchTree(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pci-bench-")
		if err != nil {
			benchErr = err
			return
		}
		benchRoot, benchErr = pcitest.Generate(dir, 8, 128)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchRoot
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRoot != "" {
		os.RemoveAll(filepath.Dir(benchRoot))
	}
	os.Exit(code)
}

// benchInputs is the generated tree and the test pci.ids.
func benchInputs(b *testing.B) (string, *IDs) {
	b.Helper()
	root := benchTree(b)
	ids, err := OpenIDs(testPCIIDs)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	return root, ids
}

// BenchmarkScan: discovery of 8 PFs x 128 VFs, every function with a netdev, names from pci.ids
// (looked up once: the scanner's IDs are made once, as the daemon's are).
func BenchmarkScan(b *testing.B) {
	root, ids := benchInputs(b)
	for b.Loop() {
		devs, err := Scan(root, ids)
		if err != nil || len(devs) != 8*129 {
			b.Fatalf("Scan = %d devices, %v", len(devs), err)
		}
	}
}

// BenchmarkScanWithoutNames is the same scan with no pci.ids: the sysfs part alone.
func BenchmarkScanWithoutNames(b *testing.B) {
	root, _ := benchInputs(b)
	for b.Loop() {
		devs, err := Scan(root, nil)
		if err != nil || len(devs) != 8*129 {
			b.Fatalf("Scan = %d devices, %v", len(devs), err)
		}
	}
}

// BenchmarkGHWPCI is ghw.PCI alone on the same tree (topology off, pci.ids handed over), which
// scans used to call for the names: the floor of a ghw-based scan.
func BenchmarkGHWPCI(b *testing.B) {
	root, _ := benchInputs(b)
	db, err := LoadPCIDB(testPCIIDs)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		info, err := ghw.PCI(ghw.WithChroot(filepath.Dir(root)), ghw.WithPCIDB(db), ghw.WithDisableTopology(), ghw.WithDisableWarnings())
		if err != nil || len(info.Devices) != 8*129 {
			b.Fatalf("ghw.PCI = %v", err)
		}
	}
}
