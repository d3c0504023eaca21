package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam/ipamtest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

var (
	cniBinOnce sync.Once
	cniBinDir  string
	cniBinErr  error
)

// cniBin builds the real host-local IPAM plugin (go.mod's version) once per test binary.
func cniBin(t *testing.T) string {
	t.Helper()
	cniBinOnce.Do(func() {
		if cniBinDir, cniBinErr = os.MkdirTemp("", "daemon-cni-"); cniBinErr == nil {
			cniBinErr = ipamtest.BuildPlugins(cniBinDir)
		}
	})
	if cniBinErr != nil {
		t.Fatal(cniBinErr)
	}
	return cniBinDir
}

// An IPAM lease is released (DEL: the address is free in host-local's store again) once the kubelet
// no longer reports a pod holding its device, never while it does; a lease a reboot left behind
// (no pod holds its device) is released once the kubelet has answered.
func TestIPAMLeasesReleased(t *testing.T) {
	requireNetns(t)
	const sriov = "intel.com/sriov"
	data := t.TempDir()
	leases := t.TempDir()
	s := &netconf.Settings{Pool: sriov, CNIBinDir: cniBin(t), LeaseDir: leases,
		IPAM: json.RawMessage(fmt.Sprintf(`{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.88.0.0/24"}]]}`, data))}
	store := filepath.Join(data, ipam.NetworkName(sriov))
	held := func() int { entries, _ := filepath.Glob(filepath.Join(store, "10.*")); return len(entries) }
	// What the hooks did: one lease for a VF a pod holds, one a reboot left for a VF no pod holds.
	pod, _ := netnstest.Unshared(t)
	for _, dev := range []string{"0000:3b:01.0", "0000:3b:01.1"} {
		if _, err := ipam.Add(context.Background(), s, ipam.Attachment{Device: dev, ContainerID: "sandbox" + dev[len(dev)-1:], NetNS: pod.Path, IfName: "net1"}); err != nil {
			t.Fatal(err)
		}
	}
	if held() != 2 {
		t.Fatalf("host-local holds %d addresses, want 2", held())
	}
	cfg := configOf(`{"resourceName": "sriov", "resourcePrefix": "intel.com", "selectors": {"drivers": ["iavf"]}}`)
	h := newHarnessWith(t, harnessOpts{config: cfg, tree: e810(2), noLinks: true, podResources: true}, func(h *harness) {
		h.opts.LeaseDir = leases
		h.podres.Hold("default", "pod-a", sriov, "0000:3b:01.0")
	})
	h.waitList(sriov, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.1:Healthy[numa0]]")
	waitFor(t, func() bool { return held() == 1 })
	if _, err := os.Stat(ipam.LeasePath(leases, sriov, "0000:3b:01.1")); !os.IsNotExist(err) {
		t.Errorf("the released lease's file is still there: %v", err)
	}
	calls := h.podres.Calls()
	time.Sleep(2 * testGrace)
	waitFor(t, func() bool { return h.podres.Calls() > calls+3 })
	if held() != 1 {
		t.Fatalf("the lease of a device a pod holds was released")
	}
	h.podres.Release("default", "pod-a")
	waitFor(t, func() bool { return held() == 0 })
}
