package daemon

import (
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// A daemon restarted (upgrade, OOM kill) while a link is inside a pod keeps it in its pool and in
// the CDI spec, so the pod's containers can still restart: the link by name is not on the host, and
// the VF chosen by interface name shows no netdev in sysfs.
func TestRestartKeepsDevicesInPods(t *testing.T) {
	requireNetns(t)
	const byName = "intel.com/vf0_by_name"
	link, _ := veth(t, "ndvr0", "ndpeerr0")
	cfg := configOf(softwarePool("netdevice", "ndvr*"),
		`{"resourceName": "vf0_by_name", "resourcePrefix": "intel.com", "selectors": {"ifNames": ["ens1f0v0"]}}`)
	h := newHarness(t, harnessOpts{config: cfg, tree: e810(1), state: true})
	h.waitList(netdevice, "[ndvr0:Healthy]")
	h.waitList(byName, "[0000:3b:01.0:Healthy[numa0]]")
	for res, id := range map[string]string{netdevice: "ndvr0", byName: "0000:3b:01.0"} {
		if _, err := h.allocate(res, id); err != nil {
			t.Fatal(err)
		}
	}

	// The hooks moved both into the pod. (The daemon handles the move's link event within a
	// millisecond: count the scans from before it.)
	pod, _ := netnstest.Unshared(t)
	scans := h.obs.scans.Load()
	if err := netlink.LinkSetNsFd(link, pod.FD()); err != nil {
		t.Fatal(err)
	}
	h.netdevIntoPod("0000:3b:01.0", "ens1f0v0")
	waitFor(t, func() bool { return h.obs.scans.Load() > scans })
	h.waitList(netdevice, "[ndvr0:Healthy]")

	h.stop()
	h.start()
	// The new daemon never saw Allocate, but the state file kept the allocations: the link away is
	// in use, healthy; the VF is still a PCI function, healthy; both keep their CDI devices, and the
	// VF its device-information file.
	h.waitList(netdevice, "[ndvr0:Healthy]")
	h.waitList(byName, "[0000:3b:01.0:Healthy[numa0]]")
	h.resolveCDI([]string{netdevice + "=ndvr0", byName + "=0000:3b:01.0"})
	if info, err := h.devinfo.Read(byName, "0000:3b:01.0"); err != nil || info.Pci.PciAddress != "0000:3b:01.0" {
		t.Errorf("device-information file after the restart: %+v, %v", info, err)
	}

	// The pod ends: the link comes home and is free again.
	inPod, err := pod.H.LinkByName("ndvr0")
	if err != nil {
		t.Fatal(err)
	}
	if err := pod.H.LinkSetNsFd(inPod, netnstest.Own(t).FD()); err != nil {
		t.Fatal(err)
	}
	back, err := netlink.LinkByName("ndvr0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(back); err != nil {
		t.Fatal(err)
	}
	h.waitList(netdevice, "[ndvr0:Healthy]")
}

// A state file that is not ours (garbage, another version) is ignored: the daemon starts from the
// scan alone.
func TestCorruptStateIgnored(t *testing.T) {
	requireNetns(t)
	veth(t, "ndvs0", "ndpeers0")
	h := newHarness(t, harnessOpts{config: configOf(softwarePool("netdevice", "ndvs*")), state: true})
	h.waitList(netdevice, "[ndvs0:Healthy]")
	h.stop()
	if err := os.WriteFile(h.opts.StateFile, []byte("not a gob"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitList(netdevice, "[ndvs0:Healthy]")
	// The next change writes a good state again.
	veth(t, "ndvs1", "ndpeers1")
	h.waitList(netdevice, "[ndvs0:Healthy ndvs1:Healthy]")
	waitFor(t, func() bool {
		data, err := os.ReadFile(h.opts.StateFile)
		return err == nil && string(data) != "not a gob"
	})
}
