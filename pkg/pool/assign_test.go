package pool_test

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// layout is where each device went: pool full name -> IDs, plus ID -> reason for the rest.
type layout struct {
	pools      map[string][]string
	order      []string
	unassigned map[string]string
}

func layoutOf(r pool.Result) layout {
	l := layout{pools: map[string][]string{}, unassigned: map[string]string{}}
	for i := range r.Pools {
		name := r.Pools[i].Resource.FullName()
		l.order = append(l.order, name)
		l.pools[name] = r.Pools[i].IDs()
	}
	for _, u := range r.Unassigned {
		l.unassigned[u.ID] = u.Reason
	}
	return l
}

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(doc), "example.com")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func TestAssign(t *testing.T) {
	pfVFs := pciPF("0000:3b:00.0", "8086", "1592", "ice", "ens1f0", 4)
	pfNoVFs := pciPF("0000:3b:00.1", "8086", "1592", "ice", "ens1f1", 0)
	vf0 := pciVF("0000:3b:01.0", "0000:3b:00.0", "ens1f0", 0, "8086", "1889", "iavf", "ens1f0v0")
	vf1 := pciVF("0000:3b:01.1", "0000:3b:00.0", "ens1f0", 1, "8086", "1889", "iavf", "ens1f0v1")
	vf2 := pciVF("0000:3b:01.2", "0000:3b:00.0", "ens1f0", 2, "8086", "1889", "vfio-pci", "")
	dummy0, dummy1, veth0 := soft("dummy0", "dummy"), soft("dummy1", "dummy"), soft("veth0", "veth")
	lo := with(soft("lo", ""), func(d *device.Device) { d.Loopback = true; d.LinkType = "loopback" })
	eth0 := with(pciPF("0000:00:03.0", "1af4", "1041", "virtio-pci", "eth0", 0), func(d *device.Device) { d.DefaultRoute = true })
	rep := with(soft("pf0vf0", ""), func(d *device.Device) { d.Representor = true })
	all := []device.Device{pfVFs, pfNoVFs, vf0, vf1, vf2, dummy0, dummy1, veth0, lo, eth0, rep}

	tests := []struct {
		name string
		cfg  string
		devs []device.Device
		want layout
	}{
		{
			name: "first matching resource wins, in file order",
			cfg: `{"resourceList":[
				{"resourceName":"low","selectors":[{"pfNames":["ens1f0#0"]}]},
				{"resourceName":"all_vfs","selectors":[{"vendors":["8086"],"devices":["1889"]}]},
				{"resourceName":"also_low","selectors":[{"pfNames":["ens1f0#0-1"]}]}]}`,
			devs: all,
			want: layout{
				order: []string{"example.com/low", "example.com/all_vfs", "example.com/also_low"},
				pools: map[string][]string{
					"example.com/low":      {"0000:3b:01.0"},
					"example.com/all_vfs":  {"0000:3b:01.1", "0000:3b:01.2"},
					"example.com/also_low": {},
				},
				unassigned: map[string]string{
					"0000:00:03.0": device.ReasonDefaultRoute, "0000:3b:00.0": device.ReasonPFWithVFs,
					"0000:3b:00.1": device.ReasonNoSelector, "dummy0": device.ReasonNoSelector,
					"dummy1": device.ReasonNoSelector, "lo": device.ReasonLoopback,
					"pf0vf0": device.ReasonRepresentor, "veth0": device.ReasonNoSelector,
				},
			},
		},
		{
			name: "selectors of one resource are ORed",
			cfg: `{"resourceList":[{"resourceName":"mixed","selectors":[
				{"ifNames":["dummy*"]}, {"drivers":["vfio-pci"]}, {"pciAddresses":["0000:3b:00.1"]}]}]}`,
			devs: all,
			want: layout{
				order: []string{"example.com/mixed"},
				pools: map[string][]string{"example.com/mixed": {"0000:3b:00.1", "0000:3b:01.2", "dummy0", "dummy1"}},
				unassigned: map[string]string{
					"0000:00:03.0": device.ReasonDefaultRoute, "0000:3b:00.0": device.ReasonPFWithVFs,
					"0000:3b:01.0": device.ReasonNoSelector, "0000:3b:01.1": device.ReasonNoSelector,
					"lo": device.ReasonLoopback, "pf0vf0": device.ReasonRepresentor, "veth0": device.ReasonNoSelector,
				},
			},
		},
		{
			name: "PF with VFs never, even named by its PCI address (as in sriov-dp)",
			cfg: `{"resourceList":[
				{"resourceName":"by_vendor","selectors":[{"vendors":["8086"],"devices":["1592"]}]},
				{"resourceName":"named_wrong_driver","selectors":[{"pciAddresses":["0000:3b:00.0"],"drivers":["i40e"]}]},
				{"resourceName":"named","selectors":[{"pciAddresses":["0000:3b:00.0"]}]}]}`,
			devs: []device.Device{pfVFs, pfNoVFs},
			want: layout{
				order: []string{"example.com/by_vendor", "example.com/named_wrong_driver", "example.com/named"},
				pools: map[string][]string{
					"example.com/by_vendor":          {"0000:3b:00.1"},
					"example.com/named_wrong_driver": {},
					"example.com/named":              {},
				},
				unassigned: map[string]string{"0000:3b:00.0": device.ReasonPFWithVFs},
			},
		},
		{
			name: "PF with VFs matched but not named",
			cfg:  `{"resourceList":[{"resourceName":"ice","selectors":[{"drivers":["ice"]}]}]}`,
			devs: []device.Device{pfVFs, pfNoVFs},
			want: layout{
				order:      []string{"example.com/ice"},
				pools:      map[string][]string{"example.com/ice": {"0000:3b:00.1"}},
				unassigned: map[string]string{"0000:3b:00.0": device.ReasonPFWithVFs},
			},
		},
		{
			name: "exclusions win over any selector",
			cfg: `{"resourceList":[{"resourceName":"greedy","selectors":[
				{"ifNames":["*"]}, {"pciAddresses":["0000:00:03.0"]}, {"vendors":["1af4"]}]}]}`,
			devs: []device.Device{lo, eth0, rep, dummy0},
			want: layout{
				order: []string{"example.com/greedy"},
				pools: map[string][]string{"example.com/greedy": {"dummy0"}},
				unassigned: map[string]string{
					"0000:00:03.0": device.ReasonDefaultRoute, "lo": device.ReasonLoopback, "pf0vf0": device.ReasonRepresentor,
				},
			},
		},
		{
			name: "empty pools are kept; no devices at all",
			cfg: `{"resourceList":[{"resourceName":"a","selectors":{"linkKinds":["vxlan"]}},
				{"resourceName":"b","selectors":{"vendors":["abcd"]}}]}`,
			devs: nil,
			want: layout{
				order:      []string{"example.com/a", "example.com/b"},
				pools:      map[string][]string{"example.com/a": {}, "example.com/b": {}},
				unassigned: map[string]string{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pool.Assign(tt.devs, parse(t, tt.cfg))
			if l := layoutOf(got); !reflect.DeepEqual(l, tt.want) {
				t.Errorf("Assign:\n got %+v\nwant %+v", l, tt.want)
			}
			for i := range got.Pools {
				if got.Pools[i].Devices == nil {
					t.Errorf("pool %s: nil Devices, want an empty list", got.Pools[i].Resource.FullName())
				}
			}
			if got.Unassigned == nil {
				t.Error("nil Unassigned, want an empty list")
			}
		})
	}
}

// TestAssignDeterministic feeds the same devices in many orders and expects identical results,
// sorted by ID, with the input left as it was.
func TestAssignDeterministic(t *testing.T) {
	devs := benchDevices()
	cfg := benchConfig(t)
	want := pool.Assign(devs, cfg)
	for _, p := range want.Pools {
		for i := 1; i < len(p.Devices); i++ {
			if p.Devices[i-1].ID >= p.Devices[i].ID {
				t.Fatalf("pool %s not sorted at %d: %s, %s", p.Resource.FullName(), i, p.Devices[i-1].ID, p.Devices[i].ID)
			}
		}
	}
	for i := 1; i < len(want.Unassigned); i++ {
		if want.Unassigned[i-1].ID >= want.Unassigned[i].ID {
			t.Fatalf("unassigned not sorted at %d", i)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 5; round++ {
		shuffled := append([]device.Device(nil), devs...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		before := append([]device.Device(nil), shuffled...)
		got := pool.Assign(shuffled, cfg)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: result depends on input order", round)
		}
		if !reflect.DeepEqual(shuffled, before) {
			t.Fatalf("round %d: Assign changed its input", round)
		}
	}
}

func TestResultLookups(t *testing.T) {
	cfg := parse(t, `{"resourceList":[{"resourceName":"soft","selectors":{"ifNames":["dummy*"]}},
		{"resourceName":"none","selectors":{"linkKinds":["vxlan"]}}]}`)
	devs := []device.Device{soft("dummy1", "dummy"), soft("dummy0", "dummy"), soft("veth0", "veth")}
	r := pool.Assign(devs, cfg)

	p := r.PoolByName("example.com/soft")
	if p == nil || p.Resource.Name != "soft" {
		t.Fatalf("PoolByName(soft) = %+v", p)
	}
	if r.PoolByName("example.com/missing") != nil || r.PoolByName("soft") != nil {
		t.Error("PoolByName found a pool that does not exist")
	}
	if d := p.Device("dummy1"); d == nil || d.Kind != "dummy" {
		t.Errorf("Device(dummy1) = %+v", d)
	}
	if p.Device("veth0") != nil || p.Device("") != nil || p.Device("zzz") != nil {
		t.Error("Device found a device that is not in the pool")
	}
	tests := []struct {
		id     string
		pool   string
		reason string
		ok     bool
	}{
		{id: "dummy0", pool: "example.com/soft", ok: true},
		{id: "veth0", reason: device.ReasonNoSelector, ok: true},
		{id: "eth9"},
	}
	for _, tt := range tests {
		p, reason, ok := r.Find(tt.id)
		name := ""
		if p != nil {
			name = p.Resource.FullName()
		}
		if name != tt.pool || reason != tt.reason || ok != tt.ok {
			t.Errorf("Find(%s) = %q, %q, %v; want %q, %q, %v", tt.id, name, reason, ok, tt.pool, tt.reason, tt.ok)
		}
	}
}

// A netdev other links are bound to (a vlan or macvlan on it, its bridge) goes only to a pool that
// allows it: moving it deletes or detaches them.
func TestAssignUpperDevices(t *testing.T) {
	port := with(soft("veth3", "veth"), func(d *device.Device) { d.Uppers = []string{"br0"} })
	free := soft("veth4", "veth")
	strict := config.Resource{Name: "strict", Prefix: "example.com", Selectors: []config.Selector{{LinkKinds: []string{"veth"}}}}
	lenient := strict
	lenient.Name, lenient.AllowUpperDevices = "lenient", true

	res := pool.Assign([]device.Device{port, free}, &config.Config{Resources: []config.Resource{strict}})
	if ids := res.Pools[0].IDs(); len(ids) != 1 || ids[0] != "veth4" {
		t.Errorf("strict pool has %v, want [veth4]", ids)
	}
	if len(res.Unassigned) != 1 || res.Unassigned[0].Reason != "upper devices br0 (allowUpperDevices: true takes it)" {
		t.Errorf("unassigned %+v, want veth3 with its upper devices named", res.Unassigned)
	}
	res = pool.Assign([]device.Device{port, free}, &config.Config{Resources: []config.Resource{strict, lenient}})
	if ids := res.Pools[1].IDs(); len(ids) != 1 || ids[0] != "veth3" {
		t.Errorf("lenient pool has %v, want [veth3]", ids)
	}
}
