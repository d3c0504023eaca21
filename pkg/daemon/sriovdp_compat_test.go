package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

// sriovdpResponse is what sriov-dp (v3.11.0 and master, without --use-cdi) answers for one
// container, field by field, as its resources/server.go Allocate builds it: Envs from the pool's
// GetEnvs (PCIDEVICE_<P>_<N> and its _INFO), Devices from GetDeviceSpecs (deduplicated by host
// path, "rw"), no Mounts, no Annotations. The device-information file is what its
// StoreDeviceInfoFile writes. Source: sriov-dp's pkg/resources/server.go, pool_stub.go,
// pkg/infoprovider/*.go and pkg/netdevice/netResourcePool.go, read at v3.11.0.
type sriovdpResponse struct {
	envs    map[string]string
	devices []*pluginapi.DeviceSpec
	devinfo map[string]string // device ID -> file content
}

func spec(host, container string) *pluginapi.DeviceSpec {
	return &pluginapi.DeviceSpec{HostPath: host, ContainerPath: container, Permissions: "rw"}
}

// TestAllocateMatchesSriovDP compares Allocate, field by field, with what sriov-dp returns for the
// same device in the same pool: a netdev VF, vfio-pci VFs (an IOMMU group and a no-IOMMU one), a
// uio VF, and a needVhostNet pool. The plugin adds CDI devices (its hook, or the same device nodes
// again) and nothing else.
func TestAllocateMatchesSriovDP(t *testing.T) {
	requireNetns(t)
	devRoot := t.TempDir()
	for node, dev := range map[string]uint64{"vhost-net": unix.Mkdev(10, 238), "net/tun": unix.Mkdev(10, 200), "infiniband/rdma_cm": unix.Mkdev(10, 56)} {
		p := filepath.Join(devRoot, node)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(dev)); err != nil {
			t.Fatalf("mknod %s: %v", p, err)
		}
	}
	tree := func(tr *pcitest.Tree) error {
		if err := e810(1)(tr); err != nil { // VF 0: iavf, netdev ens1f0v0
			return err
		}
		for i, f := range []pcitest.Function{
			{Driver: "vfio-pci", IOMMUGroup: "53"},
			{Driver: "vfio-pci", IOMMUGroup: "0", NoIOMMU: true},
			{Driver: "igb_uio", IOMMUGroup: "55", UIO: "uio0"},
			{Driver: "vfio-pci", IOMMUGroup: "56"},
		} {
			if err := tr.AddVF("0000:3b:00.0", i+1, f); err != nil {
				return err
			}
		}
		// A ConnectX-6 Dx VF with its own RDMA device, as sriov-dp's allocation docs show it.
		if err := tr.AddPF(pcitest.Function{Addr: "0000:86:00.0", Vendor: "15b3", Device: "101d", Class: "0x020000", Driver: "mlx5_core", NUMANode: "1", IOMMUGroup: "70"},
			pcitest.SRIOV{TotalVFs: 8, Offset: 2, Stride: 1, VFDevice: "101e"}); err != nil {
			return err
		}
		if err := tr.AddNetdev("0000:86:00.0", pcitest.Netdev{Name: "ens2f0np0", MAC: "b8:ce:f6:00:00:01", Carrier: "1", PhysPortName: "p0"}); err != nil {
			return err
		}
		if err := tr.AddVF("0000:86:00.0", 0, pcitest.Function{Driver: "mlx5_core", IOMMUGroup: "71"}); err != nil {
			return err
		}
		if err := tr.AddNetdev("0000:86:00.2", pcitest.Netdev{Name: "ens2f0v0", MAC: "b8:ce:f6:00:00:02", Carrier: "1"}); err != nil {
			return err
		}
		return tr.AddRDMA("0000:86:00.2", pcitest.RDMA{Name: "mlx5_2", Verbs: 2, MAD: 2, Netdev: "ens2f0v0"})
	}
	cfg := configOf(
		`{"resourceName": "intel_sriov_netdevice", "selectors": {"drivers": ["iavf"]}}`,
		`{"resourceName": "intel_sriov_dpdk", "selectors": {"pciAddresses": ["0000:3b:01.1", "0000:3b:01.2"]}}`,
		`{"resourceName": "intel_sriov_uio", "selectors": {"drivers": ["igb_uio"]}}`,
		`{"resourceName": "intel_sriov_vhost", "selectors": {"pciAddresses": ["0000:3b:01.4"], "needVhostNet": true}}`,
		`{"resourceName": "mlnx_sriov_rdma", "resourcePrefix": "mellanox.com", "selectors": {"vendors": ["15b3"], "devices": ["101e"], "isRdma": true}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: tree, noLinks: true, devRoot: devRoot, prefix: "intel.com"})

	pciInfo := func(addr string) string {
		return `{"type":"pci","version":"1.1.0","pci":{"pci-address":"` + addr + `"}}`
	}
	tests := []struct {
		name     string
		resource string
		ids      []string
		want     sriovdpResponse
		wantCDI  int
	}{
		{
			name: "netdev VF (iavf)", resource: "intel.com/intel_sriov_netdevice", ids: []string{"0000:3b:01.0"},
			want: sriovdpResponse{
				envs: map[string]string{
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_NETDEVICE":      "0000:3b:01.0",
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_NETDEVICE_INFO": `{"0000:3b:01.0":{"generic":{"deviceID":"0000:3b:01.0"}}}`,
				},
				devinfo: map[string]string{"0000:3b:01.0": pciInfo("0000:3b:01.0")},
			},
			wantCDI: 1, // the hook that moves its netdev
		},
		{
			name: "vfio-pci VFs, IOMMU and no-IOMMU group", resource: "intel.com/intel_sriov_dpdk", ids: []string{"0000:3b:01.1", "0000:3b:01.2"},
			want: sriovdpResponse{
				envs: map[string]string{
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK": "0000:3b:01.1,0000:3b:01.2",
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK_INFO": `{"0000:3b:01.1":{"generic":{"deviceID":"0000:3b:01.1"},"vfio":{"dev-mount":"/dev/vfio/53","mount":"/dev/vfio/vfio"}},` +
						`"0000:3b:01.2":{"generic":{"deviceID":"0000:3b:01.2"},"vfio":{"dev-mount":"/dev/vfio/0","mount":"/dev/vfio/vfio"}}}`,
				},
				devices: []*pluginapi.DeviceSpec{spec("/dev/vfio/vfio", "/dev/vfio/vfio"), spec("/dev/vfio/53", "/dev/vfio/53"), spec("/dev/vfio/noiommu-0", "/dev/vfio/0")},
				devinfo: map[string]string{"0000:3b:01.1": pciInfo("0000:3b:01.1"), "0000:3b:01.2": pciInfo("0000:3b:01.2")},
			},
			wantCDI: 2,
		},
		{
			name: "igb_uio VF", resource: "intel.com/intel_sriov_uio", ids: []string{"0000:3b:01.3"},
			want: sriovdpResponse{
				envs: map[string]string{
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_UIO":      "0000:3b:01.3",
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_UIO_INFO": `{"0000:3b:01.3":{"generic":{"deviceID":"0000:3b:01.3"},"uio":{"mount":"/dev/uio0"}}}`,
				},
				devices: []*pluginapi.DeviceSpec{spec("/dev/uio0", "/dev/uio0")},
				devinfo: map[string]string{"0000:3b:01.3": pciInfo("0000:3b:01.3")},
			},
			wantCDI: 1,
		},
		{
			name: "needVhostNet pool (vfio-pci VF)", resource: "intel.com/intel_sriov_vhost", ids: []string{"0000:3b:01.4"},
			want: sriovdpResponse{
				envs: map[string]string{
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_VHOST": "0000:3b:01.4",
					"PCIDEVICE_INTEL_COM_INTEL_SRIOV_VHOST_INFO": `{"0000:3b:01.4":{"generic":{"deviceID":"0000:3b:01.4"},` +
						`"vfio":{"dev-mount":"/dev/vfio/56","mount":"/dev/vfio/vfio"},"vhost":{"net-mount":"/dev/vhost-net","tun-mount":"/dev/net/tun"}}}`,
				},
				devices: []*pluginapi.DeviceSpec{spec("/dev/vfio/vfio", "/dev/vfio/vfio"), spec("/dev/vfio/56", "/dev/vfio/56"),
					spec("/dev/vhost-net", "/dev/vhost-net"), spec("/dev/net/tun", "/dev/net/tun")},
				devinfo: map[string]string{"0000:3b:01.4": pciInfo("0000:3b:01.4")},
			},
			wantCDI: 1,
		},
		{
			name: "isRdma pool (mlx5_core VF with its RDMA device)", resource: "mellanox.com/mlnx_sriov_rdma", ids: []string{"0000:86:00.2"},
			want: sriovdpResponse{
				envs: map[string]string{
					"PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_RDMA": "0000:86:00.2",
					"PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_RDMA_INFO": `{"0000:86:00.2":{"generic":{"deviceID":"0000:86:00.2"},` +
						`"rdma":{"issm":"/dev/infiniband/issm2","rdma_cm":"/dev/infiniband/rdma_cm","rdma_dev":"mlx5_2","umad":"/dev/infiniband/umad2","uverbs":"/dev/infiniband/uverbs2"}}}`,
				},
				devices: []*pluginapi.DeviceSpec{spec("/dev/infiniband/issm2", "/dev/infiniband/issm2"), spec("/dev/infiniband/umad2", "/dev/infiniband/umad2"),
					spec("/dev/infiniband/uverbs2", "/dev/infiniband/uverbs2"), spec("/dev/infiniband/rdma_cm", "/dev/infiniband/rdma_cm")},
				devinfo: map[string]string{"0000:86:00.2": `{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:86:00.2","rdma-device":"mlx5_2"}}`},
			},
			wantCDI: 1, // the hook, and the same character devices as CDI device nodes
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr, err := h.allocate(tt.resource, tt.ids...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cr.Envs, tt.want.envs) {
				t.Errorf("Envs =\n%v\nsriov-dp:\n%v", cr.Envs, tt.want.envs)
			}
			// The test's device folder stands for /dev: host paths are under it.
			for _, d := range tt.want.devices {
				d.HostPath = devRoot + strings.TrimPrefix(d.HostPath, "/dev")
			}
			if !equalSpecs(cr.Devices, tt.want.devices) {
				t.Errorf("Devices = %v\nsriov-dp: %v", cr.Devices, tt.want.devices)
			}
			if len(cr.Mounts) != 0 || len(cr.Annotations) != 0 {
				t.Errorf("Mounts %v, Annotations %v; sriov-dp has none", cr.Mounts, cr.Annotations)
			}
			if len(cr.CdiDevices) != tt.wantCDI {
				t.Errorf("%d CDI devices, want %d", len(cr.CdiDevices), tt.wantCDI)
			}
			h.resolveCDI(cdiNames(cr))
			for id, want := range tt.want.devinfo {
				got, err := os.ReadFile(h.devinfo.File(tt.resource, id))
				if err != nil || string(got) != want {
					t.Errorf("device-information file of %s = %s, %v; sriov-dp writes %s", id, got, err, want)
				}
				var v map[string]any
				if err := json.Unmarshal(got, &v); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func equalSpecs(a, b []*pluginapi.DeviceSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].HostPath != b[i].HostPath || a[i].ContainerPath != b[i].ContainerPath || a[i].Permissions != b[i].Permissions {
			return false
		}
	}
	return true
}

// A needVhostNet device on a node without /dev/vhost-net is unhealthy, naming the missing node
// (sriov-dp would hand it out without vhost-net, and the pod would find none).
func TestVhostNetMissing(t *testing.T) {
	requireNetns(t)
	cfg := configOf(`{"resourceName": "vhost", "resourcePrefix": "intel.com", "selectors": {"drivers": ["iavf"], "needVhostNet": true}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: e810(1), noLinks: true, devRoot: t.TempDir()})
	h.waitList("intel.com/vhost", "[0000:3b:01.0:Unhealthy[numa0]]")
	if _, err := h.allocate("intel.com/vhost", "0000:3b:01.0"); err == nil {
		t.Fatal("Allocate of a device without vhost-net succeeded")
	} else if want := "needVhostNet: no /dev/vhost-net, /dev/net/tun on the host"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %v does not say %q", err, want)
	}
}
