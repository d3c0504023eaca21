package pool_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

const sriovdpCorpus = "../../testdata/sriovdp-corpus"

// corpusCase is one entry of testdata/sriovdp-corpus/expected.json: what sriov-dp v3.11.0 itself
// did with the config on its fixture host (see that folder's README).
type corpusCase struct {
	File    string `json:"file"`
	Fixture string `json:"fixture"`
	Prefix  string `json:"prefix"`
	SriovDP struct {
		Loads bool                `json:"loads"`
		Error string              `json:"error"`
		Pools map[string][]string `json:"pools"`
	} `json:"sriovdp"`
}

// refusals are the only reasons a config sriov-dp loads may be refused here, each by the words its
// error must hold: what this plugin does not serve, and a selector sriov-dp would take as "every
// network function on the node".
var refusals = []string{
	`vdpaType`,                  // vDPA devices
	`deviceType "auxNetDevice"`, // auxiliary (SF) devices
	`deviceType "accelerator"`,  // accelerators
	`not supported: this plugin does not read Intel DDP profiles`,
	`empty selector: it would match every device`,
}

// TestSriovDPCorpus: every real-world config of the corpus that sriov-dp loads loads here and
// selects, pool by pool, the device IDs sriov-dp selects on the same fixture host, or is refused
// for one of the reasons above. The README's table is made from the same results.
func TestSriovDPCorpus(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sriovdpCorpus, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []corpusCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 60 {
		t.Fatalf("corpus has %d configs", len(cases))
	}
	scans := map[string][]device.Device{}
	var loaded, refused, same int
	for _, c := range cases {
		t.Run(c.File, func(t *testing.T) {
			cfg, err := config.Load(filepath.Join(sriovdpCorpus, c.File), c.Prefix)
			if !c.SriovDP.Loads {
				return // sriov-dp does not load it; whatever this plugin says is its own
			}
			if err != nil {
				var list config.ErrorList
				if !errors.As(err, &list) {
					t.Fatalf("sriov-dp loads it, this plugin refuses it: %v", err)
				}
				for _, problem := range list {
					if !slices.ContainsFunc(refusals, func(why string) bool { return strings.Contains(problem.Error(), why) }) {
						t.Fatalf("sriov-dp loads it, this plugin refuses it: %v", problem)
					}
				}
				refused++
				t.Logf("refused as allowed: %v", err)
				return
			}
			loaded++
			devs, ok := scans[c.Fixture]
			if !ok {
				devs = scanFixture(t, c.Fixture)
				scans[c.Fixture] = devs
			}
			got := assignIDs(devs, cfg)
			for name, want := range c.SriovDP.Pools {
				if g := got[name]; !slices.Equal(g, want) {
					t.Errorf("pool %s selects %v, sriov-dp %v", name, g, want)
				}
			}
			for name, g := range got {
				if _, ok := c.SriovDP.Pools[name]; !ok && len(g) > 0 {
					t.Errorf("pool %s selects %v; sriov-dp has no such pool", name, g)
				}
			}
			if !t.Failed() {
				same++
			}
		})
	}
	t.Logf("%d configs sriov-dp loads: %d load here and select the same devices, %d refused for an allowed reason", loaded+refused, same, refused)
}

// scanFixture reads a fixture host as discover does (PCI functions only: the corpus hosts have no
// software links), with the repository's pci.ids.
func scanFixture(t *testing.T, name string) []device.Device {
	t.Helper()
	s, err := inventory.New(inventory.Options{SysfsRoot: filepath.Join("../../testdata/sysfs", name, "sys"), PCIIDsPath: "../../testdata/pci.ids"})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

// assignIDs places the devices as the daemon does and lists each pool's device IDs, sorted.
func assignIDs(devs []device.Device, cfg *config.Config) map[string][]string {
	out := map[string][]string{}
	for _, p := range pool.Assign(devs, cfg).Pools {
		ids := p.IDs()
		sort.Strings(ids)
		out[p.Resource.FullName()] = ids
	}
	return out
}
