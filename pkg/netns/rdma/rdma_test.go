package rdma

import (
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

func hasRDMA() bool {
	_, err := os.Stat("/sys/class/infiniband")
	return err == nil
}

// TestNetlinkWithoutRDMA: on a kernel without the RDMA subsystem every call fails, saying so, and
// Move leaves no thread in the device's namespace.
func TestNetlinkWithoutRDMA(t *testing.T) {
	netnstest.RequireRoot(t)
	if hasRDMA() {
		t.Skip("this kernel has RDMA")
	}
	ns := netnstest.New(t)
	h, err := vnetns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	own, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	d := Device{Index: 3, Name: "mlx5_2"}
	for name, err := range map[string]error{
		"List":   func() error { _, err := (Netlink{}).List(h); return err }(),
		"Move":   (Netlink{}).Move(h, d, own),
		"Rename": (Netlink{}).Rename(h, d, "mlx5_3"),
	} {
		if !errors.Is(err, unix.EPROTONOSUPPORT) || !strings.Contains(err.Error(), "no RDMA subsystem") {
			t.Errorf("%s = %v, want EPROTONOSUPPORT and a hint", name, err)
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cur, err := vnetns.Get(); err != nil || !cur.Equal(own) {
		t.Errorf("after Move this thread is in %v (%v), want the process's namespace", cur, err)
	}
}

// TestInNamespace: f runs in the namespace asked for, and the thread comes back.
func TestInNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	h, err := vnetns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var inside bool
	if err := inNamespace(h, func() error {
		cur, err := vnetns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.Equal(h)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !inside {
		t.Error("f did not run in the namespace")
	}
	want := errors.New("f failed")
	if err := inNamespace(h, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("inNamespace = %v, want f's error", err)
	}
}

// TestNetlinkRoundTrip moves a real RDMA device into a new namespace and back, and renames it there
// and back. It needs a kernel in exclusive RDMA netns mode and a device no one uses:
// NETDEVICE_RDMA_TEST_DEVICE=mlx5_2. It never ran on the machine this was written on (no RDMA).
func TestNetlinkRoundTrip(t *testing.T) {
	name := os.Getenv("NETDEVICE_RDMA_TEST_DEVICE")
	if name == "" {
		t.Skip("set NETDEVICE_RDMA_TEST_DEVICE to a spare RDMA device (exclusive netns mode)")
	}
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	pod, err := vnetns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()
	host, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	var nl Netlink
	find := func(in vnetns.NsHandle, name string) (Device, bool) {
		devs, err := nl.List(in)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(devs, func(d Device) bool { return d.Name == name })
		if i < 0 {
			return Device{}, false
		}
		return devs[i], true
	}
	d, ok := find(host, name)
	if !ok {
		t.Fatalf("no RDMA device %s on the host", name)
	}
	if err := nl.Move(host, d, pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nl.Move(pod, d, host) })
	if _, ok := find(host, name); ok {
		t.Fatalf("%s is still visible on the host: is the RDMA netns mode shared?", name)
	}
	got, ok := find(pod, name)
	if !ok || got.Index != d.Index || got.NodeGUID != d.NodeGUID {
		t.Fatalf("in the pod: %+v, %v; want %+v", got, ok, d)
	}
	if err := nl.Rename(pod, d, name+"t"); err != nil {
		t.Fatal(err)
	}
	if err := nl.Rename(pod, Device{Index: d.Index, Name: name + "t"}, name); err != nil {
		t.Fatal(err)
	}
	if err := nl.Move(pod, d, host); err != nil {
		t.Fatal(err)
	}
	if _, ok := find(host, name); !ok {
		t.Fatalf("%s did not come back", name)
	}
}
