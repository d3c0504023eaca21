package netns

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

func ifb(name string) *netlink.Ifb { return &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: name}} }

// PCIFixture is a sysfs root where the PCI function addr lists the given (real, test) links as its
// netdevs, the way bus/pci/devices/<addr>/net/ lists a NIC's.
func pciFixture(t *testing.T, addr string, links ...string) string {
	t.Helper()
	root := t.TempDir()
	real := filepath.Join(root, "devices", "pci0000:3a", "0000:3a:00.0", addr)
	for _, l := range links {
		if err := os.MkdirAll(filepath.Join(real, "net", l), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	bus := filepath.Join(root, "bus", "pci", "devices")
	if err := os.MkdirAll(bus, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "..", "..", "devices", "pci0000:3a", "0000:3a:00.0", addr), filepath.Join(bus, addr)); err != nil {
		t.Fatal(err)
	}
	return root
}

// linkState is what a test checks of a link: where it is, its name, alias, addresses, MTU, up.
type linkState struct {
	alias string
	addrs []string
	mtu   int
	up    bool
}

func stateOf(t *testing.T, ns *netnstest.NS, name string) linkState {
	t.Helper()
	l := ns.Link(t, name)
	return linkState{alias: l.Attrs().Alias, addrs: ns.GlobalAddrs(t, name), mtu: l.Attrs().MTU, up: netnstest.IsUp(l)}
}

func (s linkState) equal(o linkState) bool {
	return s.alias == o.alias && slices.Equal(s.addrs, o.addrs) && s.mtu == o.mtu && s.up == o.up
}

// prepare gives the link the addresses and MTU the tests expect to survive the trip.
func prepare(t *testing.T, ns *netnstest.NS, name string, addrs ...string) linkState {
	t.Helper()
	if err := ns.H.LinkSetMTU(ns.Link(t, name), 1400); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ns.AddAddr(t, name, a)
	}
	return stateOf(t, ns, name)
}

func TestAttachDetach(t *testing.T) {
	netnstest.RequireRoot(t)
	const pci = "0000:3b:01.0"
	tests := []struct {
		name      string
		podIfName string
		// occupy is a name a link of the pod already has (a clash the move has to work around);
		// "host" means the device's own host name.
		occupy     string
		pciNetdevs int // 0: a software link by name; n: a PCI function with n netdevs
		wantPod    []string
	}{
		{name: "software link keeps its host name", wantPod: []string{"host"}},
		{name: "software link renamed net1", podIfName: "net1", wantPod: []string{"net1"}},
		{name: "net1 taken in the pod: net2", podIfName: "net1", occupy: "net1", wantPod: []string{"net2"}},
		{name: "host name taken in the pod: travels under a temporary name", podIfName: "net1", occupy: "host", wantPod: []string{"net1"}},
		{name: "PCI function by address", podIfName: "net1", pciNetdevs: 1, wantPod: []string{"net1"}},
		{name: "PCI function with two netdevs: net1 and net2", podIfName: "net1", pciNetdevs: 2, wantPod: []string{"net1", "net2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			var (
				devs   []string
				target Target
				opts   = Options{PodIfName: tt.podIfName, HostNS: host.Path, LockDir: t.TempDir()}
			)
			if tt.pciNetdevs == 0 {
				dev, _ := host.Veth(t)
				devs = []string{dev}
				target = Target{HostName: dev}
			} else {
				for range tt.pciNetdevs {
					dev, _ := host.Veth(t)
					devs = append(devs, dev)
				}
				slices.Sort(devs) // the order sysfs lists them in
				opts.SysfsRoot = pciFixture(t, pci, devs...)
				target = Target{PCIAddress: pci}
			}
			before := map[string]linkState{}
			for i, dev := range devs {
				before[dev] = prepare(t, host, dev, "10.77."+string(rune('1'+i))+".1/24", "fd00:77:"+string(rune('1'+i))+"::1/64")
			}
			if tt.occupy != "" {
				name := tt.occupy
				if name == "host" {
					name = devs[0]
				}
				if err := pod.H.LinkAdd(ifb(name)); err != nil {
					t.Fatal(err)
				}
			}
			podBefore := pod.LinkNames(t)
			podNames := slices.Clone(tt.wantPod)
			for i, n := range podNames {
				if n == "host" {
					podNames[i] = devs[i]
				}
			}

			for round := range 2 { // attach, detach, and once more: a container restart
				res, err := Attach(pod.Path, target, opts)
				if err != nil {
					t.Fatalf("round %d: Attach: %v", round, err)
				}
				if len(res.Moved) != len(devs) || res.Already {
					t.Errorf("round %d: Attach result %+v, want %d links moved", round, res, len(devs))
				}
				for i, dev := range devs {
					if host.Has(dev) {
						t.Errorf("round %d: %s still in the host namespace", round, dev)
					}
					got := stateOf(t, pod, podNames[i])
					want := before[dev]
					want.alias, want.up = Alias(dev, target.PCIAddress), true
					if !got.equal(want) {
						t.Errorf("round %d: in the pod %s is %+v, want %+v", round, podNames[i], got, want)
					}
				}
				res, err = Attach(pod.Path, target, opts)
				if err != nil || !res.Already || len(res.Moved) != 0 {
					t.Errorf("round %d: second Attach = %+v, %v; want Already", round, res, err)
				}

				res, err = Detach(pod.Path, target, opts)
				if err != nil {
					t.Fatalf("round %d: Detach: %v", round, err)
				}
				if len(res.Moved) != len(devs) {
					t.Errorf("round %d: Detach result %+v, want %d links moved", round, res, len(devs))
				}
				for _, dev := range devs {
					if got := stateOf(t, host, dev); !got.equal(before[dev]) {
						t.Errorf("round %d: back home %s is %+v, want %+v", round, dev, got, before[dev])
					}
				}
				if got := pod.LinkNames(t); !slices.Equal(got, podBefore) {
					t.Errorf("round %d: pod links after Detach = %v, want %v", round, got, podBefore)
				}
				res, err = Detach(pod.Path, target, opts)
				if err != nil || !res.Already {
					t.Errorf("round %d: second Detach = %+v, %v; want Already", round, res, err)
				}
			}
		})
	}
}

