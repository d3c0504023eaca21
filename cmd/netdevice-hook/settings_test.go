package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam/ipamtest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

const ipamPool = "example.com/ipam"

// ipamSetup is one test's IPAM: a real host-local with its own store, its lease folder, and the
// --netconf argument of a pool that gives pods 10.77.0.0/24 addresses.
type ipamSetup struct {
	store, leases string
	settings      netconf.Settings
}

func newIPAM(t testing.TB, ipamType string) *ipamSetup {
	t.Helper()
	s := &ipamSetup{store: t.TempDir(), leases: t.TempDir()}
	conf := fmt.Sprintf(`{"type":%q,"dataDir":%q,"ranges":[[{"subnet":"10.77.0.0/24","gateway":"10.77.0.1"}]],"routes":[{"dst":"10.78.0.0/16"}]}`, ipamType, s.store)
	s.settings = netconf.Settings{Pool: ipamPool, IPAM: json.RawMessage(conf), CNIBinDir: cniBinDir, LeaseDir: s.leases,
		MTU: 1300, DropHostAddresses: true, Routes: []netconf.Route{{Dst: "10.99.0.0/16", GW: "10.77.0.1"}}}
	return s
}

func (s *ipamSetup) arg(t testing.TB) string {
	t.Helper()
	arg, err := s.settings.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return arg
}

// held lists the addresses host-local holds for the pool.
func (s *ipamSetup) held(t *testing.T) []string {
	t.Helper()
	ips, err := ipamtest.Held(s.store, ipamPool)
	if err != nil {
		t.Fatal(err)
	}
	return ips
}

// sandboxBundle is a bundle as containerd's CRI plugin writes it for a pod's app container: the
// sandbox's network namespace and its ID in an annotation.
func sandboxBundle(t testing.TB, nsPath, sandbox string) string {
	t.Helper()
	return annotatedBundle(t, nsPath, map[string]string{"io.kubernetes.cri.sandbox-id": sandbox,
		"io.kubernetes.cri.sandbox-namespace": "default", "io.kubernetes.cri.sandbox-name": "pod-" + sandbox})
}

// annotatedBundle is a bundle joining the network namespace at nsPath, with the annotations.
func annotatedBundle(t testing.TB, nsPath string, annotations map[string]string) string {
	t.Helper()
	return writeBundle(t, specs.Spec{Version: specs.Version, Annotations: annotations,
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: nsPath}}}})
}

func routesOf(t *testing.T, ns *netnstest.NS, link string) []string {
	t.Helper()
	routes, err := ns.H.RouteList(ns.Link(t, link), netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		if r.Dst != nil && r.Gw != nil {
			out = append(out, fmt.Sprintf("%s via %s", r.Dst, r.Gw))
		}
	}
	slices.Sort(out)
	return out
}

// TestHookIPAM: attach gives the interface its pool's addresses from a real host-local, its MTU and
// routes, without the host's addresses; the same sandbox gets the same address again (attach
// repeated, container restarted), another sandbox another; detach gives the host its link back as
// it was and keeps the lease (the daemon releases it).
func TestHookIPAM(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod1, pod2 := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	ip := newIPAM(t, "host-local")
	dev1, before1 := device(t, host, 1)
	dev2, _ := device(t, host, 2)
	b1, b2 := sandboxBundle(t, pod1.Path, "sandbox-1"), sandboxBundle(t, pod2.Path, "sandbox-2")
	args := func(verb, dev string) []string {
		return []string{verb, "--host-ifname", dev, "--pod-ifname", "net1", "--netconf", ip.arg(t)}
	}
	wantInPod := netnstest.LinkState{Alias: netns.Alias(dev1, ""), Addrs: []string{"10.77.0.2/24"}, MTU: 1300, Up: true}
	wantRoutes := []string{"10.78.0.0/16 via 10.77.0.1", "10.99.0.0/16 via 10.77.0.1"}

	for round := range 2 { // the second round is the container restarted
		for try := range 2 { // a repeated attach changes nothing
			h.mustRun(t, state(t, specs.StateCreating, 1, b1), args("attach", dev1)...)
			if got := pod1.State(t, "net1"); !got.Equal(wantInPod) {
				t.Errorf("round %d attach %d: net1 is %+v, want %+v", round, try, got, wantInPod)
			}
			if got := routesOf(t, pod1, "net1"); !slices.Equal(got, wantRoutes) {
				t.Errorf("round %d attach %d: routes %v, want %v", round, try, got, wantRoutes)
			}
		}
		if got := ip.held(t); !slices.Equal(got, []string{"10.77.0.2"}) {
			t.Errorf("round %d: host-local holds %v, want 10.77.0.2 alone", round, got)
		}
		h.mustRun(t, state(t, specs.StateStopped, 0, b1), args("detach", dev1)...)
		if got := host.State(t, dev1); !got.Equal(before1) {
			t.Errorf("round %d: %s home is %+v, want %+v", round, dev1, got, before1)
		}
		l, err := ipam.ReadLease(ipam.LeasePath(ip.leases, ipamPool, dev1))
		if err != nil || l.ContainerID != "sandbox-1" || l.IfName != "net1" {
			t.Fatalf("round %d: lease after detach %+v, %v; want sandbox-1's, kept", round, l, err)
		}
	}

	h.mustRun(t, state(t, specs.StateCreating, 1, b2), args("attach", dev2)...)
	if got := pod2.GlobalAddrs(t, "net1"); !slices.Equal(got, []string{"10.77.0.3/24"}) {
		t.Errorf("the second sandbox's net1 has %v, want 10.77.0.3/24", got)
	}
	// A new sandbox of the pod (re-created) for the first device: its old lease is released first.
	b3 := sandboxBundle(t, pod1.Path, "sandbox-3")
	h.mustRun(t, state(t, specs.StateCreating, 1, b3), args("attach", dev1)...)
	if got := ip.held(t); len(got) != 2 || slices.Contains(got, "10.77.0.2") {
		t.Errorf("host-local holds %v, want two addresses, not sandbox-1's 10.77.0.2", got)
	}
	if l, err := ipam.ReadLease(ipam.LeasePath(ip.leases, ipamPool, dev1)); err != nil || l.ContainerID != "sandbox-3" {
		t.Errorf("lease of %s %+v, %v; want sandbox-3's", dev1, l, err)
	}
}

