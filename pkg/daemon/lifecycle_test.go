package daemon

import (
	"bytes"
	"encoding/gob"
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
	"golang.org/x/sys/unix"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/devinfo"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

// A device-information file is written when Allocate hands the device out, stays while the
// kubelet reports a pod holding it, and is removed once it does not; a file a previous run left for
// a device no pod holds is removed at start; another resource's file is never touched.
func TestDeviceInfoLifecycle(t *testing.T) {
	requireNetns(t)
	const sriov = "intel.com/sriov"
	cfg := configOf(`{"resourceName": "sriov", "resourcePrefix": "intel.com", "selectors": {"drivers": ["iavf"]}}`)
	// Left by an earlier run: a stale file of ours, and another plugin's file.
	dir := devinfo.New(filepath.Join(shortDir(t, "dvi"), "dp"))
	if err := dir.Write(sriov, "0000:3b:01.1", devinfo.PCI("0000:3b:01.1", nil)); err != nil {
		t.Fatal(err)
	}
	if err := dir.Write("example.com/other", "0000:3b:01.1", devinfo.PCI("0000:3b:01.1", nil)); err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, harnessOpts{config: cfg, tree: e810(2), noLinks: true, podResources: true}, func(h *harness) { h.devinfo = dir })
	h.waitList(sriov, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.1:Healthy[numa0]]")
	waitFor(t, func() bool { _, err := os.Stat(dir.File(sriov, "0000:3b:01.1")); return errors.Is(err, os.ErrNotExist) })
	if _, err := os.Stat(dir.File("example.com/other", "0000:3b:01.1")); err != nil {
		t.Errorf("another resource's file was touched: %v", err)
	}

	if _, err := h.allocate(sriov, "0000:3b:01.0"); err != nil {
		t.Fatal(err)
	}
	if info, err := dir.Read(sriov, "0000:3b:01.0"); err != nil || info.Pci.PciAddress != "0000:3b:01.0" || info.Type != "pci" {
		t.Fatalf("device-information file after Allocate: %+v, %v", info, err)
	}
	h.podres.Hold("default", "pod-a", sriov, "0000:3b:01.0")
	// Well past the grace period and several kubelet syncs, a held device keeps its file.
	calls := h.podres.Calls()
	time.Sleep(2 * testGrace)
	waitFor(t, func() bool { return h.podres.Calls() > calls+3 })
	if _, err := os.Stat(dir.File(sriov, "0000:3b:01.0")); err != nil {
		t.Fatalf("file of a held device removed: %v", err)
	}
	h.podres.Release("default", "pod-a")
	waitFor(t, func() bool { _, err := os.Stat(dir.File(sriov, "0000:3b:01.0")); return errors.Is(err, os.ErrNotExist) })
	if h.ledger.Holds(sriov, "0000:3b:01.0") {
		t.Error("the ledger still holds a device no pod holds")
	}

	// A kubelet that cannot answer releases nothing.
	if _, err := h.allocate(sriov, "0000:3b:01.1"); err != nil {
		t.Fatal(err)
	}
	h.podres.Fail(errors.New("restarting"))
	calls = h.podres.Calls()
	time.Sleep(2 * testGrace)
	waitFor(t, func() bool { return h.podres.Calls() > calls+3 })
	if _, err := os.Stat(dir.File(sriov, "0000:3b:01.1")); err != nil {
		t.Fatalf("a silent kubelet released an allocation: %v", err)
	}
}

// A software link inside its pod stays in its pool while the kubelet reports a pod holding it, and
// leaves the pool once it does not (the pod is gone and the link did not come back).
func TestHeldLinkLeavesWithItsPod(t *testing.T) {
	requireNetns(t)
	link, _ := veth(t, "ndvh0", "ndpeerh0")
	h := newHarness(t, harnessOpts{config: configOf(softwarePool("netdevice", "ndvh*")), podResources: true})
	h.waitList(netdevice, "[ndvh0:Healthy]")
	if _, err := h.allocate(netdevice, "ndvh0"); err != nil {
		t.Fatal(err)
	}
	h.podres.Hold("default", "pod-a", netdevice, "ndvh0")
	pod, _ := netnstest.Unshared(t)
	if err := netlink.LinkSetNsFd(link, pod.FD()); err != nil {
		t.Fatal(err)
	}
	calls := h.podres.Calls()
	time.Sleep(2 * testGrace)
	waitFor(t, func() bool { return h.podres.Calls() > calls+3 })
	h.waitList(netdevice, "[ndvh0:Healthy]")
	h.podres.Release("default", "pod-a")
	h.waitList(netdevice, "[]")
}

