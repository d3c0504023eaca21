package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// prepare gives the link the addresses and MTU the tests expect to survive the trip.
func prepare(t *testing.T, ns *netnstest.NS, name string, addrs ...string) netnstest.LinkState {
	t.Helper()
	if err := ns.H.LinkSetMTU(ns.Link(t, name), 1400); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ns.AddAddr(t, name, a)
	}
	return ns.State(t, name)
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
			before := map[string]netnstest.LinkState{}
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
					got := pod.State(t, podNames[i])
					want := before[dev]
					want.Alias, want.Up = Alias(dev, target.PCIAddress), true
					if !got.Equal(want) {
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
					if got := host.State(t, dev); !got.Equal(before[dev]) {
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
	before := map[string]netnstest.LinkState{
		first:  prepare(t, host, first, "10.78.1.1/24"),
		second: prepare(t, host, second, "10.78.2.1/24", "fd00:78::1/64"),
	}
	if err := host.H.LinkSetAlias(host.Link(t, first), "uplink"); err != nil { // a foreign alias is restored
		t.Fatal(err)
	}
	before[first] = host.State(t, first)
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
		if got := host.State(t, dev); !got.Equal(want) {
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
		name        string
		setup       func(t *testing.T, host *netnstest.NS, dev string)
		allowUppers bool
		wantErr     string
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
			name: "bridge port whose bridge holds the default route",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				br := host.Bridge(t)
				host.Exec(t, "ip", "link", "set", dev, "master", br)
				host.AddAddr(t, br, "198.18.30.2/24")
				host.Exec(t, "ip", "route", "add", "default", "via", "198.18.30.1", "dev", br)
			},
			wantErr: "carries the host's default route",
		},
		{
			name: "parent of a macvlan that holds the default route",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				mv := host.Macvlan(t, dev)
				host.AddAddr(t, mv, "fdb5:1e6f:7d2a:31::2/64")
				host.Exec(t, "ip", "-6", "route", "add", "default", "via", "fdb5:1e6f:7d2a:31::1", "dev", mv)
			},
			wantErr: "carries the host's default route",
		},
		{
			name: "default route in table 100 behind an ip rule",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				host.AddAddr(t, dev, "198.18.32.2/24")
				host.Exec(t, "ip", "route", "add", "default", "via", "198.18.32.1", "dev", dev, "table", "100")
				host.Exec(t, "ip", "rule", "add", "from", "198.18.32.2", "table", "100")
			},
			wantErr: "carries the host's default route",
		},
		{
			name: "lower device of a vxlan that holds the default route",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				vx := netnstest.Name("ndv")
				host.Exec(t, "ip", "link", "add", vx, "type", "vxlan", "id", "7", "dev", dev, "dstport", "4789", "remote", "198.18.99.1")
				host.Exec(t, "ip", "link", "set", vx, "up")
				host.AddAddr(t, vx, "198.18.34.2/24")
				host.Exec(t, "ip", "route", "add", "default", "via", "198.18.34.1", "dev", vx)
			},
			wantErr: "carries the host's default route",
		},
		{
			name: "split default route 0.0.0.0/1 + 128.0.0.0/1",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				host.AddAddr(t, dev, "198.18.35.2/24")
				host.Exec(t, "ip", "route", "add", "0.0.0.0/1", "via", "198.18.35.1", "dev", dev)
				host.Exec(t, "ip", "route", "add", "128.0.0.0/1", "via", "198.18.35.1", "dev", dev)
			},
			wantErr: "carries the host's default route",
		},
		{
			name: "a macvlan sits on it",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				host.Macvlan(t, dev)
			},
			wantErr: "other links are bound to it (ndm",
		},
		{
			name: "a vxlan sits on it",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				host.Exec(t, "ip", "link", "add", netnstest.Name("ndv"), "type", "vxlan", "id", "8", "dev", dev, "dstport", "4789", "remote", "198.18.99.1")
			},
			wantErr: "other links are bound to it (ndv",
		},
		{
			name: "a bridge port",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				host.Exec(t, "ip", "link", "set", dev, "master", host.Bridge(t))
			},
			wantErr: " (its master))",
		},
		{
			name: "a bridge port, upper devices allowed, but the bridge holds the default route",
			setup: func(t *testing.T, host *netnstest.NS, dev string) {
				br := host.Bridge(t)
				host.Exec(t, "ip", "link", "set", dev, "master", br)
				host.AddAddr(t, br, "198.18.36.2/24")
				host.Exec(t, "ip", "route", "add", "default", "via", "198.18.36.1", "dev", br)
			},
			allowUppers: true,
			wantErr:     "carries the host's default route",
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
			before := host.State(t, dev)
			target := Target{HostName: dev}
			if tt.wantErr == "no link" {
				target = Target{HostName: "absent0"}
			}
			_, err := Attach(pod.Path, target, Options{HostNS: host.Path, LockDir: t.TempDir(), AllowUpperDevices: tt.allowUppers})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Attach = %v, want error containing %q", err, tt.wantErr)
			}
			if got := host.State(t, dev); !got.Equal(before) {
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

// writeRecordOf writes the record a hook writes before its first change: the facts the link has
// now on the host, with inFlight set.
func writeRecordOf(t *testing.T, host *netnstest.NS, lockDir string, target Target, dev, inFlight string) {
	t.Helper()
	hs, err := openSpace(host.Path, "host")
	if err != nil {
		t.Fatal(err)
	}
	defer hs.close()
	ls, err := hs.links()
	if err != nil {
		t.Fatal(err)
	}
	f, err := factsOf(hs, host.Link(t, dev), dev, linkNames(ls))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := lockDevice(lockDir, target.lockKey())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.unlock()
	if err := lock.writeRecord(newRecord(target, inFlight, []linkFacts{f})); err != nil {
		t.Fatal(err)
	}
}

// TestAttachFinishesHalfDone: a hook killed between the move and the set-up leaves our link in the
// pod, down, without addresses, maybe under its travel name, and its record. The next attach (the
// runtime retries the container) must finish the job from the record, addresses included.
func TestAttachFinishesHalfDone(t *testing.T) {
	netnstest.RequireRoot(t)
	const pci = "0000:3b:01.0"
	tests := []struct {
		name      string
		pci       bool   // a PCI function (by address) rather than a software link (by name)
		podIfName string // --pod-ifname
		travel    string // the name it was left under in the pod; "host": its host name
		occupy    string // a name another link already has in the pod
		up        bool   // it was set up but is misnamed
		wantName  string // "host": its host name
	}{
		{name: "temporary name, down: renamed net1 and set up", podIfName: "net1", travel: "ndp77", wantName: "net1"},
		{name: "temporary name, net1 taken: net2", podIfName: "net1", travel: "ndp77", occupy: "net1", wantName: "net2"},
		{name: "temporary name without pod-ifname: its host name", travel: "ndp77", wantName: "host"},
		{name: "host name, down: set up", travel: "host", wantName: "host"},
		{name: "already net1 but down: set up", podIfName: "net1", travel: "net1", wantName: "net1"},
		{name: "already net3 (net1 taken meanwhile) but down: set up, not renamed", podIfName: "net1", travel: "net3", wantName: "net3"},
		{name: "up under the temporary name: renamed", podIfName: "net1", travel: "ndp77", up: true, wantName: "net1"},
		{name: "PCI function under a temporary name", pci: true, podIfName: "net1", travel: "ndp77", wantName: "net1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			dev, _ := host.Veth(t)
			before := prepare(t, host, dev, "198.18.33.1/24", "fdb5:1e6f:7d2a:33::1/64")
			target, alias := Target{HostName: dev}, Alias(dev, "")
			opts := Options{PodIfName: tt.podIfName, HostNS: host.Path, LockDir: t.TempDir()}
			if tt.pci {
				target, alias = Target{PCIAddress: pci}, Alias(dev, pci)
				opts.SysfsRoot = pciFixture(t, pci) // sysfs lists no netdev: it is in the pod
			}
			travel, want := tt.travel, tt.wantName
			if travel == "host" {
				travel = dev
			}
			if want == "host" {
				want = dev
			}
			if tt.occupy != "" {
				if err := pod.H.LinkAdd(ifb(tt.occupy)); err != nil {
					t.Fatal(err)
				}
			}
			writeRecordOf(t, host, opts.LockDir, target, dev, inFlightAttach)
			if err := host.H.LinkSetAlias(host.Link(t, dev), alias); err != nil {
				t.Fatal(err)
			}
			host.Move(t, dev, pod, travel)
			if tt.up {
				if err := pod.H.LinkSetUp(pod.Link(t, travel)); err != nil {
					t.Fatal(err)
				}
			}

			res, err := Attach(pod.Path, target, opts)
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			wantFinished := []Moved{{HostName: dev, PodName: want, PCIAddress: target.PCIAddress}}
			if !res.Already || len(res.Moved) != 0 || !slices.Equal(res.Finished, wantFinished) {
				t.Errorf("Attach = %+v, want Already with Finished %+v", res, wantFinished)
			}
			inPod := before
			inPod.Alias, inPod.Up = alias, true
			if got := pod.State(t, want); !got.Equal(inPod) {
				t.Errorf("%s in the pod is %+v, want %+v", want, got, inPod)
			}
			if want != travel && pod.Has(travel) {
				t.Errorf("%s still in the pod", travel)
			}
			res, err = Attach(pod.Path, target, opts)
			if err != nil || !res.Already || len(res.Finished) != 0 {
				t.Errorf("Attach again = %+v, %v; want Already with nothing to finish", res, err)
			}

			// Detach brings it home as it was.
			if _, err := Detach(pod.Path, target, opts); err != nil {
				t.Fatalf("Detach: %v", err)
			}
			if got := host.State(t, dev); !got.Equal(before) {
				t.Errorf("back home %s is %+v, want %+v", dev, got, before)
			}
			if got := netnstest.RecordFiles(t, opts.LockDir); len(got) != 0 {
				t.Errorf("the lock directory keeps %v", got)
			}
		})
	}
}