// TestHookCarriesHostAddressesToo: a pool that keeps the host's addresses (carryHostAddresses)
// gives the pod both them and the IPAM's.
func TestHookCarriesHostAddressesToo(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	ip := newIPAM(t, "host-local")
	ip.settings.DropHostAddresses = false
	dev, before := device(t, host, 1)
	h.mustRun(t, state(t, specs.StateCreating, 1, sandboxBundle(t, pod.Path, "sb")), "attach", "--host-ifname", dev, "--netconf", ip.arg(t))
	got := pod.GlobalAddrs(t, dev)
	for _, want := range append([]string{"10.77.0.2/24"}, before.Addrs...) {
		if !slices.Contains(got, want) {
			t.Errorf("%s in the pod has %v, lacks %s", dev, got, want)
		}
	}
}

// TestHookSettingsWithoutIPAM: MTU, routes and sysctls alone; no lease is taken.
func TestHookSettingsWithoutIPAM(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	dev, before := device(t, host, 1)
	s := netconf.Settings{Pool: "example.com/mtu", MTU: 1280, Routes: []netconf.Route{{Dst: "10.99.0.0/16", GW: "198.18.1.254"}},
		Sysctls: map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "2"}}
	arg, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b := bundle(t, pod.Path, true) // a plain bundle: no sandbox annotation, none needed
	h.mustRun(t, state(t, specs.StateCreating, 1, b), "attach", "--host-ifname", dev, "--pod-ifname", "net1", "--netconf", arg)
	want := before
	want.Alias, want.MTU, want.Up = netns.Alias(dev, ""), 1280, true
	if got := pod.State(t, "net1"); !got.Equal(want) {
		t.Errorf("net1 is %+v, want %+v", got, want)
	}
	if got := routesOf(t, pod, "net1"); !slices.Equal(got, []string{"10.99.0.0/16 via 198.18.1.254"}) {
		t.Errorf("routes %v", got)
	}
	v, err := exec.Command("ip", "netns", "exec", pod.Name, "cat", "/proc/sys/net/ipv4/conf/net1/arp_ignore").CombinedOutput()
	if err != nil || strings.TrimSpace(string(v)) != "2" {
		t.Errorf("arp_ignore in the pod = %q, %v; want 2", v, err)
	}
	h.mustRun(t, state(t, specs.StateStopped, 0, b), "detach", "--host-ifname", dev, "--pod-ifname", "net1", "--netconf", arg)
	if got := host.State(t, dev); !got.Equal(before) {
		t.Errorf("%s home is %+v, want %+v", dev, got, before)
	}
}