// TestAttachRollsBack makes the last step fail: the pod namespace refuses IPv6 addresses, so
// re-adding the device's IPv6 address fails after the move. Every link must end as it began.
func TestAttachRollsBack(t *testing.T) {
	netnstest.RequireRoot(t)
	const pci = "0000:3b:01.0"
	host, pod := netnstest.New(t), netnstest.New(t)
	pod.Exec(t, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1")

	// Two netdevs of one function: the first moves fine (IPv4 only), the second fails (IPv6), so
	// the first must come back too.
	first, _ := host.Veth(t)
	second, _ := host.Veth(t)
	if second < first { // sysfs lists, and Attach moves, in name order
		first, second = second, first
	}
	before := map[string]linkState{
		first:  prepare(t, host, first, "10.78.1.1/24"),
		second: prepare(t, host, second, "10.78.2.1/24", "fd00:78::1/64"),
	}
	if err := host.H.LinkSetAlias(host.Link(t, first), "uplink"); err != nil { // a foreign alias is restored
		t.Fatal(err)
	}
	before[first] = stateOf(t, host, first)
	podBefore := pod.LinkNames(t)

	opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir(), SysfsRoot: pciFixture(t, pci, first, second)}
	_, err := Attach(pod.Path, Target{PCIAddress: pci}, opts)
	if err == nil {
		t.Fatal("Attach succeeded into a namespace without IPv6")
	}
	if !strings.Contains(err.Error(), pci) || !strings.Contains(err.Error(), "fd00:78::1") {
		t.Errorf("error %q does not name the device and the address", err)
	}
	for dev, want := range before {
		if got := stateOf(t, host, dev); !got.equal(want) {
			t.Errorf("after rollback %s is %+v, want %+v", dev, got, want)
		}
	}
	if got := pod.LinkNames(t); !slices.Equal(got, podBefore) {
		t.Errorf("pod links after rollback = %v, want %v", got, podBefore)
	}
}

func TestAttachRefuses(t *testing.T) {
	netnstest.RequireRoot(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, host *netnstest.NS, dev string)
		wantErr string
	}{
		{
			name: "IPv4 default route",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				host.AddAddr(t, dev, "10.79.0.2/24")
				host.Exec(t, "ip", "route", "add", "default", "via", "10.79.0.1", "dev", dev)
			},
			wantErr: "default route",
		},
		{
			name: "IPv6 default route",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				host.AddAddr(t, dev, "fd00:79::2/64")
				host.Exec(t, "ip", "-6", "route", "add", "default", "via", "fd00:79::1", "dev", dev)
			},
			wantErr: "default route",
		},
		{
			name:    "unknown device",
			setup:   func(t *testing.T, host *netnstest.NS, dev string) {},
			wantErr: "no link",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			dev, _ := host.Veth(t)
			tt.setup(t, host, dev)
			before := stateOf(t, host, dev)
			target := Target{HostName: dev}
			if tt.wantErr == "no link" {
				target = Target{HostName: "absent0"}
			}
			_, err := Attach(pod.Path, target, Options{HostNS: host.Path, LockDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Attach = %v, want error containing %q", err, tt.wantErr)
			}
			if got := stateOf(t, host, dev); !got.equal(before) {
				t.Errorf("%s changed: %+v, was %+v", dev, got, before)
			}
		})
	}
	t.Run("pod namespace is the host's", func(t *testing.T) {
		host := netnstest.New(t)
		dev, _ := host.Veth(t)
		_, err := Attach(host.Path, Target{HostName: dev}, Options{HostNS: host.Path, LockDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "host's own") {
			t.Errorf("Attach into the host namespace = %v", err)
		}
	})
}

func TestDetachNamespaceGone(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t)
	pod, kill := netnstest.Unshared(t)
	dev, _ := host.Veth(t)
	opts := Options{HostNS: host.Path, LockDir: t.TempDir()}
	if _, err := Attach(pod.Path, Target{HostName: dev}, opts); err != nil {
		t.Fatal(err)
	}
	kill()
	res, err := Detach(pod.Path, Target{HostName: dev}, opts)
	if err != nil || !res.NamespaceGone {
		t.Errorf("Detach after the pod died = %+v, %v; want NamespaceGone", res, err)
	}
	_, err = Attach(pod.Path, Target{HostName: dev}, opts)
	if !errors.Is(err, ErrNamespaceGone) {
		t.Errorf("Attach into a dead namespace = %v, want ErrNamespaceGone", err)
	}
}