// TestAttachHalfDoneWithoutRecord: a link a hook from before records left half way in the pod. With
// addresses there (it was killed after re-adding them) it is finished; without, they are lost, and
// attach fails rather than report success for an interface without its addresses.
func TestAttachHalfDoneWithoutRecord(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, withAddrs := range []bool{false, true} {
		t.Run(fmt.Sprintf("addresses in the pod %v", withAddrs), func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			dev, _ := host.Veth(t)
			prepare(t, host, dev, "198.18.37.1/24")
			if err := host.H.LinkSetAlias(host.Link(t, dev), Alias(dev, "")); err != nil {
				t.Fatal(err)
			}
			host.Move(t, dev, pod, "net1")
			if withAddrs {
				pod.AddAddr(t, "net1", "198.18.37.1/24")
			}
			opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir()}
			res, err := Attach(pod.Path, Target{HostName: dev}, opts)
			if !withAddrs {
				if err == nil || !strings.Contains(err.Error(), "no record says what addresses it had") {
					t.Fatalf("Attach = %+v, %v; want a failure naming the lost addresses", res, err)
				}
				if pod.State(t, "net1").Up {
					t.Error("net1 was set up anyway")
				}
				return
			}
			if err != nil || len(res.Finished) != 1 || !pod.State(t, "net1").Up {
				t.Fatalf("Attach = %+v, %v; want net1 finished and up", res, err)
			}
		})
	}
}

