package ipam_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam/ipamtest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// binDir holds the IPAM plugins the tests call: the real host-local of the CNI plugins (the version
// go.mod names, which the end-to-end stack builds too) and failipam.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ipam-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if err := ipamtest.BuildPlugins(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func settings(t *testing.T, ipamConf string) *netconf.Settings {
	t.Helper()
	return &netconf.Settings{Pool: "example.com/ipam", IPAM: json.RawMessage(ipamConf), CNIBinDir: binDir, LeaseDir: t.TempDir()}
}

func hostLocal(t *testing.T) (conf, dataDir string) {
	dataDir = t.TempDir()
	return fmt.Sprintf(`{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.77.0.0/24","gateway":"10.77.0.1"}]],"routes":[{"dst":"10.78.0.0/16"}]}`, dataDir), dataDir
}

// stored lists the addresses host-local holds for the pool's network.
func stored(t *testing.T, dataDir string) []string {
	t.Helper()
	ips, err := ipamtest.Held(dataDir, "example.com/ipam")
	if err != nil {
		t.Fatal(err)
	}
	return ips
}

// TestAddConfigureRelease: a real host-local gives the pod interface an address; the interface gets
// it, the result's route, the pool's route, MTU and sysctls; a restarted container (same sandbox)
// gets the same address without a new allocation; a new sandbox's ADD releases the old lease first;
// Release gives the address back.
func TestAddConfigureRelease(t *testing.T) {
	netnstest.RequireRoot(t)
	pod, _ := netnstest.Unshared(t)
	dev, _ := pod.Veth(t)
	if err := pod.H.LinkSetDown(pod.Link(t, dev)); err != nil {
		t.Fatal(err)
	}
	if err := pod.H.LinkSetName(pod.Link(t, dev), "net1"); err != nil {
		t.Fatal(err)
	}
	conf, data := hostLocal(t)
	s := settings(t, conf)
	s.MTU = 1400
	s.Routes = []netconf.Route{{Dst: "10.99.0.0/16", GW: "10.77.0.1"}}
	s.Sysctls = map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "1"}
	ctx := context.Background()

	res, err := ipam.Add(ctx, s, ipam.Attachment{Device: "0000:3b:01.0", ContainerID: "sandbox-1", NetNS: pod.Path, IfName: "net1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.77.0.2/24" {
		t.Fatalf("result IPs %v, want 10.77.0.2/24", res.IPs)
	}
	if err := ipam.Configure(pod.Path, "net1", res, s); err != nil {
		t.Fatal(err)
	}
	link := pod.Link(t, "net1")
	if link.Attrs().MTU != 1400 || !netnstest.IsUp(link) {
		t.Errorf("net1: MTU %d up %v, want 1400 and up", link.Attrs().MTU, netnstest.IsUp(link))
	}
	if got := pod.GlobalAddrs(t, "net1"); !slices.Equal(got, []string{"10.77.0.2/24"}) {
		t.Errorf("addresses %v", got)
	}
	dsts := routesVia(t, pod, "net1")
	for _, want := range []string{"10.78.0.0/16 via 10.77.0.1", "10.99.0.0/16 via 10.77.0.1"} {
		if !slices.Contains(dsts, want) {
			t.Errorf("routes %v lack %s", dsts, want)
		}
	}
	if v := readSysctl(t, pod.Path, "/proc/sys/net/ipv4/conf/net1/arp_ignore"); v != "1" {
		t.Errorf("arp_ignore = %q, want 1", v)
	}
	// A hook finishing an attach configures again: what the link has is not added twice (the
	// kernel would refuse it), what it lacks is.
	if err := pod.H.RouteDel(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: mustCIDR(t, "10.78.0.0/16"), Gw: net.ParseIP("10.77.0.1")}); err != nil {
		t.Fatal(err)
	}
	if err := ipam.Configure(pod.Path, "net1", res, s); err != nil {
		t.Fatalf("configure again: %v", err)
	}
	if got := pod.GlobalAddrs(t, "net1"); !slices.Equal(got, []string{"10.77.0.2/24"}) {
		t.Errorf("addresses after configuring again %v", got)
	}
	if got := routesVia(t, pod, "net1"); !slices.Contains(got, "10.78.0.0/16 via 10.77.0.1") {
		t.Errorf("the removed route was not added again: %v", got)
	}

	again, err := ipam.Add(ctx, s, ipam.Attachment{Device: "0000:3b:01.0", ContainerID: "sandbox-1", NetNS: pod.Path, IfName: "net1"})
	if err != nil || again.IPs[0].Address.String() != "10.77.0.2/24" {
		t.Errorf("same sandbox again: %v, %v; want the same address", again, err)
	}
	if got := stored(t, data); !slices.Equal(got, []string{"10.77.0.2"}) {
		t.Errorf("host-local holds %v, want one address", got)
	}
	next, err := ipam.Add(ctx, s, ipam.Attachment{Device: "0000:3b:01.0", ContainerID: "sandbox-2", NetNS: pod.Path, IfName: "net1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := stored(t, data); len(got) != 1 || got[0] != next.IPs[0].Address.IP.String() {
		t.Errorf("after a new sandbox host-local holds %v, want only %s", got, next.IPs[0].Address.IP)
	}
	leases, err := ipam.Leases(s.LeaseDir)
	if err != nil || len(leases) != 1 || leases[0].ContainerID != "sandbox-2" {
		t.Fatalf("leases %+v, %v", leases, err)
	}
	l, err := ipam.Release(ctx, ipam.LeasePath(s.LeaseDir, s.Pool, "0000:3b:01.0"))
	if err != nil || l == nil {
		t.Fatalf("Release = %v, %v", l, err)
	}
	if got := stored(t, data); len(got) != 0 {
		t.Errorf("after Release host-local holds %v", got)
	}
	if l, err := ipam.Release(ctx, ipam.LeasePath(s.LeaseDir, s.Pool, "0000:3b:01.0")); l != nil || err != nil {
		t.Errorf("second Release = %v, %v; want nothing to do", l, err)
	}
}

// routesVia lists the link's IPv4 routes with a destination, as "dst via gw".
func routesVia(t *testing.T, pod *netnstest.NS, link string) []string {
	t.Helper()
	routes, err := pod.H.RouteList(pod.Link(t, link), netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, r := range routes {
		if r.Dst != nil {
			dsts = append(dsts, fmt.Sprintf("%s via %s", r.Dst, r.Gw))
		}
	}
	return dsts
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readSysctl(t *testing.T, nsPath, path string) string {
	t.Helper()
	target, err := ns.GetNS(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	var v []byte
	if err := target.Do(func(ns.NetNS) error { v, err = os.ReadFile(path); return err }); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// A failing plugin's error names the pool and carries the plugin's message; what it held is
// released (DEL) and no lease is left.
func TestAddFails(t *testing.T) {
	log := filepath.Join(t.TempDir(), "calls")
	t.Setenv("FAILIPAM_LOG", log)
	s := settings(t, `{"type":"failipam"}`)
	_, err := ipam.Add(context.Background(), s, ipam.Attachment{Device: "0000:3b:01.0", ContainerID: "sandbox-1", NetNS: "/proc/self/ns/net", IfName: "net1",
		PodNamespace: "default", PodName: "web-0"})
	if err == nil || !strings.Contains(err.Error(), "pool example.com/ipam") || !strings.Contains(err.Error(), "no addresses left in range 10.9.0.0/30") {
		t.Fatalf("Add = %v, want an error naming the pool and the plugin's message", err)
	}
	calls, _ := os.ReadFile(log)
	const args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=sandbox-1"
	if got := strings.Fields(string(calls)); !slices.Equal(got, []string{"ADD", "sandbox-1", "net1", args, "DEL", "sandbox-1", "net1", args}) {
		t.Errorf("plugin calls %q, want ADD then DEL, with the pod's CNI_ARGS", calls)
	}
	if leases, err := ipam.Leases(s.LeaseDir); err != nil || len(leases) != 0 {
		t.Errorf("leases left: %v, %v", leases, err)
	}
	s.IPAM = json.RawMessage(`{"type":"no-such-plugin"}`)
	if _, err := ipam.Add(context.Background(), s, ipam.Attachment{Device: "0000:3b:01.0", ContainerID: "sandbox-1", NetNS: "/proc/self/ns/net", IfName: "net1"}); err == nil || !strings.Contains(err.Error(), "no-such-plugin") {
		t.Errorf("missing plugin: %v", err)
	}
	// nothing was leased, so nothing is left for the daemon to release (it could not: no plugin)
	if leases, err := ipam.Leases(s.LeaseDir); err != nil || len(leases) != 0 {
		t.Errorf("leases left by a missing plugin: %v, %v", leases, err)
	}
}
