package cdi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

const testHook = "/opt/netdevice-plugin/bin/netdevice-hook"

// seedPool is the seed demo's pool: networking.k8s.io/netdevice selecting the software link dummy0.
func seedPool() pool.Pool {
	d := device.New()
	d.ID, d.IfName, d.Kind = "dummy0", "dummy0", "dummy"
	return pool.Pool{
		Resource: config.Resource{Name: "netdevice", Prefix: config.DefaultResourcePrefix, DeviceType: config.DeviceTypeNetDevice},
		Devices:  []device.Device{d},
	}
}

func vf(addr, driver string, group int) device.Device {
	d := device.New()
	d.ID, d.PCIAddress, d.Driver, d.IOMMUGroup = addr, addr, driver, group
	d.PFPCIAddress, d.VFIndex = "0000:3b:00.0", 1
	if driver != device.VFIODriver {
		d.IfName = "ens1f0v1"
	}
	return d
}

func resource(prefix, name, podIfName string) config.Resource {
	return config.Resource{Name: name, Prefix: prefix, DeviceType: config.DeviceTypeNetDevice, PodIfName: podIfName}
}

func uioVF(addr, driver, node string) device.Device {
	d := vf(addr, driver, -1)
	d.IfName, d.UIODevice = "", node
	return d
}

// rdmaVF is a VF with one RDMA device, placed by an isRdma selector, on a host with rdma_cm.
func rdmaVF(addr, ibdev string, n int) device.Device {
	d := vf(addr, "mlx5_core", 70)
	d.RDMADevices = []string{ibdev}
	for _, c := range []string{"issm", "umad", "uverbs"} {
		d.RDMACharDevices = append(d.RDMACharDevices, "/dev/infiniband/"+c+strconv.Itoa(n))
	}
	d.RDMA, d.RDMACM = true, true
	return d
}

// vhost marks a device as placed by a needVhostNet selector.
func vhost(d device.Device) device.Device {
	d.VhostNet = true
	return d
}

// noIOMMU marks a vfio device as in a vfio no-IOMMU group, as pkg/pci finds it in sysfs.
func noIOMMU(d device.Device) device.Device {
	d.VFIONoIOMMU = true
	return d
}

// loadBack loads the CDI folder with the library, as a runtime does, and fails on any spec error.
func loadBack(t *testing.T, dir string) *cdi.Cache {
	t.Helper()
	c, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	for path, errs := range c.GetErrors() {
		t.Errorf("CDI library rejects %s: %v", path, errs)
	}
	return c
}

