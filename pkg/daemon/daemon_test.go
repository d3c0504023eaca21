package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
)

const netdevice = "networking.k8s.io/netdevice"

// The seed demo's pool: links by name, served as networking.k8s.io/netdevice. A real veth's
// carrier follows its peer; the daemon hears the change over netlink.
func TestLinkStateReachesListAndWatch(t *testing.T) {
	requireNetns(t)
	a, peer := veth(t, "ndva0", "ndpeer0")
	h := newHarness(t, harnessOpts{config: configOf(softwarePool("netdevice", "ndva*"))})
	h.waitList(netdevice, "[ndva0:Healthy]")
	h.resolveCDI([]string{netdevice + "=ndva0"})

	if err := netlink.LinkSetDown(peer); err != nil {
		t.Fatal(err)
	}
	h.waitList(netdevice, "[ndva0:Unhealthy]")
	if _, err := h.allocate(netdevice, "ndva0"); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "carrier down") {
		t.Errorf("Allocate of a link without carrier: %v, want FailedPrecondition naming the carrier", err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	h.waitList(netdevice, "[ndva0:Healthy]")

	// A second link appears; then the first, which no pod holds, is deleted: it leaves the pool
	// and its CDI spec.
	veth(t, "ndva1", "ndpeer1")
	h.waitList(netdevice, "[ndva0:Healthy ndva1:Healthy]")
	if err := netlink.LinkDel(a); err != nil {
		t.Fatal(err)
	}
	h.waitList(netdevice, "[ndva1:Healthy]")
	h.resolveCDI([]string{netdevice + "=ndva1"})
	if specHas(t, h.cdiDir, netdevice+"=ndva0") {
		t.Error("the deleted link is still in the CDI spec")
	}
	veth(t, "ndva0", "ndpeer0")
	h.waitList(netdevice, "[ndva0:Healthy ndva1:Healthy]")
}

// specHas reports whether the CDI folder resolves the name.
func specHas(t *testing.T, dir, name string) bool {
	t.Helper()
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(dir), cdiapi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	return cache.GetDevice(name) != nil
}

// The hook moves an allocated link into the pod's namespace: it leaves the host, and is in use,
// not broken, for as long as the kubelet holds it. Once the kubelet offers it as free while it is
// still away, it has left for good and leaves the pool; back home, it is offered again.
func TestLinkInPodStaysHealthy(t *testing.T) {
	requireNetns(t)
	a, _ := veth(t, "ndvb0", "ndpeerb0")
	h := newHarness(t, harnessOpts{config: configOf(softwarePool("netdevice", "ndvb*"))})
	h.waitList(netdevice, "[ndvb0:Healthy]")
	cr, err := h.allocate(netdevice, "ndvb0")
	if err != nil {
		t.Fatal(err)
	}
	if got := cdiNames(cr); !slices.Equal(got, []string{netdevice + "=ndvb0"}) || len(cr.Envs) != 0 {
		t.Errorf("Allocate answered CDI %v envs %v, want [%s=ndvb0] and no PCI variable", got, cr.Envs, netdevice)
	}
	pod, _ := netnstest.Unshared(t)
	scans := h.obs.scans.Load()
	if err := netlink.LinkSetNsFd(a, pod.FD()); err != nil {
		t.Fatal(err)
	}
	// The move is a link event; wait for the rescan it causes, then the list must be unchanged.
	waitFor(t, func() bool { return h.obs.scans.Load() > scans })
	h.waitList(netdevice, "[ndvb0:Healthy]")
	h.resolveCDI([]string{netdevice + "=ndvb0"}) // a restarting container still finds it
	if _, err := h.allocate(netdevice, "ndvb0"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Allocate of a link still inside a pod: %v, want FailedPrecondition", err)
	}
	// The kubelet offers it as free: the pod is over, and the link did not come back.
	if _, err := h.plugin(netdevice).Client.GetPreferredAllocation(ctxTimeout(t, 5*time.Second), &pluginapi.PreferredAllocationRequest{
		ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{{AvailableDeviceIDs: []string{"ndvb0"}, AllocationSize: 1}}}); err != nil {
		t.Fatal(err)
	}
	h.waitList(netdevice, "[]")
	home, err := pod.H.LinkByName("ndvb0")
	if err != nil {
		t.Fatal(err)
	}
	// Home again (as the hook's detach does it: moved back, then up: a move sets it down).
	hostNS := netnstest.Own(t)
	if err := pod.H.LinkSetNsFd(home, hostNS.FD()); err != nil {
		t.Fatal(err)
	}
	back, err := netlink.LinkByName("ndvb0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(back); err != nil {
		t.Fatal(err)
	}
	h.waitList(netdevice, "[ndvb0:Healthy]")
}

// e810 writes an Intel E810 PF with n iavf VFs on NUMA node 0; the PF has carrier, the VFs are
// admin-down (no carrier file, as on a real host).
func e810(n int) func(*pcitest.Tree) error {
	return func(tr *pcitest.Tree) error {
		pf := "0000:3b:00.0"
		if err := tr.AddPF(pcitest.Function{Addr: pf, Vendor: "8086", Device: "159b", Class: "0x020000", Driver: "ice", NUMANode: "0", IOMMUGroup: "30"},
			pcitest.SRIOV{TotalVFs: 8, Offset: 8, Stride: 1, VFDevice: "1889"}); err != nil {
			return err
		}
		if err := tr.AddNetdev(pf, pcitest.Netdev{Name: "ens1f0", MAC: "b4:96:91:00:00:00", Carrier: "1", PhysPortName: "p0", PhysSwitchID: "b496910000"}); err != nil {
			return err
		}
		for i := range n {
			if err := addVF(tr, i); err != nil {
				return err
			}
		}
		return nil
	}
}

func addVF(tr *pcitest.Tree, i int) error {
	if err := tr.AddVF("0000:3b:00.0", i, pcitest.Function{Driver: "iavf", IOMMUGroup: strconv.Itoa(10 + i)}); err != nil {
		return err
	}
	addr, err := tr.VFAddr("0000:3b:00.0", i)
	if err != nil {
		return err
	}
	return tr.AddNetdev(addr, pcitest.Netdev{Name: "ens1f0v" + strconv.Itoa(i), MAC: fmt.Sprintf("02:00:00:00:00:%02x", i), OperState: "down"})
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// VFs on a sysfs fixture: a new VF is advertised, a VF follows its PF's carrier, an unbound VF
// and a VF that left sysfs are unhealthy, and a VF whose netdev is inside a pod stays in the pool
// that selected it by interface name.
func TestVFChangesReachListAndWatch(t *testing.T) {
	const (
		byName = "intel.com/vf0_by_name"
		byID   = "intel.com/sriov_vf"
	)
	cfg := configOf(
		`{"resourceName": "vf0_by_name", "resourcePrefix": "intel.com", "selectors": {"ifNames": ["ens1f0v0"], "linkTypes": ["ether"]}}`,
		`{"resourceName": "sriov_vf", "resourcePrefix": "intel.com", "selectors": {"vendors": ["8086"], "devices": ["1889"]}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: e810(2), rescan: 100 * time.Millisecond, noLinks: true})
	h.waitList(byName, "[0000:3b:01.0:Healthy[numa0]]")
	h.waitList(byID, "[0000:3b:01.1:Healthy[numa0]]")

	// sriov_numvfs raised: a new VF appears.
	if err := addVF(h.tree, 2); err != nil {
		t.Fatal(err)
	}
	h.waitList(byID, "[0000:3b:01.1:Healthy[numa0] 0000:3b:01.2:Healthy[numa0]]")
	h.resolveCDI([]string{byName + "=0000:3b:01.0", byID + "=0000:3b:01.1", byID + "=0000:3b:01.2"})

	pfDir, err := h.tree.FuncDir("0000:3b:00.0")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(pfDir, "net/ens1f0/carrier"), "0")
	h.waitList(byName, "[0000:3b:01.0:Unhealthy[numa0]]")
	h.waitList(byID, "[0000:3b:01.1:Unhealthy[numa0] 0000:3b:01.2:Unhealthy[numa0]]")
	write(t, filepath.Join(pfDir, "net/ens1f0/carrier"), "1")
	h.waitList(byID, "[0000:3b:01.1:Healthy[numa0] 0000:3b:01.2:Healthy[numa0]]")

	// VF 1 unbound from iavf: nothing can use it (sriov-dp does not list it either): it leaves.
	vf1, err := h.tree.FuncDir("0000:3b:01.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(vf1, "driver")); err != nil {
		t.Fatal(err)
	}
	h.waitList(byID, "[0000:3b:01.2:Healthy[numa0]]")
	if _, err := h.allocate(byID, "0000:3b:01.1"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Allocate of an unbound VF: %v, want InvalidArgument (no such device)", err)
	}

	// VF 2 leaves sysfs (sriov_numvfs lowered) while no pod holds it: it leaves the pool.
	if err := os.Remove(filepath.Join(h.tree.Root, "bus/pci/devices/0000:3b:01.2")); err != nil {
		t.Fatal(err)
	}
	h.waitList(byID, "[]")

	// VF 0's netdev moved into a pod: sysfs of the host shows no netdev, the function is still
	// there. It stays in the pool that chose it by name and link type, healthy.
	h.netdevIntoPod("0000:3b:01.0", "ens1f0v0")
	h.waitScans(2)
	h.waitList(byName, "[0000:3b:01.0:Healthy[numa0]]")
	cr, err := h.allocate(byName, "0000:3b:01.0")
	if err != nil {
		t.Fatal(err)
	}
	if got := cr.Envs["PCIDEVICE_INTEL_COM_VF0_BY_NAME"]; got != "0000:3b:01.0" {
		t.Errorf("PCIDEVICE_INTEL_COM_VF0_BY_NAME = %q, want 0000:3b:01.0 (envs %v)", got, cr.Envs)
	}
	h.resolveCDI(cdiNames(cr))
}

// Allocate through the whole chain: vfio-pci VFs get their device nodes (no-IOMMU group named
// by sysfs), PCI devices the sriov-dp variable, and every CDI name resolves in the written specs.
func TestAllocateThroughDaemon(t *testing.T) {
	tree := func(tr *pcitest.Tree) error {
		if err := e810(1)(tr); err != nil {
			return err
		}
		if err := tr.AddVF("0000:3b:00.0", 1, pcitest.Function{Driver: "vfio-pci", IOMMUGroup: "77", NoIOMMU: true}); err != nil {
			return err
		}
		return tr.AddVF("0000:3b:00.0", 2, pcitest.Function{Driver: "vfio-pci", IOMMUGroup: "78"})
	}
	cfg := configOf(`{"resourceName": "dpdk", "resourcePrefix": "intel.com", "selectors": {"drivers": ["vfio-pci"]}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: tree, noLinks: true})
	const dpdk = "intel.com/dpdk"
	h.waitList(dpdk, "[0000:3b:01.1:Healthy[numa0] 0000:3b:01.2:Healthy[numa0]]")
	cr, err := h.allocate(dpdk, "0000:3b:01.2", "0000:3b:01.1")
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, d := range cr.Devices {
		nodes = append(nodes, d.HostPath+":"+d.Permissions)
	}
	if want := []string{"/dev/vfio/vfio:rw", "/dev/vfio/78:rw", "/dev/vfio/noiommu-77:rw"}; !slices.Equal(nodes, want) {
		t.Errorf("device specs = %v, want %v", nodes, want)
	}
	if got := cr.Envs["PCIDEVICE_INTEL_COM_DPDK"]; got != "0000:3b:01.2,0000:3b:01.1" {
		t.Errorf("PCIDEVICE_INTEL_COM_DPDK = %q, want the addresses in request order", got)
	}
	h.resolveCDI(cdiNames(cr))
	if _, err := h.allocate(dpdk, "0000:3b:01.0"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "0000:3b:01.0") {
		t.Errorf("Allocate of a VF of another pool: %v, want InvalidArgument naming it", err)
	}
}

// A ConfigMap update swaps the ..data symlink: pools appear and disappear without a restart; an
// invalid config changes nothing.
func TestConfigEdits(t *testing.T) {
	requireNetns(t)
	veth(t, "ndca0", "ndcpeer0")
	veth(t, "ndcb0", "ndcpeer1")
	const (
		a = "networking.k8s.io/pool-a"
		b = "networking.k8s.io/pool-b"
	)
	h := newHarness(t, harnessOpts{config: configOf(softwarePool("pool-a", "ndca*")), rescan: 200 * time.Millisecond})
	h.waitList(a, "[ndca0:Healthy]")

	h.writeConfig(configOf(softwarePool("pool-a", "ndca*"), softwarePool("pool-b", "ndcb*")))
	h.waitList(b, "[ndcb0:Healthy]")
	h.resolveCDI([]string{a + "=ndca0", b + "=ndcb0"})

	// A key sriov-dp would ignore is a warning: the config applies, and the warning is counted.
	h.writeConfig(`{"resourceList": [{"resourceName": "pool-a", "selectors": {"ifNames": ["ndca*"], "colour": "blue"}}, ` + softwarePool("pool-b", "ndcb*") + `]}`)
	waitFor(t, func() bool { return h.obs.warnings.Load() == 1 })

	bad := `{"resourceList": [{"resourceName": "pool-a", "selectors": {"pfNames": "ens1f0"}}]}`
	h.writeConfig(bad)
	waitFor(t, func() bool { return h.obs.configErrs.Load() > 0 })
	if got := served(h.mgr); !slices.Equal(got, []string{a, b}) {
		t.Errorf("after an invalid config the servers are %v, want both pools kept", got)
	}
	h.waitList(b, "[ndcb0:Healthy]")
	// The same bad config published again, and files written beside it (a log, say), make no new
	// log line or count: each distinct error is reported once.
	h.writeConfig(bad)
	for i := range 20 {
		write(t, filepath.Join(h.cfgDir, "daemon.log"), fmt.Sprintf("line %d\n", i))
	}
	h.waitScans(3) // the periodic rescan reloads the config too
	if n := h.obs.configErrs.Load(); n != 1 {
		t.Errorf("the same invalid config was reported %d times, want once", n)
	}

	// pool-a goes, and pool-b now takes both links (first match wins).
	h.writeConfig(configOf(softwarePool("pool-b", "ndc?0")))
	h.waitList(b, "[ndca0:Healthy ndcb0:Healthy]")
	waitFor(t, func() bool { return slices.Equal(served(h.mgr), []string{b}) })
	socket := h.mgr.SocketPath(config.Resource{Prefix: "networking.k8s.io", Name: "pool-a"})
	waitFor(t, func() bool { _, err := os.Lstat(socket); return errors.Is(err, os.ErrNotExist) })
	spec := cdi.SpecPath(h.cdiDir, config.Resource{Prefix: "networking.k8s.io", Name: "pool-a"})
	waitFor(t, func() bool { _, err := os.Stat(spec); return errors.Is(err, os.ErrNotExist) })
	h.resolveCDI([]string{b + "=ndca0", b + "=ndcb0"})
}

func served(m *server.Manager) []string {
	got := m.Resources()
	slices.Sort(got)
	return got
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met within 10 s")
		}
	}
}

func TestRunRefusesInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	mgr, err := server.NewManager(server.Options{DevicePluginDir: shortDir(t, "dp")})
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	for _, tt := range []struct {
		config string
		strict bool
	}{
		{config: `{"resourceList": [{"resourceName": "x", "selectors": {"vendors": "8086"}}]}`},
		// A value sriov-dp would load and never match is refused only with --strict-config.
		{config: `{"resourceList": [{"resourceName": "x", "selectors": {"vendors": ["zz"]}}]}`, strict: true},
	} {
		write(t, path, tt.config)
		d, err := New(Options{ConfigPath: path, Scanner: staticScanner{}, Specs: cdi.NewWriter(dir, hookPath), Servers: mgr, StrictConfig: tt.strict})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = d.Run(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "vendors") {
			t.Fatalf("Run with an invalid config (strict %v): %v, want an error naming the file and the field", tt.strict, err)
		}
	}
	if _, err := New(Options{Scanner: staticScanner{}}); err == nil {
		t.Error("New without a config file and servers succeeded")
	}
}

type staticScanner struct{}

func (staticScanner) Scan() ([]device.Device, error) { return nil, nil }