// Lowering sriov_numvfs while the daemon runs: the VFs that left sysfs leave the pool.
func TestLoweredVFsLeave(t *testing.T) {
	requireNetns(t)
	cfg := configOf(`{"resourceName": "sriov", "resourcePrefix": "intel.com", "selectors": {"pfNames": ["ens1f0"]}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: e810(8), noLinks: true, rescan: 100 * time.Millisecond})
	h.waitList("intel.com/sriov", describeVFs(0, 8))
	for i := 2; i < 8; i++ {
		addr, err := h.tree.VFAddr("0000:3b:00.0", i)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(h.tree.Root, "bus/pci/devices", addr)); err != nil {
			t.Fatal(err)
		}
	}
	h.waitList("intel.com/sriov", describeVFs(0, 2))
}

func describeVFs(from, to int) string {
	var parts []string
	for i := from; i < to; i++ {
		parts = append(parts, fmt.Sprintf("0000:3b:01.%d:Healthy[numa0]", i))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Churn does not grow the pool: links created and deleted leave it, so what is advertised is what
// is there.
func TestLinkChurnDoesNotGrow(t *testing.T) {
	requireNetns(t)
	h := newHarness(t, harnessOpts{config: configOf(softwarePool("netdevice", "ndch*"))})
	veth(t, "ndchkeep", "ndpeerkeep")
	h.waitList(netdevice, "[ndchkeep:Healthy]")
	for i := range 60 {
		name := "ndch" + strconv.Itoa(i)
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "ndcp" + strconv.Itoa(i)}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			time.Sleep(50 * time.Millisecond) // let some land in a scan
		}
		if err := netlink.LinkDel(v); err != nil {
			t.Fatal(err)
		}
	}
	h.waitList(netdevice, "[ndchkeep:Healthy]")
}

// A state file from another host (devices this one does not have, a link nobody holds) adds
// nothing: what does not fit is dropped, with a log line.
func TestStaleStateDropped(t *testing.T) {
	requireNetns(t)
	cfg := configOf(softwarePool("netdevice", "ndst*"),
		`{"resourceName": "sriov", "resourcePrefix": "intel.com", "selectors": {"pfNames": ["ens1f0"]}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: e810(8), noLinks: true, state: true})
	h.waitList("intel.com/sriov", describeVFs(0, 8))
	veth(t, "ndst0", "ndpeerst0")
	h.stop()
	// The host changes under the stopped daemon: 6 VFs go (sriov_numvfs lowered) and a link too,
	// while the state file still lists them. Nothing of it was allocated.
	h.writeStateFrom(t, func(st *savedState) {
		st.Pooled = append(st.Pooled, savedDevice{Resource: netdevice, Device: softLink("ndst9")})
	})
	for i := 2; i < 8; i++ {
		addr, _ := h.tree.VFAddr("0000:3b:00.0", i)
		if err := os.Remove(filepath.Join(h.tree.Root, "bus/pci/devices", addr)); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	h.waitList("intel.com/sriov", describeVFs(0, 2))
	h.waitList(netdevice, "[ndst0:Healthy]")
}

func softLink(name string) device.Device {
	d := device.New()
	d.ID, d.IfName, d.IfNames, d.Kind = name, name, []string{name}, "veth"
	return d
}

// writeStateFrom rewrites the state file after edit.
func (h *harness) writeStateFrom(t *testing.T, edit func(*savedState)) {
	t.Helper()
	data, err := os.ReadFile(h.opts.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	var st savedState
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&st); err != nil {
		t.Fatal(err)
	}
	edit(&st)
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.opts.StateFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Hostile state files neither hang nor crash the start: a FIFO (no writer), a symlink, an entry
// with an empty name list (which once panicked at every start), and invalid entries.
func TestHostileStateFile(t *testing.T) {
	requireNetns(t)
	veth(t, "ndhs0", "ndpeerhs0")
	h := newHarness(t, harnessOpts{config: configOf(softwarePool("netdevice", "ndhs*")), tree: e810(1), state: true})
	h.waitList(netdevice, "[ndhs0:Healthy]")
	h.stop()
	// The VF shows no netdev (inside a pod), so a saved name list is what names it.
	h.netdevIntoPod("0000:3b:01.0", "ens1f0v0")

	cases := []struct {
		name  string
		write func(path string) error
	}{
		{"FIFO", func(p string) error { return unix.Mkfifo(p, 0o600) }},
		{"symlink to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"empty host names and bad entries", func(p string) error {
			st := savedState{Version: stateVersion,
				HostNames: []savedHostNames{{PCIAddress: "0000:3b:01.0", Driver: "iavf"}, {PCIAddress: "garbage", Names: []string{"x"}}},
				Pooled: []savedDevice{{Resource: netdevice, Device: device.Device{ID: ""}},
					{Resource: netdevice, Device: device.Device{ID: "0000:3b:01.0", PCIAddress: "0000:3b:09.0"}},
					{Resource: "no-slash", Device: softLink("ndhs7")}},
				Allocations: []allocation.Entry{{Resource: netdevice, ID: ""}},
			}
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
				return err
			}
			return os.WriteFile(p, buf.Bytes(), 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_ = os.Remove(h.opts.StateFile)
			if err := c.write(h.opts.StateFile); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); h.start() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the daemon's start blocked on the state file")
			}
			h.waitList(netdevice, "[ndhs0:Healthy]")
			h.stop()
		})
	}
}

