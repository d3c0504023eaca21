package rdmafake

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma"
)

// The fake behaves as the kernel does where pkg/netns relies on it: a device is visible in its own
// namespace only, moves only from there, keeps its index, names are unique, a failed call changes
// nothing, an IPoIB-like netdev is re-created fresh on the host at every move, and the state in a
// file is what the next process sees.
func TestFake(t *testing.T) {
	netnstest.RequireRoot(t)
	hostNS, podNS := netnstest.New(t), netnstest.New(t)
	open := func(ns *netnstest.NS) vnetns.NsHandle {
		h, err := vnetns.GetFromPath(ns.Path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	host, pod := open(hostNS), open(podNS)
	hostID, _ := ID(host)
	podID, _ := ID(pod)
	if id, err := IDOf(hostNS.Path); err != nil || id != hostID {
		t.Fatalf("IDOf = %q, %v; want %q", id, err, hostID)
	}
	ipoib := hostNS.Ifb(t)
	if err := hostNS.H.LinkSetUp(hostNS.Link(t, ipoib)); err != nil {
		t.Fatal(err)
	}
	before := hostNS.Link(t, ipoib).Attrs().Index

	f, err := Create(filepath.Join(t.TempDir(), "rdma.json"), State{})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Label(hostID, "host"))
	must(f.Label(podID, "pod"))
	roce := rdma.Device{Index: 3, Name: "mlx5_2", NodeGUID: "aa"}
	ib := rdma.Device{Index: 4, Name: "mlx5_3", NodeGUID: "bb"}
	must(f.Add(roce, hostID, nil))
	must(f.Add(ib, hostID, &ULP{Name: ipoib, InitNS: hostNS.Path}))
	if err := f.Add(rdma.Device{Index: 5, Name: "mlx5_2"}, podID, nil); err == nil {
		t.Error("Add took a name twice")
	}

	if err := f.Move(pod, roce, host); !errors.Is(err, unix.ENODEV) {
		t.Errorf("a move from where the device is not = %v, want ENODEV", err)
	}
	must(f.Move(host, roce, pod))
	must(f.Move(host, ib, pod))
	if after := hostNS.Link(t, ipoib); after.Attrs().Index == before || netnstest.IsUp(after) {
		t.Errorf("the IPoIB netdev was not re-created fresh: index %d (was %d), up %v", after.Attrs().Index, before, netnstest.IsUp(after))
	}
	again := Open(f.path) // another process
	devs, err := again.List(pod)
	if err != nil || len(devs) != 2 {
		t.Fatalf("List in the pod = %v, %v", devs, err)
	}
	if devs, _ := again.List(host); len(devs) != 0 {
		t.Errorf("List on the host = %v, want none (exclusive mode)", devs)
	}
	if err := again.Rename(pod, roce, "mlx5_3"); !errors.Is(err, unix.EEXIST) {
		t.Errorf("a rename to a taken name = %v, want EEXIST", err)
	}
	must(again.FailCalls(len(again.Calls()) + 1))
	if err := again.Move(pod, roce, host); err == nil {
		t.Error("the call told to fail did not")
	}
	if ns, _, _ := again.Where(3); ns != "pod" {
		t.Errorf("a failed move moved the device to %s", ns)
	}
	must(again.KernelReturn(pod, hostID))
	if ns, name, _ := again.Where(3); ns != "host" || name != "mlx5_2" {
		t.Errorf("after the namespace's end mlx5_2 is in %s as %s", ns, name)
	}
	want := []string{"move mlx5_2 pod->host", "move mlx5_2 host->pod", "move mlx5_3 host->pod", "list pod", "list host",
		"rename mlx5_2 pod mlx5_3", "move mlx5_2 pod->host"}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}
