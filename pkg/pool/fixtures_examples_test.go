package pool_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// Every file in configs/ loads as it is: an example that does not is a broken promise.
func TestEveryExampleConfigLoads(t *testing.T) {
	files, err := filepath.Glob("../../configs/*")
	if err != nil || len(files) < 5 {
		t.Fatalf("configs/: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := config.Load(f, config.DefaultResourcePrefix); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// The SR-IOV examples select what their comments promise on the fixture trees that copy those NICs.
func TestExampleConfigsOnFixtureNICs(t *testing.T) {
	tests := []struct {
		config  string
		fixture string
		want    map[string][]string
	}{
		{"intel-e810-x710-vfs.yaml", "e810", map[string][]string{
			"intel.com/intel_sriov_netdevice": {"0000:3b:01.0", "0000:3b:01.1"}}},
		{"dpdk-vfio.yaml", "e810", map[string][]string{
			"intel.com/intel_sriov_dpdk": {"0000:3b:01.2", "0000:3b:01.3"}}},
		{"mellanox-connectx-vfs.yaml", "cx6dx-switchdev", map[string][]string{
			"mellanox.com/cx_sriov": {"0000:86:00.2", "0000:86:00.3", "0000:86:00.4"}}},
		{"mellanox-connectx-vfs.yaml", "e810", map[string][]string{"mellanox.com/cx_sriov": {}}},
		{"kind-dummy.yaml", "e810", map[string][]string{"networking.k8s.io/netdevice": {}}},
	}
	for _, tt := range tests {
		t.Run(tt.config+"/"+tt.fixture, func(t *testing.T) {
			devs, err := pci.Scan(filepath.Join("../../testdata/sysfs", tt.fixture, "sys"), nil)
			if err != nil {
				t.Fatal(err)
			}
			r := pool.Assign(devs, loadExample(t, tt.config, config.DefaultResourcePrefix))
			if len(r.Pools) != len(tt.want) {
				t.Fatalf("%d pools, want %d", len(r.Pools), len(tt.want))
			}
			for _, p := range r.Pools {
				want, ok := tt.want[p.Resource.FullName()]
				if !ok {
					t.Errorf("unexpected pool %s", p.Resource.FullName())
					continue
				}
				if got := p.IDs(); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Errorf("%s: %v, want %v", p.Resource.FullName(), got, want)
				}
			}
		})
	}
}
