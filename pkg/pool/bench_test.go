package pool_test

import (
	"fmt"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// benchDevices is a node with 8 E810 PFs x 128 VFs (1,032 PCI functions): VFs 0-63 on iavf,
// 64-127 on vfio-pci (no netdev).
func benchDevices() []device.Device {
	var devs []device.Device
	for p := 0; p < 8; p++ {
		bus := 0x30 + p*0x10
		pfAddr := fmt.Sprintf("0000:%02x:00.0", bus)
		pfName := fmt.Sprintf("ens%df0", p+1)
		devs = append(devs, pciPF(pfAddr, "8086", "1592", "ice", pfName, 128))
		for v := 0; v < 128; v++ {
			driver, ifName := "iavf", fmt.Sprintf("%sv%d", pfName, v)
			if v >= 64 {
				driver, ifName = "vfio-pci", ""
			}
			devs = append(devs, pciVF(vfAddr(bus, v), pfAddr, pfName, v, "8086", "1889", driver, ifName))
		}
	}
	return devs
}

// benchConfig has 4 resources touching every kind of selector field.
func benchConfig(t testing.TB) *config.Config {
	cfg, err := config.Parse([]byte(`{"resourceList":[
		{"resourceName":"low_vfs","selectors":[{"pfNames":["ens1f0#0-15","ens2f0#0-15"]},{"rootDevices":["0000:50:00.0#0-15"]}]},
		{"resourceName":"dpdk","selectors":[{"vendors":["8086"],"devices":["1889"],"drivers":["vfio-pci"]}]},
		{"resourceName":"netdev_vfs","selectors":[{"drivers":["iavf"],"linkTypes":["ether"],"ifNames":["ens*v*"]}]},
		{"resourceName":"uplinks","selectors":[{"pciAddresses":["0000:30:00.0","0000:40:00.0"]}]}]}`), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestBenchLayout(t *testing.T) {
	r := pool.Assign(benchDevices(), benchConfig(t))
	want := map[string]int{
		"example.com/low_vfs":    3 * 16,
		"example.com/dpdk":       8 * 64,
		"example.com/netdev_vfs": 8*64 - 3*16,
		"example.com/uplinks":    0, // PFs with VFs are never offered
	}
	for _, p := range r.Pools {
		if got := len(p.Devices); got != want[p.Resource.FullName()] {
			t.Errorf("%s: %d devices, want %d", p.Resource.FullName(), got, want[p.Resource.FullName()])
		}
	}
	if len(r.Unassigned) != 8 {
		t.Errorf("%d unassigned, want the 8 PFs with VFs", len(r.Unassigned))
	}
}

func BenchmarkAssign(b *testing.B) {
	devs := benchDevices()
	cfg := benchConfig(b)
	b.ReportAllocs()
	for b.Loop() {
		pool.Assign(devs, cfg)
	}
}