// TestDetachAfterHalfAttach: an attach killed after the move, then the pod is torn down: detach must
// bring the addresses home from the record, not the nothing the link has in the pod.
func TestDetachAfterHalfAttach(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	dev, _ := host.Veth(t)
	before := prepare(t, host, dev, "198.18.38.1/24", "fdb5:1e6f:7d2a:38::1/64")
	opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir()}
	writeRecordOf(t, host, opts.LockDir, Target{HostName: dev}, dev, inFlightAttach)
	if err := host.H.LinkSetAlias(host.Link(t, dev), Alias(dev, "")); err != nil {
		t.Fatal(err)
	}
	host.Move(t, dev, pod, "ndp12")
	res, err := Detach(pod.Path, Target{HostName: dev}, opts)
	if err != nil || len(res.Moved) != 1 {
		t.Fatalf("Detach = %+v, %v", res, err)
	}
	if got := host.State(t, dev); !got.Equal(before) {
		t.Errorf("home %s is %+v, want %+v", dev, got, before)
	}
	if got := netnstest.RecordFiles(t, opts.LockDir); len(got) != 0 {
		t.Errorf("the lock directory keeps %v", got)
	}
}

// TestHalfDoneOnTheHost: a hook killed while the link is on the host under a name that is not its
// host name: an attach that renamed it for travel, a detach that moved it home under its pod-side
// or travel name. Whichever hook comes next finishes the job: detach completes it at home, attach
// takes it into the pod; neither says "already home", neither loses its addresses.
func TestHalfDoneOnTheHost(t *testing.T) {
	netnstest.RequireRoot(t)
	tests := []struct {
		name     string
		as       string // the name it is left under on the host
		inFlight string
		down     bool
	}{
		{name: "attach renamed it for travel", as: "ndp31", inFlight: inFlightAttach},
		{name: "detach moved it home under its pod-side name", as: "net1", inFlight: inFlightDetach, down: true},
		{name: "detach moved it home under its host name, addresses not back yet", as: "host", inFlight: inFlightDetach, down: true},
		{name: "attach set the alias only", as: "host", inFlight: inFlightAttach},
	}
	for _, tt := range tests {
		for _, next := range []string{"attach", "detach"} {
			t.Run(tt.name+", then "+next, func(t *testing.T) {
				host, pod := netnstest.New(t), netnstest.New(t)
				dev, _ := host.Veth(t)
				before := prepare(t, host, dev, "198.18.39.1/24", "fdb5:1e6f:7d2a:39::1/64")
				target := Target{HostName: dev}
				opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir()}
				writeRecordOf(t, host, opts.LockDir, target, dev, tt.inFlight)
				l := host.Link(t, dev)
				if err := host.H.LinkSetAlias(l, Alias(dev, "")); err != nil {
					t.Fatal(err)
				}
				as := tt.as
				if as == "host" {
					as = dev
				}
				if tt.down {
					if err := host.H.LinkSetDown(l); err != nil {
						t.Fatal(err)
					}
					host.Exec(t, "ip", "addr", "flush", "dev", dev) // the move flushed them
				}
				if as != dev {
					host.Exec(t, "ip", "link", "set", dev, "down")
					host.Exec(t, "ip", "link", "set", dev, "name", as)
					t.Cleanup(func() { _ = exec.Command("ip", "-n", host.Name, "link", "del", as).Run() })
				}

				if next == "detach" {
					res, err := Detach(pod.Path, target, opts)
					if err != nil || len(res.Finished) != 1 || res.Already {
						t.Fatalf("Detach = %+v, %v; want the link finished", res, err)
					}
				} else {
					res, err := Attach(pod.Path, target, opts)
					if err != nil || len(res.Moved) != 1 {
						t.Fatalf("Attach = %+v, %v; want the link moved", res, err)
					}
					inPod := before
					inPod.Alias = Alias(dev, "")
					if got := pod.State(t, "net1"); !got.Equal(inPod) {
						t.Errorf("net1 in the pod is %+v, want %+v", got, inPod)
					}
					if _, err := Detach(pod.Path, target, opts); err != nil {
						t.Fatalf("Detach: %v", err)
					}
				}
				if got := host.State(t, dev); !got.Equal(before) {
					t.Errorf("home %s is %+v, want %+v", dev, got, before)
				}
				if host.Has(as) && as != dev {
					t.Errorf("%s still on the host", as)
				}
				if got := netnstest.RecordFiles(t, opts.LockDir); len(got) != 0 {
					t.Errorf("the lock directory keeps %v", got)
				}
			})
		}
	}
}