// FuzzDecodeState: whatever the bytes, decoding a state file never panics, and what it keeps is
// valid.
func FuzzDecodeState(f *testing.F) {
	for _, st := range []savedState{
		{Version: stateVersion},
		{Version: stateVersion, Pooled: []savedDevice{{Resource: "intel.com/a", Device: softLink("dummy0")}},
			HostNames:   []savedHostNames{{PCIAddress: "0000:3b:01.0", Names: []string{"ens1f0v0"}}},
			Allocations: []allocation.Entry{{Resource: "intel.com/a", ID: "dummy0"}}},
		{Version: stateVersion, HostNames: []savedHostNames{{PCIAddress: "0000:3b:01.0"}}},
	} {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte("not a gob"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeState(data)
		if err != nil {
			return
		}
		for _, p := range st.Pooled {
			if err := validDevice(&p.Device, p.Resource); err != nil {
				t.Fatalf("kept an invalid device: %v", err)
			}
		}
		for _, hn := range st.HostNames {
			if len(hn.Names) == 0 && len(hn.RDMA) == 0 {
				t.Fatal("kept host names without a name")
			}
		}
	})
}

// In exclusive RDMA mode an RDMA device inside a pod is not on the host's sysfs: the function keeps
// its last RDMA device and character devices (its isRdma pool, its CDI spec, the hook's way home)
// and is healthy while a pod holds it; away with no pod holding it, it is unhealthy, naming it.
func TestRDMADeviceAway(t *testing.T) {
	requireNetns(t)
	const rdma = "mellanox.com/rdma"
	tree := func(tr *pcitest.Tree) error {
		if err := tr.AddPF(pcitest.Function{Addr: "0000:86:00.0", Vendor: "15b3", Device: "101d", Class: "0x020000", Driver: "mlx5_core", NUMANode: "1", IOMMUGroup: "70"},
			pcitest.SRIOV{TotalVFs: 8, Offset: 2, Stride: 1, VFDevice: "101e"}); err != nil {
			return err
		}
		if err := tr.AddNetdev("0000:86:00.0", pcitest.Netdev{Name: "ens2f0np0", MAC: "b8:ce:f6:00:00:01", Carrier: "1", PhysPortName: "p0"}); err != nil {
			return err
		}
		for i := range 2 {
			if err := tr.AddVF("0000:86:00.0", i, pcitest.Function{Driver: "mlx5_core", IOMMUGroup: strconv.Itoa(71 + i)}); err != nil {
				return err
			}
			addr, _ := tr.VFAddr("0000:86:00.0", i)
			name := "ens2f0v" + strconv.Itoa(i)
			if err := tr.AddNetdev(addr, pcitest.Netdev{Name: name, MAC: fmt.Sprintf("b8:ce:f6:00:01:%02x", i), Carrier: "1"}); err != nil {
				return err
			}
			if err := tr.AddRDMA(addr, pcitest.RDMA{Name: "mlx5_" + strconv.Itoa(2+i), Verbs: 2 + i, MAD: 2 + i, Netdev: name}); err != nil {
				return err
			}
		}
		return nil
	}
	cfg := configOf(`{"resourceName": "rdma", "resourcePrefix": "mellanox.com", "selectors": {"devices": ["101e"], "isRdma": true}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: tree, noLinks: true, rescan: 100 * time.Millisecond})
	h.waitList(rdma, "[0000:86:00.2:Healthy[numa1] 0000:86:00.3:Healthy[numa1]]")
	if _, err := h.allocate(rdma, "0000:86:00.2"); err != nil {
		t.Fatal(err)
	}
	// The hook moved VF 0's netdev and RDMA device into the pod; VF 1's RDMA device vanished too
	// (no pod holds it).
	for _, vf := range []struct{ addr, netdev string }{{"0000:86:00.2", "ens2f0v0"}, {"0000:86:00.3", "ens2f0v1"}} {
		h.netdevIntoPod(vf.addr, vf.netdev)
		dir, err := h.tree.FuncDir(vf.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "infiniband")); err != nil {
			t.Fatal(err)
		}
	}
	h.waitList(rdma, "[0000:86:00.2:Healthy[numa1] 0000:86:00.3:Unhealthy[numa1]]")
	_, err := h.allocate(rdma, "0000:86:00.3")
	if err == nil || !strings.Contains(err.Error(), "RDMA device mlx5_3 not on the host") {
		t.Errorf("Allocate of a function whose RDMA device is gone: %v", err)
	}
	// The held one keeps its RDMA device in the CDI spec: a restarting container gets it again.
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(h.cdiDir), cdiapi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	dev := cache.GetDevice(rdma + "=0000:86:00.2")
	if dev == nil {
		t.Fatal("the held VF left the CDI spec")
	}
	var nodes []string
	for _, n := range dev.ContainerEdits.DeviceNodes {
		nodes = append(nodes, n.Path)
	}
	if want := []string{"/dev/infiniband/issm2", "/dev/infiniband/umad2", "/dev/infiniband/uverbs2"}; !slices.Equal(nodes, want) {
		t.Errorf("CDI device nodes of the held VF %v, want %v", nodes, want)
	}
}

// A cniManaged pool leaves the netdev to the CNI (sriov-cni through Multus), as with sriov-dp:
// Allocate names no CDI device for a netdev VF (the spec has no hook for it), the pod still gets
// the variables and the device-information file Multus reads, and the VF stays in its pool while
// the CNI holds its netdev in the pod. A software link the stand-in CNI moves (renamed, no alias
// of ours) stays in its pool while held, and the reconciler never touches it.
func TestCNIManagedCoexistence(t *testing.T) {
	requireNetns(t)
	const sriov = "intel.com/sriov_cni"
	link, _ := veth(t, "ndcni0", "ndpeercni0")
	cfg := configOf(`{"resourceName": "sriov_cni", "resourcePrefix": "intel.com", "cniManaged": true, "selectors": {"drivers": ["iavf"]}}`,
		`{"resourceName": "links_cni", "cniManaged": true, "selectors": {"ifNames": ["ndcni*"]}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: e810(1), rescan: 100 * time.Millisecond})
	h.waitList(sriov, "[0000:3b:01.0:Healthy[numa0]]")
	cr, err := h.allocate(sriov, "0000:3b:01.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.CdiDevices) != 0 || cr.Envs["PCIDEVICE_INTEL_COM_SRIOV_CNI"] != "0000:3b:01.0" {
		t.Errorf("Allocate = CDI %v, envs %v; want no CDI device and the sriov-dp variable", cdiNames(cr), cr.Envs)
	}
	if info, err := h.devinfo.Read(sriov, "0000:3b:01.0"); err != nil || info.Pci.PciAddress != "0000:3b:01.0" {
		t.Errorf("device-information file for Multus: %+v, %v", info, err)
	}
	if specHas(t, h.cdiDir, sriov+"=0000:3b:01.0") {
		t.Error("the CDI spec has an entry (a hook) for a VF the CNI moves")
	}
	// What sriov-cni does at ADD: the VF's netdev leaves the host, renamed in the pod.
	h.netdevIntoPod("0000:3b:01.0", "ens1f0v0")
	h.waitScans(1)
	h.waitList(sriov, "[0000:3b:01.0:Healthy[numa0]]")

	const links = "networking.k8s.io/links_cni"
	h.waitList(links, "[ndcni0:Healthy]")
	if _, err := h.allocate(links, "ndcni0"); err != nil {
		t.Fatal(err)
	}
	pod, _ := netnstest.Unshared(t)
	if err := netlink.LinkSetNsFd(link, pod.FD()); err != nil {
		t.Fatal(err)
	}
	inPod, err := pod.H.LinkByName("ndcni0")
	if err != nil {
		t.Fatal(err)
	}
	if err := pod.H.LinkSetName(inPod, "net1"); err != nil {
		t.Fatal(err)
	}
	h.waitScans(1)
	h.waitList(links, "[ndcni0:Healthy]")
	// What sriov-cni does at DEL: back to the host under its old name.
	inPod, _ = pod.H.LinkByName("net1")
	if err := pod.H.LinkSetName(inPod, "ndcni0"); err != nil {
		t.Fatal(err)
	}
	if err := pod.H.LinkSetNsFd(inPod, netnstest.Own(t).FD()); err != nil {
		t.Fatal(err)
	}
	back, err := netlink.LinkByName("ndcni0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(back); err != nil {
		t.Fatal(err)
	}
	h.waitList(links, "[ndcni0:Healthy]")
	if back.Attrs().Alias != "" {
		t.Errorf("the link came home with alias %q: something of ours touched it", back.Attrs().Alias)
	}
}