func TestWritePool(t *testing.T) {
	attach := func(args ...string) []string { return append([]string{testHook, "attach"}, args...) }
	detach := func(args ...string) []string { return append([]string{testHook, "detach"}, args...) }

	tests := []struct {
		name        string
		pool        pool.Pool
		wantFile    string
		wantVersion string
		// per CDI device name: the hooks' args (attach, detach) or the device nodes.
		wantHooks map[string][2][]string
		wantNodes map[string][]string
		wantOwner bool
		inSpec    []string // when only some devices have an entry: their IDs
		opts      WriterOptions
	}{
		{
			name:        "seed demo kind-dummy pool",
			pool:        seedPool(),
			wantFile:    "networking.k8s.io-netdevice.json",
			wantVersion: "0.3.0",
			wantHooks: map[string][2][]string{
				"dummy0": {attach("--host-ifname", "dummy0"), detach("--host-ifname", "dummy0")},
			},
		},
		{
			name: "VF pool with a pod-side name",
			pool: pool.Pool{
				Resource: resource("intel.com", "sriov_netdevice", "net1"),
				Devices:  []device.Device{vf("0000:3b:01.0", "iavf", 42), vf("0000:3b:01.1", "iavf", 43)},
			},
			wantFile:    "intel.com-sriov_netdevice.json",
			wantVersion: "0.5.0", // device names start with a digit
			wantHooks: map[string][2][]string{
				"0000:3b:01.0": {attach("--pci-address", "0000:3b:01.0", "--pod-ifname", "net1"), detach("--pci-address", "0000:3b:01.0", "--pod-ifname", "net1")},
				"0000:3b:01.1": {attach("--pci-address", "0000:3b:01.1", "--pod-ifname", "net1"), detach("--pci-address", "0000:3b:01.1", "--pod-ifname", "net1")},
			},
		},
		{
			name: "vfio pool, IOMMU and no-IOMMU groups",
			pool: pool.Pool{
				Resource: resource("intel.com", "dpdk", ""),
				Devices:  []device.Device{vf("0000:3b:02.0", device.VFIODriver, 42), noIOMMU(vf("0000:3b:02.1", device.VFIODriver, 7))},
			},
			wantFile:    "intel.com-dpdk.json",
			wantVersion: "0.6.0", // the owner annotation: nothing else marks a vfio-only spec as ours
			wantNodes: map[string][]string{
				"0000:3b:02.0": {"/dev/vfio/vfio", "/dev/vfio/42"},
				"0000:3b:02.1": {"/dev/vfio/vfio", "/dev/vfio/noiommu-7>/dev/vfio/7"},
			},
			wantOwner: true,
		},
		{
			name: "mixed pool: netdev VF and vfio VF",
			pool: pool.Pool{
				Resource: resource("example.org", "mixed", ""),
				Devices:  []device.Device{vf("0000:3b:01.0", "iavf", 42), vf("0000:3b:02.0", device.VFIODriver, 42)},
			},
			wantFile:    "example.org-mixed.json",
			wantVersion: "0.5.0",
			wantHooks: map[string][2][]string{
				"0000:3b:01.0": {attach("--pci-address", "0000:3b:01.0"), detach("--pci-address", "0000:3b:01.0")},
			},
			wantNodes: map[string][]string{"0000:3b:02.0": {"/dev/vfio/vfio", "/dev/vfio/42"}},
		},
		{
			name: "uio pool: igb_uio and uio_pci_generic VFs get their /dev/uioN",
			pool: pool.Pool{
				Resource: resource("intel.com", "uio", ""),
				Devices:  []device.Device{uioVF("0000:3b:02.3", "igb_uio", "/dev/uio0"), uioVF("0000:3b:02.4", "uio_pci_generic", "/dev/uio1")},
			},
			wantFile:    "intel.com-uio.json",
			wantVersion: "0.6.0",
			wantNodes:   map[string][]string{"0000:3b:02.3": {"/dev/uio0"}, "0000:3b:02.4": {"/dev/uio1"}},
			wantOwner:   true,
		},
		{
			name: "needVhostNet: vfio nodes, or the hook, and vhost-net and tun",
			pool: pool.Pool{
				Resource: resource("intel.com", "vhost", ""),
				Devices:  []device.Device{vhost(vf("0000:3b:01.0", "iavf", 42)), vhost(vf("0000:3b:02.0", device.VFIODriver, 42))},
			},
			wantFile:    "intel.com-vhost.json",
			wantVersion: "0.5.0",
			wantHooks: map[string][2][]string{
				"0000:3b:01.0": {attach("--pci-address", "0000:3b:01.0"), detach("--pci-address", "0000:3b:01.0")},
			},
			wantNodes: map[string][]string{
				"0000:3b:01.0": {"/dev/vhost-net", "/dev/net/tun"},
				"0000:3b:02.0": {"/dev/vfio/vfio", "/dev/vfio/42", "/dev/vhost-net", "/dev/net/tun"},
			},
		},
		{
			name: "cniManaged: no hook; only devices with nodes have an entry",
			pool: pool.Pool{
				Resource: config.Resource{Name: "cni", Prefix: "intel.com", CNIManaged: true},
				Devices:  []device.Device{vf("0000:3b:01.0", "iavf", 42), vf("0000:3b:02.0", device.VFIODriver, 42)},
			},
			wantFile:    "intel.com-cni.json",
			wantVersion: "0.6.0",
			wantNodes:   map[string][]string{"0000:3b:02.0": {"/dev/vfio/vfio", "/dev/vfio/42"}},
			wantOwner:   true,
			inSpec:      []string{"0000:3b:02.0"},
		},
		{
			name: "isRdma in shared mode: the character devices and rdma_cm, nothing moved",
			pool: pool.Pool{
				Resource: resource("mellanox.com", "rdma", ""),
				Devices:  []device.Device{rdmaVF("0000:86:00.2", "mlx5_2", 2)},
			},
			wantFile:    "mellanox.com-rdma.json",
			wantVersion: "0.5.0",
			wantHooks: map[string][2][]string{
				"0000:86:00.2": {attach("--pci-address", "0000:86:00.2"), detach("--pci-address", "0000:86:00.2")},
			},
			wantNodes: map[string][]string{"0000:86:00.2": {"/dev/infiniband/issm2", "/dev/infiniband/umad2", "/dev/infiniband/uverbs2", "/dev/infiniband/rdma_cm"}},
		},
		{
			name: "isRdma in exclusive mode: the hooks move the RDMA device; host nodes under the device root",
			pool: pool.Pool{
				Resource: resource("mellanox.com", "rdma", ""),
				Devices:  []device.Device{rdmaVF("0000:86:00.2", "mlx5_2", 2)},
			},
			opts:        WriterOptions{DevRoot: "/tmp/e2e/dev", MoveRDMA: true},
			wantFile:    "mellanox.com-rdma.json",
			wantVersion: "0.5.0",
			wantHooks: map[string][2][]string{
				"0000:86:00.2": {attach("--pci-address", "0000:86:00.2", "--rdma-device", "mlx5_2"), detach("--pci-address", "0000:86:00.2", "--rdma-device", "mlx5_2")},
			},
			wantNodes: map[string][]string{"0000:86:00.2": {"/tmp/e2e/dev/infiniband/issm2>/dev/infiniband/issm2", "/tmp/e2e/dev/infiniband/umad2>/dev/infiniband/umad2",
				"/tmp/e2e/dev/infiniband/uverbs2>/dev/infiniband/uverbs2", "/tmp/e2e/dev/infiniband/rdma_cm>/dev/infiniband/rdma_cm"}},
		},
		{
			name: "allowUpperDevices reaches the hook",
			pool: pool.Pool{
				Resource: config.Resource{Name: "uppers", Prefix: "example.com", AllowUpperDevices: true},
				Devices:  []device.Device{vf("0000:3b:01.0", "iavf", 42)},
			},
			wantFile:    "example.com-uppers.json",
			wantVersion: "0.5.0",
			wantHooks: map[string][2][]string{
				"0000:3b:01.0": {attach("--pci-address", "0000:3b:01.0", "--allow-upper-devices"), detach("--pci-address", "0000:3b:01.0", "--allow-upper-devices")},
			},
		},
		{
			name: "a resource name CDI cannot take as a class (sriov-dp allows 700VF)",
			pool: pool.Pool{
				Resource: resource("intel.com", "700VF", ""),
				Devices:  []device.Device{vf("0000:3b:01.0", "iavf", 42)},
			},
			wantFile:    "intel.com-x-700VF.json",
			wantVersion: "0.5.0",
			wantHooks: map[string][2][]string{
				"0000:3b:01.0": {attach("--pci-address", "0000:3b:01.0"), detach("--pci-address", "0000:3b:01.0")},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w := NewWriter(dir, testHook).With(tt.opts)
			if err := w.WritePool(tt.pool); err != nil {
				t.Fatalf("WritePool: %v", err)
			}
			path := SpecPath(dir, tt.pool.Resource)
			if filepath.Base(path) != tt.wantFile {
				t.Errorf("SpecPath = %s, want file %s", path, tt.wantFile)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
			}
			if names := dirNames(t, dir); !slices.Equal(names, []string{tt.wantFile}) {
				t.Errorf("CDI folder holds %v, want only %s (no temporary files)", names, tt.wantFile)
			}

			c := loadBack(t, dir)
			var raw cdispec.Spec
			readJSON(t, path, &raw)
			if raw.Version != tt.wantVersion {
				t.Errorf("cdiVersion = %s, want %s", raw.Version, tt.wantVersion)
			}
			if got := raw.Annotations[OwnerAnnotation] == ownerValue; got != tt.wantOwner {
				t.Errorf("owner annotation present = %v, want %v", got, tt.wantOwner)
			}
			want := tt.inSpec
			if want == nil {
				for _, d := range tt.pool.Devices {
					want = append(want, d.ID)
				}
			}
			if len(raw.Devices) != len(want) {
				t.Errorf("spec has %d devices, want %d", len(raw.Devices), len(want))
			}
			for _, d := range tt.pool.Devices {
				if got := InSpec(&d, &tt.pool.Resource); got != slices.Contains(want, d.ID) {
					t.Errorf("InSpec(%s) = %v", d.ID, got)
				}
			}
			for _, id := range want {
				qualified, err := QualifiedName(&tt.pool.Resource, id)
				if err != nil {
					t.Fatal(err)
				}
				if c.GetDevice(qualified) == nil {
					t.Errorf("device %s does not resolve; the cache has %v", qualified, c.ListDevices())
				}
			}
			for name, want := range tt.wantHooks {
				qualified, _ := QualifiedName(&tt.pool.Resource, name)
				var spec oci.Spec
				if len(tt.wantNodes[name]) > 0 {
					// Injection stats host device nodes, which this machine may lack
					// (/dev/vhost-net): read the hooks off the resolved device instead.
					spec.Hooks = &oci.Hooks{}
					for _, h := range c.GetDevice(qualified).ContainerEdits.Hooks {
						hook := oci.Hook{Path: h.Path, Args: h.Args}
						if h.HookName == cdi.CreateRuntimeHook {
							spec.Hooks.CreateRuntime = append(spec.Hooks.CreateRuntime, hook)
						} else if h.HookName == cdi.PoststopHook {
							spec.Hooks.Poststop = append(spec.Hooks.Poststop, hook)
						}
					}
				} else if _, err := c.InjectDevices(&spec, qualified); err != nil {
					t.Fatalf("inject %s: %v", qualified, err)
				}
				if spec.Hooks == nil || len(spec.Hooks.CreateRuntime) != 1 || len(spec.Hooks.Poststop) != 1 {
					t.Fatalf("inject %s: hooks %+v, want one createRuntime and one poststop", qualified, spec.Hooks)
				}
				for i, h := range []oci.Hook{spec.Hooks.CreateRuntime[0], spec.Hooks.Poststop[0]} {
					if h.Path != testHook || !slices.Equal(h.Args, want[i]) {
						t.Errorf("%s hook %d = %s %q, want %s %q", qualified, i, h.Path, h.Args, testHook, want[i])
					}
				}
			}
			for name, want := range tt.wantNodes {
				var got []string
				for _, d := range raw.Devices {
					if d.Name != name {
						continue
					}
					if _, hooked := tt.wantHooks[name]; !hooked && len(d.ContainerEdits.Hooks) != 0 {
						t.Errorf("device %s has hooks %v", name, d.ContainerEdits.Hooks)
					}
					for _, n := range d.ContainerEdits.DeviceNodes {
						if n.HostPath != "" {
							got = append(got, n.HostPath+">"+n.Path)
						} else {
							got = append(got, n.Path)
						}
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("device %s nodes = %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestWritePoolRewritesOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir, testHook)
	p := seedPool()
	path := SpecPath(dir, p.Resource)
	if err := w.WritePool(p); err != nil {
		t.Fatal(err)
	}
	before := stat(t, path)

	// Same pool: the file is not touched (same inode, same modification time).
	time.Sleep(10 * time.Millisecond)
	if err := w.WritePool(p); err != nil {
		t.Fatal(err)
	}
	if after := stat(t, path); !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("unchanged pool rewrote its spec")
	}

	// Changed pool: a new device and a pod-side name. The file is replaced (rename: a new inode).
	d := device.New()
	d.ID, d.IfName = "dummy1", "dummy1"
	p.Devices = append(p.Devices, d)
	p.Resource.PodIfName = "net1"
	if err := w.WritePool(p); err != nil {
		t.Fatal(err)
	}
	if after := stat(t, path); os.SameFile(before, after) {
		t.Errorf("changed pool did not replace its spec file")
	}
	c := loadBack(t, dir)
	if got := c.ListDevices(); !slices.Equal(got, []string{"networking.k8s.io/netdevice=dummy0", "networking.k8s.io/netdevice=dummy1"}) {
		t.Errorf("devices after rewrite = %v", got)
	}
	var raw cdispec.Spec
	readJSON(t, path, &raw)
	if args := raw.Devices[1].ContainerEdits.Hooks[0].Args; !slices.Contains(args, "net1") {
		t.Errorf("rewritten hook args %q lack the pod-side name", args)
	}

	// A file someone chmod-ed is rewritten with 0644 even though its content matches.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePool(p); err != nil {
		t.Fatal(err)
	}
	if m := stat(t, path).Mode().Perm(); m != 0o644 {
		t.Errorf("mode after rewrite = %v, want 0644", m)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"networking.k8s.io-netdevice.json"}) {
		t.Errorf("CDI folder holds %v, want only the spec", names)
	}
}

func TestWritePoolLeavesOutBadDevices(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir, testHook)
	p := seedPool()
	bad := device.New()
	bad.ID, bad.IfName = "weird@name", "weird@name" // Linux allows '@' in names, CDI device names do not
	noGroup := vf("0000:3b:02.0", device.VFIODriver, -1)
	p.Devices = append(p.Devices, bad, noGroup)

	err := w.WritePool(p)
	if err == nil || !strings.Contains(err.Error(), `"weird@name"`) || !strings.Contains(err.Error(), "0000:3b:02.0") {
		t.Fatalf("WritePool error = %v, want one naming weird@name and 0000:3b:02.0", err)
	}
	c := loadBack(t, dir)
	if got := c.ListDevices(); !slices.Equal(got, []string{"networking.k8s.io/netdevice=dummy0"}) {
		t.Errorf("devices = %v, want the good one only", got)
	}
}

func TestEmptyPoolAndRemovePool(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir, testHook)
	p := seedPool()
	path := SpecPath(dir, p.Resource)
	if err := w.WritePool(p); err != nil {
		t.Fatal(err)
	}
	// A pool that lost its last device has no spec (the CDI library rejects a spec without devices).
	empty := pool.Pool{Resource: p.Resource}
	if err := w.WritePool(empty); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("empty pool left its spec: %v", err)
	}
	if err := w.WritePool(p); err != nil {
		t.Fatal(err)
	}
	if err := w.RemovePool(p.Resource); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("RemovePool left the spec: %v", err)
	}
	if err := w.RemovePool(p.Resource); err != nil {
		t.Errorf("RemovePool of an absent spec: %v", err)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir, testHook)
	kept := seedPool()
	gone := pool.Pool{Resource: resource("intel.com", "gone", "net1"), Devices: []device.Device{vf("0000:3b:01.0", "iavf", 42)}}
	goneVFIO := pool.Pool{Resource: resource("intel.com", "gonedpdk", ""), Devices: []device.Device{vf("0000:3b:02.0", device.VFIODriver, 42)}}
	goneVhost := pool.Pool{Resource: resource("intel.com", "gonevhost", ""), Devices: []device.Device{vhost(vf("0000:3b:01.2", "iavf", 44))}}
	goneUIO := pool.Pool{Resource: resource("intel.com", "goneuio", ""), Devices: []device.Device{uioVF("0000:3b:02.3", "igb_uio", "/dev/uio0")}}
	for _, p := range []pool.Pool{kept, gone, goneVFIO, goneVhost, goneUIO} {
		if err := w.WritePool(p); err != nil {
			t.Fatal(err)
		}
	}
	// An older daemon installed the hook elsewhere: still ours.
	movedHook := pool.Pool{Resource: resource("intel.com", "oldhook", ""), Devices: []device.Device{vf("0000:3b:01.1", "iavf", 43)}}
	if err := NewWriter(dir, "/usr/local/bin/netdevice-hook").WritePool(movedHook); err != nil {
		t.Fatal(err)
	}

	foreign := map[string]string{
		// Another vendor's valid spec, named the same way.
		"nvidia.com-gpu.json": `{"cdiVersion":"0.3.0","kind":"nvidia.com/gpu","devices":[{"name":"0","containerEdits":{"deviceNodes":[{"path":"/dev/nvidia0"}]}}]}`,
		// Another tool's vfio spec: vfio nodes alone, no owner annotation.
		"example.com-vfio.json": `{"cdiVersion":"0.5.0","kind":"example.com/vfio","devices":[{"name":"0000:5e:00.1","containerEdits":{"deviceNodes":[{"path":"/dev/vfio/vfio"},{"path":"/dev/vfio/12"}]}}]}`,
		// Our hook with a device node we never write.
		"example.com-gpu.json": `{"cdiVersion":"0.3.0","kind":"example.com/gpu","devices":[{"name":"a","containerEdits":{"deviceNodes":[{"path":"/dev/nvidia0"}],"hooks":[{"hookName":"createRuntime","path":"/opt/netdevice-plugin/bin/netdevice-hook","args":["netdevice-hook","attach","--host-ifname","a"]}]}}]}`,
		// A hook spec of another program.
		"example.com-net.json": `{"cdiVersion":"0.3.0","kind":"example.com/net","devices":[{"name":"a","containerEdits":{"hooks":[{"hookName":"createRuntime","path":"/usr/bin/other-hook","args":["other-hook","attach"]}]}}]}`,
		// Our content under a name we never use.
		"custom-name.json": mustRead(t, SpecPath(dir, gone.Resource)),
		// Our content plus an env edit we never write.
		"example.com-env.json": `{"cdiVersion":"0.3.0","kind":"example.com/env","devices":[{"name":"a","containerEdits":{"env":["A=1"],"hooks":[{"hookName":"createRuntime","path":"/opt/netdevice-plugin/bin/netdevice-hook","args":["netdevice-hook","attach","--host-ifname","a"]}]}}]}`,
		// Not a spec at all, and a YAML spec.
		"notes.json":          `{"hello": "world"}`,
		"nvidia.com-gpu.yaml": "cdiVersion: 0.3.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"1\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\n",
	}
	for name, content := range foreign {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if err := w.Prune([]config.Resource{kept.Resource}); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	want := []string{filepath.Base(SpecPath(dir, kept.Resource))}
	for name := range foreign {
		want = append(want, name)
	}
	slices.Sort(want)
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("after Prune the folder holds\n%v\nwant\n%v", got, want)
	}
	if err := NewWriter(filepath.Join(dir, "absent"), testHook).Prune(nil); err != nil {
		t.Errorf("Prune of an absent folder: %v", err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(mustRead(t, path)), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func stat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestWritePoolCleansUpACrashedWrite: a daemon killed between the library's write and the rename
// leaves files in the staging folder; the next write removes them.
func TestWritePoolCleansUpACrashedWrite(t *testing.T) {
	dir := t.TempDir()
	staging := filepath.Join(dir, stagingDir)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"spec.1234.tmp", "networking.k8s.io-netdevice.json"} {
		if err := os.WriteFile(filepath.Join(staging, name), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := NewWriter(dir, testHook).WritePool(seedPool()); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"networking.k8s.io-netdevice.json"}) {
		t.Errorf("CDI folder holds %v, want only the spec", names)
	}
	loadBack(t, dir)
}