// TestDetachRestoresHostState: what the link was on the host comes back, not what a pod link usually
// is: admin down stays down, a bridge port goes back into its bridge, its alias, MTU, addresses
// (labels and lifetimes too) come back.
func TestDetachRestoresHostState(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	veth, _ := host.Veth(t)
	const dev = "rst0" // short enough for an address label: the namespace is the test's own
	host.Exec(t, "ip", "link", "set", veth, "down", "name", dev)
	br := host.Bridge(t)
	host.Exec(t, "ip", "link", "set", dev, "master", br)
	prepare(t, host, dev, "198.18.40.1/24")
	host.Exec(t, "ip", "addr", "add", "198.18.41.1/24", "dev", dev, "label", dev+":l1")
	host.Exec(t, "ip", "addr", "add", "198.18.45.1/24", "dev", dev, "valid_lft", "3000", "preferred_lft", "2000")
	// Down: IPv6 addresses do not survive that (keep_addr_on_down is 0), so there are none.
	host.Exec(t, "ip", "link", "set", dev, "down", "alias", "rack 3 uplink")
	before := host.State(t, dev)
	opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir(), AllowUpperDevices: true}

	for round := range 2 {
		if _, err := Attach(pod.Path, Target{HostName: dev}, opts); err != nil {
			t.Fatalf("round %d: Attach: %v", round, err)
		}
		got := pod.State(t, "net1")
		if !got.Up || len(got.Addrs) != 3 {
			t.Errorf("round %d: net1 in the pod is %+v, want up with three addresses", round, got)
		}
		if _, err := Detach(pod.Path, Target{HostName: dev}, opts); err != nil {
			t.Fatalf("round %d: Detach: %v", round, err)
		}
		if got := host.State(t, dev); !got.Equal(before) {
			t.Errorf("round %d: home %s is %+v, want %+v", round, dev, got, before)
		}
		l := host.Link(t, dev)
		if m := l.Attrs().MasterIndex; m != host.Link(t, br).Attrs().Index {
			t.Errorf("round %d: %s came home outside its bridge (master %d)", round, dev, m)
		}
		addrs, err := host.H.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		labels, lifetimes := 0, 0
		for _, a := range addrs {
			if a.Label == dev+":l1" {
				labels++
			}
			if a.ValidLft > 0 && a.ValidLft <= 3000 && a.PreferedLft <= 2000 {
				lifetimes++
			}
		}
		if labels != 1 || lifetimes != 1 {
			t.Errorf("round %d: %d addresses keep their label, %d their lifetimes; want 1 and 1: %+v", round, labels, lifetimes, addrs)
		}
	}
}