// TestHookSettingsFailures: what cannot be applied fails the attach with one line naming the pool
// and what failed, and the device is home as it was; what the IPAM plugin held is released.
func TestHookSettingsFailures(t *testing.T) {
	netnstest.RequireRoot(t)
	cases := []struct {
		name   string
		change func(s *ipamSetup)
		bundle func(t *testing.T, nsPath string) string
		want   []string
		lease  bool // the lease stays (the pod holds the device; its next container reuses it)
	}{
		{
			name:   "the IPAM plugin fails",
			change: func(s *ipamSetup) { s.settings.IPAM = json.RawMessage(`{"type":"failipam"}`) },
			want:   []string{"pool " + ipamPool, "IPAM plugin failipam ADD", "no addresses left in range 10.9.0.0/30"},
		},
		{
			name:   "no such IPAM plugin",
			change: func(s *ipamSetup) { s.settings.IPAM = json.RawMessage(`{"type":"whereabouts"}`) },
			want:   []string{"pool " + ipamPool, "IPAM plugin whereabouts", "failed to find plugin"},
		},
		{
			name:   "a route the pod cannot take",
			change: func(s *ipamSetup) { s.settings.Routes = []netconf.Route{{Dst: "10.99.0.0/16", GW: "10.55.0.1"}} },
			want:   []string{"pool " + ipamPool, "route 10.99.0.0/16 via 10.55.0.1 dev net1"},
			lease:  true,
		},
		{
			name:   "a sysctl the kernel does not have",
			change: func(s *ipamSetup) { s.settings.Sysctls = map[string]string{"net.ipv4.conf.IFNAME.no_such_knob": "1"} },
			want:   []string{"pool " + ipamPool, "sysctl net.ipv4.conf.IFNAME.no_such_knob=1 on net1"},
			lease:  true,
		},
		{
			name:   "a sandbox ID the CNI protocol refuses",
			change: func(*ipamSetup) {},
			bundle: func(t *testing.T, nsPath string) string { return sandboxBundle(t, nsPath, "../etc") },
			want:   []string{`annotation io.kubernetes.cri.sandbox-id "../etc" is not a container ID`},
		},
		{
			name:   "a pod name that would break CNI_ARGS",
			change: func(*ipamSetup) {},
			bundle: func(t *testing.T, nsPath string) string {
				return annotatedBundle(t, nsPath, map[string]string{"io.kubernetes.cri.sandbox-id": "sb", "io.kubernetes.pod.name": "x;K8S_POD_NAME=y"})
			},
			want: []string{`annotation io.kubernetes.pod.name "x;K8S_POD_NAME=y" is not a Kubernetes name or UID`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("FAILIPAM_LOG", filepath.Join(t.TempDir(), "calls"))
			host, pod := netnstest.New(t), netnstest.New(t)
			h := hook{host: host, lockDir: t.TempDir()}
			ip := newIPAM(t, "host-local")
			c.change(ip)
			dev, before := device(t, host, 1)
			b := sandboxBundle(t, pod.Path, "sandbox-1")
			if c.bundle != nil {
				b = c.bundle(t, pod.Path)
			}
			o := h.run(t, state(t, specs.StateCreating, 1, b), "attach", "--host-ifname", dev, "--pod-ifname", "net1", "--netconf", ip.arg(t))
			if o.code != 1 || strings.Count(o.stderr, "\n") != 1 {
				t.Fatalf("attach: exit %d, stderr %q; want 1 and one line", o.code, o.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(o.stderr, w) {
					t.Errorf("stderr %q lacks %q", o.stderr, w)
				}
			}
			if got := host.State(t, dev); !got.Equal(before) {
				t.Errorf("%s is %+v after the failure, want %+v", dev, got, before)
			}
			if got := pod.LinkNames(t); slices.ContainsFunc(got, func(n string) bool { return n != "lo" }) {
				t.Errorf("the pod still has %v", got)
			}
			leases, err := ipam.Leases(ip.leases)
			if err != nil {
				t.Fatal(err)
			}
			if c.lease != (len(leases) == 1) || len(leases) > 1 {
				t.Errorf("leases %+v, want kept: %v", leases, c.lease)
			}
			if !c.lease && len(ip.held(t)) > 0 {
				t.Errorf("host-local still holds %v", ip.held(t))
			}
			if c.name == "the IPAM plugin fails" {
				calls, _ := os.ReadFile(os.Getenv("FAILIPAM_LOG"))
				const args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-sandbox-1;K8S_POD_INFRA_CONTAINER_ID=sandbox-1"
				if got := strings.Fields(string(calls)); len(got) != 8 || got[0] != "ADD" || got[3] != args || got[4] != "DEL" || got[7] != args {
					t.Errorf("plugin calls %q, want ADD and DEL with CNI_ARGS %s", calls, args)
				}
			}
		})
	}
}

// TestHookRefusesBadNetconf: a --netconf the hook cannot read fails before anything moves.
func TestHookRefusesBadNetconf(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	dev, before := device(t, host, 1)
	b := bundle(t, pod.Path, true)
	for arg, want := range map[string]string{
		`{"pool":"p","mtu":99999}`:                "--netconf: interface settings: mtu 99999",
		`{"pool":"p","unknown":1}`:                `unknown field "unknown"`,
		`{"pool":"p","ipam":{"type":"../x"}}`:     `ipam type "../x"`,
		`{"pool":"p","ipam":{"type":"dhcp"}}`:     "IPAM needs cniBinDir and leaseDir",
		`{"pool":"p"} {}`:                         "trailing data",
		`{"pool":"p","sysctls":{"kernel.x":"1"}}`: `sysctl "kernel.x"`,
	} {
		o := h.run(t, state(t, specs.StateCreating, 1, b), "attach", "--host-ifname", dev, "--netconf", arg)
		if o.code != 1 || !strings.Contains(o.stderr, want) {
			t.Errorf("--netconf %s: exit %d, stderr %q; want %q", arg, o.code, o.stderr, want)
		}
		if got := host.State(t, dev); !got.Equal(before) {
			t.Fatalf("--netconf %s: %s is %+v, want %+v", arg, dev, got, before)
		}
	}
}
