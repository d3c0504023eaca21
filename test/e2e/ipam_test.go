//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam/ipamtest"
	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

const (
	ipamSubnet = "10.237.63.0/24"
	ipamMTU    = 1400
	// releaseTimeout bounds how long a deleted pod's addresses take to go back to host-local: the
	// daemon asks the kubelet every second, and lets an allocation go once it is no longer reported.
	releaseTimeout = 60 * time.Second
)

// scenarioIPAM (issue 13): two pods each get a device of a pool with host-local IPAM, the two ends of
// one veth. Each pod's net1 has its own address from the pool's subnet and the pool's MTU, and one
// pod reaches the other's HTTP server through them. A killed container comes back with the same
// address; a restarted daemon releases nothing that pods hold; a deleted pod's address goes back to
// host-local, and when both are gone nothing is left: no lease, no address held.
func scenarioIPAM(t *testing.T, st *stack.Stack, p plugin, tok string, l scenarioLinks) {
	ctx := context.Background()
	a := runPod(t, st, "ipama", podManifest("ipama", map[string]int{ipamResource: 1}))
	b := runPod(t, st, "ipamb", podManifest("ipamb", map[string]int{ipamResource: 1}))
	ca, linksA, attach := a.attach(t, "app", linkWant{Name: "net1"})
	cb, linksB, _ := b.attach(t, "app", linkWant{Name: "net1"})
	ipA, ipB := poolAddr(t, a.Name, linksA["net1"]), poolAddr(t, b.Name, linksB["net1"])
	if ipA == ipB {
		t.Fatalf("both pods have %s", ipA)
	}
	for _, c := range []stack.Container{ca, cb} {
		if mtu, err := st.Exec(ctx, c.ID, "cat", "/sys/class/net/net1/mtu"); err != nil || strings.TrimSpace(mtu) != fmt.Sprint(ipamMTU) {
			t.Errorf("container %s: net1 MTU %q (%v), want the pool's %d", c.ID, mtu, err, ipamMTU)
		}
	}
	notOnHost(t, l.IPAM0, l.IPAM1)
	reach(t, st, ca, ipB, b.Name)
	reach(t, st, cb, ipA, a.Name)
	wantHeld(t, st, []string{ipA, ipB}, 0)

	// the container restarted: the same address
	pid, err := st.ContainerPID(ctx, ca.ID)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill container process %d: %v", pid, err)
	}
	want := linkWant{Name: "net1", Addr: ipA + "/24"}
	var ca2 stack.Container
	if err := poll(ctx, attachTimeout, 50*time.Millisecond, func(ctx context.Context) error {
		var err error
		if ca2, _, _, err = waitPodLinks(ctx, st, a.Name, "app", []linkWant{want}, 5*time.Second); err != nil {
			return err
		}
		if ca2.ID == ca.ID {
			return fmt.Errorf("container %s not restarted yet", ca.ID)
		}
		return nil
	}); err != nil {
		t.Fatalf("after killing the container's process: %v", err)
	}
	restart := time.Since(killed)
	reach(t, st, cb, ipA, a.Name)
	wantHeld(t, st, []string{ipA, ipB}, 0)

	// the daemon restarted: it releases nothing the pods hold
	if err := st.StopProcess("netdevice-plugin"); err != nil {
		t.Fatal(err)
	}
	startPlugin(t, st, p, scenarioConfig(tok, ipamStore(st)))
	if err := waitAllocatable(ctx, st, stack.Devices{ipamResource: {l.IPAM0, l.IPAM1}}, 60*time.Second); err != nil {
		pluginAlive(t, st)
		t.Fatalf("after the daemon restart: %v", err)
	}
	time.Sleep(3 * time.Second) // three kubelet syncs
	wantHeld(t, st, []string{ipA, ipB}, 0)

	// a pod deleted: its address goes back, the other pod's stays
	home := a.remove(t, homeLink{Name: l.IPAM0})
	released := time.Now()
	wantHeld(t, st, []string{ipB}, releaseTimeout)
	release := time.Since(released)
	b.remove(t, homeLink{Name: l.IPAM1})
	wantHeld(t, st, nil, releaseTimeout)
	timing("7-ipam", "attach_ms", attach, "restart_ms", restart, "home_ms", home, "release_ms", release)
}

// poolAddr is the pod link's address in the IPAM pool's subnet.
func poolAddr(t *testing.T, pod string, l podLink) string {
	t.Helper()
	_, subnet, _ := net.ParseCIDR(ipamSubnet)
	for _, a := range l.Addrs {
		if ip, n, err := net.ParseCIDR(a); err == nil && subnet.Contains(ip) && n.String() == subnet.String() {
			return ip.String()
		}
	}
	t.Fatalf("pod %s: net1 has %v, no address in %s", pod, l.Addrs, ipamSubnet)
	return ""
}

// reach fetches /hostname from the netexec server at ip from inside container c, which must answer
// with the pod name: the traffic went through the two pods' net1.
func reach(t *testing.T, st *stack.Stack, c stack.Container, ip, pod string) {
	t.Helper()
	err := poll(context.Background(), 20*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		// timeout, not wget -T: Debian's busybox 1.35 wget crashes with -T
		out, err := st.Exec(ctx, c.ID, "timeout", "3", "wget", "-q", "-O", "-", "http://"+ip+":80/hostname")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.TrimSpace(out) != pod {
			return fmt.Errorf("http://%s/hostname = %q, want %q", ip, out, pod)
		}
		return nil
	})
	if err != nil {
		t.Errorf("from container %s: %v", c.ID, err)
	}
}

// wantHeld waits (up to timeout; 0: checks once) until host-local holds exactly the addresses and
// the lease folder has one lease per address.
func wantHeld(t *testing.T, st *stack.Stack, ips []string, timeout time.Duration) {
	t.Helper()
	slices.Sort(ips)
	check := func(context.Context) error {
		held, err := heldAddrs(st)
		if err != nil {
			return err
		}
		leases, err := ipam.Leases(leaseDir(st))
		if err != nil {
			return err
		}
		if !slices.Equal(held, ips) || len(leases) != len(ips) {
			return fmt.Errorf("host-local holds %v and there are %d leases, want %v and %d", held, len(leases), ips, len(ips))
		}
		return nil
	}
	err := checkOrPoll(timeout, check)
	if err != nil {
		pluginAlive(t, st)
		t.Fatal(err)
	}
}

// heldAddrs lists the addresses host-local's store holds for the IPAM pool.
func heldAddrs(st *stack.Stack) ([]string, error) { return ipamtest.Held(ipamStore(st), ipamResource) }