// TestRecordLifecycle: the record is there from before the first change until the link is complete
// at home; at rest in the pod it keeps what detach restores; no temporary file stays.
func TestRecordLifecycle(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	dev, _ := host.Veth(t)
	prepare(t, host, dev, "198.18.42.1/24")
	opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir()}
	target := Target{HostName: dev}
	if _, err := Attach(pod.Path, target, opts); err != nil {
		t.Fatal(err)
	}
	if got := netnstest.RecordFiles(t, opts.LockDir); !slices.Equal(got, []string{target.lockKey() + ".json"}) {
		t.Fatalf("after attach the lock directory holds %v, want the record alone", got)
	}
	lock, err := lockDevice(opts.LockDir, target.lockKey())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := lock.readRecord(target)
	lock.unlock()
	if err != nil || rec.InFlight != "" || len(rec.Links) != 1 || rec.Links[0].HostName != dev ||
		len(rec.Links[0].Addrs) != 1 || rec.Links[0].Addrs[0].Local != "198.18.42.1/24" || rec.Links[0].MTU != 1400 || !rec.Links[0].Up {
		t.Fatalf("record at rest = %+v, %v", rec, err)
	}
	if _, err := Detach(pod.Path, target, opts); err != nil {
		t.Fatal(err)
	}
	if got := netnstest.RecordFiles(t, opts.LockDir); len(got) != 0 {
		t.Errorf("after detach the lock directory keeps %v", got)
	}
}

// TestRecordStale: a record no link carries our alias for, with the device on the host, is what a
// hook killed before its first change (or after its last) leaves: it is dropped, the link moves.
func TestRecordStale(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, inFlight := range []string{inFlightAttach, inFlightDetach, ""} {
		t.Run("inFlight "+inFlight, func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			dev, _ := host.Veth(t)
			before := prepare(t, host, dev, "198.18.43.1/24")
			opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir()}
			writeRecordOf(t, host, opts.LockDir, Target{HostName: dev}, dev, inFlight)
			res, err := Detach(pod.Path, Target{HostName: dev}, opts)
			if err != nil || !res.Already {
				t.Fatalf("Detach = %+v, %v; want Already", res, err)
			}
			if got := netnstest.RecordFiles(t, opts.LockDir); len(got) != 0 {
				t.Errorf("the stale record stays: %v", got)
			}
			if got := host.State(t, dev); !got.Equal(before) {
				t.Errorf("%s changed: %+v, was %+v", dev, got, before)
			}
		})
	}
}

