package devinfo_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/devinfo"
)

func TestWriteReadRemove(t *testing.T) {
	d := devinfo.New(filepath.Join(t.TempDir(), "devinfo", "dp"))
	const res = "intel.com/intel_sriov_netdevice"
	if got, want := d.File(res, "0000:3b:02.1"), filepath.Join(d.Path(), "intel.com-intel_sriov_netdevice-0000:3b:02.1-device.json"); got != want {
		t.Errorf("File = %s, want %s (the name Multus looks for)", got, want)
	}
	if err := d.Write(res, "0000:3b:02.1", devinfo.PCI("0000:3b:02.1", nil)); err != nil {
		t.Fatal(err)
	}
	// Byte for byte what sriov-dp writes through the library (json.Marshal, no newline).
	data, err := os.ReadFile(d.File(res, "0000:3b:02.1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:3b:02.1"}}`; string(data) != want {
		t.Errorf("content %s, want %s", data, want)
	}
	fi, err := os.Stat(d.File(res, "0000:3b:02.1"))
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("mode %v, %v; want 0444", fi.Mode(), err)
	}
	// Rewriting an existing (read-only) file replaces it: a restarted pod's new allocation.
	if err := d.Write(res, "0000:3b:02.1", devinfo.PCI("0000:3b:02.1", []string{"mlx5_2", "mlx5_3"})); err != nil {
		t.Fatal(err)
	}
	info, err := d.Read(res, "0000:3b:02.1")
	if err != nil || info.Pci.RdmaDevice != "mlx5_2,mlx5_3" {
		t.Errorf("Read = %+v, %v", info, err)
	}
	if err := d.Write("intel.com/intel_sriov_netdevice-b", "0000:3b:02.2", devinfo.PCI("0000:3b:02.2", nil)); err != nil {
		t.Fatal(err)
	}
	ids, err := d.Devices(res, func(id string) bool { return len(id) == 12 })
	if err != nil || !reflect.DeepEqual(ids, []string{"0000:3b:02.1"}) {
		t.Errorf("Devices = %v, %v; want only the resource's own device", ids, err)
	}
	if err := d.Remove(res, "0000:3b:02.1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(res, "0000:3b:02.1"); err != nil {
		t.Errorf("removing an absent file: %v", err)
	}
	if _, err := os.Stat(d.File(res, "0000:3b:02.1")); !os.IsNotExist(err) {
		t.Errorf("file still there: %v", err)
	}
	empty := devinfo.New(filepath.Join(t.TempDir(), "absent"))
	if ids, err := empty.Devices(res, func(string) bool { return true }); err != nil || ids != nil {
		t.Errorf("Devices of an absent folder = %v, %v", ids, err)
	}
}
