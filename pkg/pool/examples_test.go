package pool_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

func loadExample(t *testing.T, name, defaultPrefix string) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join("../../configs", name), defaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestKindDummyExample is the seed demo's node: dummy links beside the node's own interfaces.
func TestKindDummyExample(t *testing.T) {
	devs := []device.Device{
		soft("dummy0", "dummy"),
		soft("dummy1", "dummy"),
		soft("dummy-test", "veth"), // the name is what counts
		soft("veth1a2b3c", "veth"), // a pod's veth: not ours
		with(soft("eth0", "veth"), func(d *device.Device) { d.DefaultRoute = true }),
		with(soft("lo", ""), func(d *device.Device) { d.Loopback = true }),
		with(soft("dummy9", "dummy"), func(d *device.Device) { d.DefaultRoute = true }), // carries the route: never
		pciPF("0000:00:04.0", "1af4", "1041", "virtio-pci", "ens4", 0),
	}
	r := pool.Assign(devs, loadExample(t, "kind-dummy.yaml", config.DefaultResourcePrefix))
	want := layout{
		order: []string{"networking.k8s.io/netdevice"},
		pools: map[string][]string{"networking.k8s.io/netdevice": {"dummy-test", "dummy0", "dummy1"}},
		unassigned: map[string]string{
			"0000:00:04.0": device.ReasonNoSelector, "dummy9": device.ReasonDefaultRoute, "eth0": device.ReasonDefaultRoute,
			"lo": device.ReasonLoopback, "veth1a2b3c": device.ReasonNoSelector,
		},
	}
	if got := layoutOf(r); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// sriovNode is a node for configs/sriov-dp-config.json: an E810 with iavf VFs, an X710 pair whose
// VFs are on vfio-pci, a ConnectX-6 Dx in switchdev mode, a spare X710 PF, a ConnectX InfiniBand VF.
func sriovNode() []device.Device {
	var devs []device.Device
	add := func(d ...device.Device) { devs = append(devs, d...) }
	// E810 (ice) ens1f0 with 4 iavf VFs.
	add(pciPF("0000:3b:00.0", "8086", "1592", "ice", "ens1f0", 4))
	for i := 0; i < 4; i++ {
		add(pciVF(vfAddr(0x3b, i), "0000:3b:00.0", "ens1f0", i, "8086", "1889", "iavf", fmt.Sprintf("ens1f0v%d", i)))
	}
	// X710 (i40e) ens2f0 with 10 VFs on vfio-pci, ens2f1 with 2 on vfio-pci and 1 on iavf.
	add(pciPF("0000:5e:00.0", "8086", "1572", "i40e", "ens2f0", 10))
	for i := 0; i < 10; i++ {
		add(pciVF(fmt.Sprintf("0000:5e:%02x.%d", 2+i/8, i%8), "0000:5e:00.0", "ens2f0", i, "8086", "154c", "vfio-pci", ""))
	}
	add(pciPF("0000:5e:00.1", "8086", "1572", "i40e", "ens2f1", 3))
	add(pciVF("0000:5e:0a.0", "0000:5e:00.1", "ens2f1", 0, "8086", "154c", "vfio-pci", ""))
	add(pciVF("0000:5e:0a.1", "0000:5e:00.1", "ens2f1", 1, "8086", "154c", "vfio-pci", ""))
	add(pciVF("0000:5e:0a.2", "0000:5e:00.1", "ens2f1", 2, "8086", "154c", "iavf", "ens2f1v2"))
	// ConnectX-6 Dx (mlx5_core) in switchdev mode: 6 VFs and their representors.
	add(pciPF("0000:d8:00.0", "15b3", "101d", "mlx5_core", "ens4f0np0", 6))
	for i := 0; i < 6; i++ {
		add(pciVF(fmt.Sprintf("0000:d8:00.%d", 2+i), "0000:d8:00.0", "ens4f0np0", i, "15b3", "101e", "mlx5_core", fmt.Sprintf("ens4f0v%d", i)))
		add(with(soft(fmt.Sprintf("ens4f0npf0vf%d", i), ""), func(d *device.Device) { d.Representor = true }))
	}
	// A spare X710 port without VFs, and one not named anywhere.
	add(pciPF("0000:af:00.0", "8086", "1572", "i40e", "ens5f0", 0))
	add(pciPF("0000:af:00.1", "8086", "1572", "i40e", "ens5f1", 0))
	// A ConnectX InfiniBand VF.
	add(with(pciVF("0000:d9:00.2", "0000:d9:00.0", "ibp217s0f0", 0, "15b3", "101c", "mlx5_core", "ibp217s0f0v0"),
		func(d *device.Device) { d.LinkType = "infiniband" }))
	// The node's own uplink.
	add(with(pciPF("0000:01:00.0", "8086", "1521", "igb", "eno1", 0), func(d *device.Device) { d.DefaultRoute = true }))
	return devs
}

// TestSriovDPExample loads a config.json written for the SR-IOV network device plugin, unchanged,
// and checks it selects what sriov-dp would.
func TestSriovDPExample(t *testing.T) {
	cfg := loadExample(t, "sriov-dp-config.json", "intel.com")
	devs := sriovNode()
	r := pool.Assign(devs, cfg)
	want := layout{
		order: []string{"intel.com/intel_sriov_netdevice", "intel.com/intel_sriov_dpdk", "mellanox.com/mlnx_sriov_netdevice",
			"intel.com/x710_pf", "intel.com/infiniband_netdevs"},
		pools: map[string][]string{
			"intel.com/intel_sriov_netdevice": {"0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2", "0000:3b:01.3", "0000:5e:0a.2"},
			"intel.com/intel_sriov_dpdk": {"0000:5e:02.0", "0000:5e:02.1", "0000:5e:02.2", "0000:5e:02.3", "0000:5e:02.4",
				"0000:5e:02.5", "0000:5e:02.6", "0000:5e:02.7", "0000:5e:0a.0", "0000:5e:0a.1"},
			"mellanox.com/mlnx_sriov_netdevice": {"0000:d8:00.2", "0000:d8:00.3", "0000:d8:00.4", "0000:d8:00.5"},
			"intel.com/x710_pf":                 {"0000:af:00.1"},
			"intel.com/infiniband_netdevs":      {"0000:d9:00.2"},
		},
		unassigned: map[string]string{
			"0000:01:00.0": device.ReasonDefaultRoute,
			"0000:3b:00.0": device.ReasonPFWithVFs, "0000:5e:00.0": device.ReasonPFWithVFs,
			"0000:5e:00.1": device.ReasonPFWithVFs, "0000:d8:00.0": device.ReasonPFWithVFs,
			"0000:5e:03.0": device.ReasonNoSelector, "0000:5e:03.1": device.ReasonNoSelector, // ens2f0 VFs 8, 9: outside #0-7
			"0000:d8:00.6": device.ReasonNoSelector, "0000:d8:00.7": device.ReasonNoSelector, // ens4f0np0 VFs 4, 5: outside #0-3
			"0000:af:00.0":  device.ReasonNoSelector,
			"ens4f0npf0vf0": device.ReasonRepresentor, "ens4f0npf0vf1": device.ReasonRepresentor,
			"ens4f0npf0vf2": device.ReasonRepresentor, "ens4f0npf0vf3": device.ReasonRepresentor,
			"ens4f0npf0vf4": device.ReasonRepresentor, "ens4f0npf0vf5": device.ReasonRepresentor,
		},
	}
	if got := layoutOf(r); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// sriov-dp lets a device match several pools; this config's pools are disjoint, so first-match-wins
	// selects exactly what sriov-dp selects.
	for i := range devs {
		var matched []string
		for _, res := range cfg.Resources {
			for s := range res.Selectors {
				if pool.Match(&res.Selectors[s], &devs[i]) {
					matched = append(matched, res.FullName())
					break
				}
			}
		}
		if len(matched) > 1 {
			t.Errorf("%s matches %v: the example's pools must not overlap", devs[i].ID, matched)
		}
	}
}