// TestRecordCorrupt: a record that cannot be read or makes no sense fails the hook, loudly, in both
// directions, and no link is touched on its account.
func TestRecordCorrupt(t *testing.T) {
	netnstest.RequireRoot(t)
	valid := func(dev string) string {
		return `{"version":1,"inFlight":"attach","hostName":"` + dev + `","links":[{"hostName":"` + dev + `","mtu":1400,"up":true}]}`
	}
	tests := []struct {
		name    string
		content func(dev string) string // "" with plant set
		plant   func(t *testing.T, path string)
		wantErr string
	}{
		{name: "empty", content: func(string) string { return "" }, wantErr: "EOF"},
		{name: "not JSON", content: func(string) string { return "{not json" }, wantErr: "invalid character"},
		{name: "cut short", content: func(dev string) string { return valid(dev)[:40] }, wantErr: "unexpected EOF"},
		{name: "unknown field", content: func(dev string) string { return strings.Replace(valid(dev), `"version":1`, `"version":1,"extra":2`, 1) }, wantErr: `unknown field "extra"`},
		{name: "future version", content: func(dev string) string { return strings.Replace(valid(dev), `"version":1`, `"version":2`, 1) }, wantErr: "version 2"},
		{name: "another device's", content: func(dev string) string { return strings.ReplaceAll(valid(dev), dev, "other0") }, wantErr: "record of link other0"},
		{name: "bad direction", content: func(dev string) string { return strings.Replace(valid(dev), `"attach"`, `"sideways"`, 1) }, wantErr: `inFlight "sideways"`},
		{name: "bad address", content: func(dev string) string {
			return strings.Replace(valid(dev), `"up":true`, `"up":true,"addrs":[{"local":"10.1.2.300/24"}]`, 1)
		}, wantErr: "10.1.2.300"},
		{name: "no links", content: func(dev string) string {
			return strings.Replace(valid(dev), `"links":[{"hostName":"`+dev+`","mtu":1400,"up":true}]`, `"links":[]`, 1)
		}, wantErr: "lists no link"},
		{name: "trailing data", content: func(dev string) string { return valid(dev) + "{}" }, wantErr: "data after the record"},
		{name: "a symlink", plant: func(t *testing.T, path string) {
			if err := os.Symlink("/etc/hostname", path); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "is a symlink"},
		{name: "a directory", plant: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not a regular file"},
	}
	for _, tt := range tests {
		for _, where := range []string{"on the host", "in the pod"} {
			t.Run(tt.name+", link "+where, func(t *testing.T) {
				host, pod := netnstest.New(t), netnstest.New(t)
				dev, _ := host.Veth(t)
				prepare(t, host, dev, "198.18.44.1/24")
				target := Target{HostName: dev}
				opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir()}
				if where == "in the pod" {
					if _, err := Attach(pod.Path, target, opts); err != nil {
						t.Fatal(err)
					}
				}
				path := filepath.Join(opts.LockDir, target.lockKey()+".json")
				_ = os.Remove(path)
				if tt.plant != nil {
					tt.plant(t, path)
				} else if err := os.WriteFile(path, []byte(tt.content(dev)), 0o600); err != nil {
					t.Fatal(err)
				}
				hostBefore, podBefore := host.LinkNames(t), pod.LinkNames(t)
				for _, op := range []func(string, Target, Options) (Result, error){Attach, Detach} {
					_, err := op(pod.Path, target, opts)
					if err == nil || !strings.Contains(err.Error(), "unreadable device record") || !strings.Contains(err.Error(), tt.wantErr) {
						t.Errorf("got %v, want an unreadable record error containing %q", err, tt.wantErr)
					}
				}
				if got := host.LinkNames(t); !slices.Equal(got, hostBefore) {
					t.Errorf("host links %v, were %v", got, hostBefore)
				}
				if got := pod.LinkNames(t); !slices.Equal(got, podBefore) {
					t.Errorf("pod links %v, were %v", got, podBefore)
				}
			})
		}
	}
}

// TestAttachSoftwareLinkFoundInThePod: a container restart runs attach again while the link is in
// the pod. A link created anew on the host under the same name (systemd-networkd re-creates the
// links it manages) must stay on the host.
func TestAttachSoftwareLinkFoundInThePod(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, podIfName := range []string{"", "net1"} {
		t.Run("pod-ifname "+podIfName, func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			dev, _ := host.Veth(t)
			opts := Options{PodIfName: podIfName, HostNS: host.Path, LockDir: t.TempDir()}
			res, err := Attach(pod.Path, Target{HostName: dev}, opts)
			if err != nil || len(res.Moved) != 1 {
				t.Fatalf("Attach = %+v, %v", res, err)
			}
			podName := res.Moved[0].PodName
			inPod := pod.State(t, podName)

			if err := host.H.LinkAdd(ifb(dev)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if l, err := host.H.LinkByName(dev); err == nil {
					_ = host.H.LinkDel(l)
				}
			})
			newcomer := host.Link(t, dev).Attrs().Index
			hostBefore := host.State(t, dev)

			res, err = Attach(pod.Path, Target{HostName: dev}, opts)
			if err != nil || !res.Already || len(res.Moved) != 0 {
				t.Errorf("Attach after the host re-created %s = %+v, %v; want Already", dev, res, err)
			}
			if !host.Has(dev) || host.Link(t, dev).Attrs().Index != newcomer {
				t.Fatalf("the host's new %s was moved", dev)
			}
			if got := host.State(t, dev); !got.Equal(hostBefore) {
				t.Errorf("the host's new %s is %+v, was %+v", dev, got, hostBefore)
			}
			if got := pod.State(t, podName); !got.Equal(inPod) {
				t.Errorf("%s in the pod is %+v, was %+v", podName, got, inPod)
			}
			var names []string
			for _, name := range pod.LinkNames(t) {
				if _, _, ours := ParseAlias(pod.Link(t, name).Attrs().Alias); ours {
					names = append(names, name)
				}
			}
			if !slices.Equal(names, []string{podName}) {
				t.Errorf("our links in the pod: %v, want [%s]", names, podName)
			}
		})
	}
}

// TestAttachConcurrentIntoOnePod: two devices of one container attach at once (different devices:
// different locks). Both pick the first free pod-side name; the loser of the race must take the next.
func TestAttachConcurrentIntoOnePod(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t)
	lockDir := t.TempDir()
	for round := range 10 {
		pod := netnstest.New(t)
		devs := make([]string, 2)
		for i := range devs {
			devs[i], _ = host.Veth(t)
		}
		opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: lockDir}
		errs := make([]error, len(devs))
		var wg sync.WaitGroup
		for i, dev := range devs {
			wg.Go(func() { _, errs[i] = Attach(pod.Path, Target{HostName: dev}, opts) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: Attach %s: %v", round, devs[i], err)
			}
		}
		got := map[string]string{} // pod-side name -> host name
		for _, name := range pod.LinkNames(t) {
			if hostName, _, ours := ParseAlias(pod.Link(t, name).Attrs().Alias); ours {
				got[name] = hostName
			}
		}
		if len(got) != 2 || got["net1"] == "" || got["net2"] == "" || got["net1"] == got["net2"] {
			t.Errorf("round %d: our links in the pod %v, want net1 and net2 holding %v", round, got, devs)
		}
		for _, dev := range devs {
			if _, err := Detach(pod.Path, Target{HostName: dev}, opts); err != nil {
				t.Errorf("round %d: Detach %s: %v", round, dev, err)
			}
			if !host.Has(dev) {
				t.Errorf("round %d: %s not home", round, dev)
			}
		}
	}
}

// TestDetachMasterGone: the bridge a port came from was deleted while it was in the pod. Detach
// brings it home complete but for the bridge and says so once; the next detach is a plain success.
func TestDetachMasterGone(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	dev, _ := host.Veth(t)
	br := host.Bridge(t)
	host.Exec(t, "ip", "link", "set", dev, "master", br)
	before := prepare(t, host, dev, "198.18.47.1/24")
	opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir(), AllowUpperDevices: true}
	if _, err := Attach(pod.Path, Target{HostName: dev}, opts); err != nil {
		t.Fatal(err)
	}
	host.Exec(t, "ip", "link", "del", br)
	res, err := Detach(pod.Path, Target{HostName: dev}, opts)
	if err == nil || !strings.Contains(err.Error(), "its master "+br+" is gone") || len(res.Moved) != 1 {
		t.Fatalf("Detach = %+v, %v; want it home and the bridge reported gone", res, err)
	}
	if got := host.State(t, dev); !got.Equal(before) || host.Link(t, dev).Attrs().MasterIndex != 0 {
		t.Errorf("%s home is %+v (master %d), want %+v outside any bridge", dev, got, host.Link(t, dev).Attrs().MasterIndex, before)
	}
	if res, err := Detach(pod.Path, Target{HostName: dev}, opts); err != nil || !res.Already {
		t.Errorf("Detach again = %+v, %v; want Already", res, err)
	}
	if got := netnstest.RecordFiles(t, opts.LockDir); len(got) != 0 {
		t.Errorf("the lock directory keeps %v", got)
	}
}
