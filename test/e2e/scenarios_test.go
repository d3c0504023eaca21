//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

const (
	seedResource = "networking.k8s.io/netdevice"
	net1Resource = "networking.k8s.io/e2e-net1"
	net2Resource = "networking.k8s.io/e2e-net2"
	vethResource = "networking.k8s.io/e2e-veth"
	ipamResource = "networking.k8s.io/e2e-ipam"

	attachTimeout = 90 * time.Second
	homeTimeout   = 60 * time.Second
)

// scenarioLinks are the host links of one run: the seed's dummy0, one link for each of two renamed
// pools, and a veth whose peer stays on the host so traffic can reach the pod through it.
type scenarioLinks struct {
	Seed, Net1, Net2, Veth, Peer string
	// IPAM0 and IPAM1 are the two ends of one veth, both in the IPAM pool (they stand in for two VFs
	// of one PF): two pods that get them can reach each other.
	IPAM0, IPAM1 string
}

func newScenarioLinks(tok string) scenarioLinks {
	return scenarioLinks{Seed: "dummy0", Net1: "nd" + tok + "a0", Net2: "nd" + tok + "b0", Veth: "nd" + tok + "v0", Peer: "nd" + tok + "p0",
		IPAM0: "nd" + tok + "i0", IPAM1: "nd" + tok + "i1"}
}

const (
	seedAddr = "192.168.8.8/32"
	vethAddr = "10.237.62.2/30" // the pod side
	peerAddr = "10.237.62.1/30" // the host side
	vethIP   = "10.237.62.2"
)

// scenarioConfig is the daemon's config: the seed pool, two pools renamed in the pod by podIfName,
// the veth pool, and a pool whose pods get addresses from host-local (its store in ipamStore).
// Selectors use this run's token so other links on the machine stay untouched.
func scenarioConfig(tok, ipamStore string) string {
	return fmt.Sprintf(`{"resourceList":[
  {"resourceName":"netdevice","selectors":[{"ifNames":["dummy*"]}]},
  {"resourceName":"e2e-net1","podIfName":"net1","selectors":[{"ifNames":["nd%[1]sa*"]}]},
  {"resourceName":"e2e-net2","podIfName":"net2","selectors":[{"ifNames":["nd%[1]sb*"]}]},
  {"resourceName":"e2e-veth","selectors":[{"ifNames":["nd%[1]sv*"]}]},
  {"resourceName":"e2e-ipam","podIfName":"net1","mtu":%[3]d,
   "ipam":{"type":"host-local","dataDir":%[2]q,"ranges":[[{"subnet":%[4]q}]]},
   "selectors":[{"ifNames":["nd%[1]si*"]}]}
]}
`, tok, ipamStore, ipamMTU, ipamSubnet)
}

// TestScenarios runs, against a standalone kubelet (static pods) and the daemon as a host process,
// the scenarios of issue 5 that the cluster's (TestCluster) do not cover: two pools renamed in the
// pod (podIfName), a container restart that keeps a veth carrying traffic, a kubelet restart (the
// plugin registers again), and the kubelet's own admission refusing a pod that asks for more than
// the pool has (a scheduler never sends it such a pod). Issue 5's seed demo (1) and delete-and-reuse
// (3) run in the cluster now: TestCluster's seed demo and rollout restart. In order, on one stack
// and one daemon; each one leaves no pod behind.
func TestScenarios(t *testing.T) {
	p := pluginBinaries(t)
	st := newStack(t, "scenarios")
	ctx := context.Background()
	tok := token(t)
	l := newScenarioLinks(tok)
	addHostLink(t, st, hostLink{Name: l.Seed, Addr: seedAddr})
	addHostLink(t, st, hostLink{Name: l.Net1})
	addHostLink(t, st, hostLink{Name: l.Net2})
	addHostLink(t, st, hostLink{Name: l.Veth, Addr: vethAddr, Peer: l.Peer, PAddr: peerAddr})
	addHostLink(t, st, hostLink{Name: l.IPAM0, Peer: l.IPAM1})

	all := stack.Devices{
		seedResource: {l.Seed},
		net1Resource: {l.Net1},
		net2Resource: {l.Net2},
		vethResource: {l.Veth},
		ipamResource: {l.IPAM0, l.IPAM1},
	}
	started := time.Now()
	startPlugin(t, st, p, scenarioConfig(tok, ipamStore(st)))
	// The capacity must be there before any pod manifest appears (E2E-NOTES.md).
	if err := waitAllocatable(ctx, st, all, 60*time.Second); err != nil {
		pluginAlive(t, st)
		t.Fatalf("the plugin's pools never became allocatable: %v", err)
	}
	timing("0-register", "register_ms", time.Since(started))

	steps := []struct {
		name string
		run  func(t *testing.T, st *stack.Stack, l scenarioLinks, all stack.Devices)
	}{
		{"2-two-pools-renamed", scenarioTwoPools},
		{"4-container-restart", scenarioContainerRestart},
		{"5-kubelet-restart", scenarioKubeletRestart},
		{"6-too-many-devices", scenarioTooMany},
		{"7-ipam", func(t *testing.T, st *stack.Stack, l scenarioLinks, _ stack.Devices) { scenarioIPAM(t, st, p, tok, l) }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			pluginAlive(t, st)
			// every scenario starts with the whole inventory home and allocatable
			flapped, err := waitAllocatableStable(ctx, st, all, 30*time.Second, 500*time.Millisecond)
			if err != nil {
				t.Fatalf("before the scenario: %v", err)
			}
			if flapped {
				t.Logf("WARNING: a device dropped out of the kubelet's allocatable devices for a moment before this scenario")
			}
			s.run(t, st, l, all)
			pluginAlive(t, st)
		})
	}
}

// podRun is a static pod a scenario runs; its cleanup removes the manifest if the scenario did not.
type podRun struct {
	st      *stack.Stack
	file    string
	Name    string // the kubelet's pod name
	written time.Time
	removed bool
}

func runPod(t *testing.T, st *stack.Stack, name string, manifest []byte) *podRun {
	t.Helper()
	p := &podRun{st: st, file: name + ".yaml", Name: st.PodName(name)}
	var err error
	if p.written, err = st.WriteManifest(p.file, manifest); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.removed {
			_, _ = st.RemoveManifest(p.file)
		}
		// wait for the pod's containers to stop, so the next scenario starts from a quiet node
		_ = poll(context.Background(), 60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
			sbs, err := st.Sandboxes(ctx, p.Name)
			if err != nil {
				return err
			}
			for _, sb := range sbs {
				if sb.State == "SANDBOX_READY" {
					return fmt.Errorf("pod %s still ready", p.Name)
				}
			}
			return nil
		})
	})
	return p
}

// attach waits for the links in the pod and returns its container and the time since the manifest.
func (p *podRun) attach(t *testing.T, container string, want ...linkWant) (stack.Container, map[string]podLink, time.Duration) {
	t.Helper()
	c, links, seen, err := waitPodLinks(context.Background(), p.st, p.Name, container, want, attachTimeout)
	if err != nil {
		pluginAlive(t, p.st)
		t.Fatalf("links %v never showed up in pod %s: %v", want, p.Name, err)
	}
	return c, links, seen.Sub(p.written)
}

// homeLink is a link that must come back to the host, up, with its address (if it had one).
type homeLink struct{ Name, Addr string }

// remove deletes the manifest and waits until the host names are back; it returns how long that
// took. Then it checks that each link is usable again: up, with its address.
func (p *podRun) remove(t *testing.T, links ...homeLink) time.Duration {
	t.Helper()
	removed, err := p.st.RemoveManifest(p.file)
	if err != nil {
		t.Fatal(err)
	}
	p.removed = true
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Name
	}
	back, err := waitOnHost(context.Background(), names, homeTimeout)
	if err != nil {
		t.Fatalf("after pod %s was deleted: %v", p.Name, err)
	}
	for _, l := range links {
		if err := poll(context.Background(), 10*time.Second, 20*time.Millisecond, func(context.Context) error { return hostLinkReady(l.Name, l.Addr) }); err != nil {
			t.Errorf("after pod %s was deleted: %v", p.Name, err)
		}
	}
	return back.Sub(removed)
}

// notOnHost fails the test for each name still in the host namespace.
func notOnHost(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if onHost(n) {
			t.Errorf("link %s is still in the host namespace while the pod holds it", n)
		}
	}
}

// inUse checks the kubelet's allocations (pod-resources List) for one resource.
func inUse(t *testing.T, st *stack.Stack, resource string, want []string) {
	t.Helper()
	got, err := st.InUse(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[resource], want) {
		t.Errorf("kubelet allocations of %s = %v, want %v", resource, got[resource], want)
	}
}

// scenarioTwoPools: one device from each of two pools, renamed net1 and net2 inside the pod; the host
// names appear neither in the pod nor on the host; both come home under their host names.
func scenarioTwoPools(t *testing.T, st *stack.Stack, l scenarioLinks, _ stack.Devices) {
	macs := map[string]string{"net1": hostMAC(t, l.Net1), "net2": hostMAC(t, l.Net2)}
	p := runPod(t, st, "twopools", podManifest("twopools", map[string]int{net1Resource: 1, net2Resource: 1}))
	_, links, attach := p.attach(t, "app", linkWant{Name: "net1"}, linkWant{Name: "net2"})
	for _, n := range []string{l.Net1, l.Net2} {
		if _, ok := links[n]; ok {
			t.Errorf("pod has link %s under its host name; want it renamed", n)
		}
	}
	// each pool's device got its pool's name: the hardware address says which link is which
	for podName, mac := range macs {
		if links[podName].MAC != mac {
			t.Errorf("pod link %s has MAC %q, want %q (the device of its pool)", podName, links[podName].MAC, mac)
		}
	}
	notOnHost(t, l.Net1, l.Net2)
	inUse(t, st, net1Resource, []string{l.Net1})
	inUse(t, st, net2Resource, []string{l.Net2})
	home := p.remove(t, homeLink{Name: l.Net1}, homeLink{Name: l.Net2})
	timing("2-two-pools-renamed", "attach_ms", attach, "home_ms", home)
}

// scenarioContainerRestart: killing the container's process makes the kubelet start a new container
// in the same pod; the veth is still there with its address and carries the host's HTTP request to
// the new container.
func scenarioContainerRestart(t *testing.T, st *stack.Stack, l scenarioLinks, _ stack.Devices) {
	ctx := context.Background()
	p := runPod(t, st, "restart", podManifest("restart", map[string]int{vethResource: 1}))
	want := linkWant{Name: l.Veth, Addr: vethAddr}
	c, _, attach := p.attach(t, "app", want)
	url := "http://" + vethIP + ":80/hostname"
	if err := poll(ctx, 10*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		body, err := httpGet(ctx, url)
		if err == nil && strings.TrimSpace(body) != p.Name {
			err = fmt.Errorf("GET %s = %q, want %q", url, body, p.Name)
		}
		return err
	}); err != nil {
		t.Fatalf("the pod's server is not reachable through %s: %v", l.Veth, err)
	}

	pid, err := st.ContainerPID(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill container process %d: %v", pid, err)
	}
	var c2 stack.Container
	err = poll(ctx, attachTimeout, 50*time.Millisecond, func(ctx context.Context) error {
		var err error
		if c2, _, _, err = waitPodLinks(ctx, st, p.Name, "app", []linkWant{want}, 5*time.Second); err != nil {
			return err
		}
		if c2.ID == c.ID {
			return fmt.Errorf("container %s not restarted yet", c.ID)
		}
		body, err := httpGet(ctx, url)
		if err == nil && strings.TrimSpace(body) != p.Name {
			err = fmt.Errorf("GET %s = %q, want %q", url, body, p.Name)
		}
		return err
	})
	if err != nil {
		t.Fatalf("after killing the container's process (pid %d): %v", pid, err)
	}
	reattach := time.Since(killed)
	if c2.Metadata.Attempt <= c.Metadata.Attempt {
		t.Errorf("restarted container attempt %d, want more than %d", c2.Metadata.Attempt, c.Metadata.Attempt)
	}
	notOnHost(t, l.Veth)
	home := p.remove(t, homeLink{l.Veth, vethAddr})
	timing("4-container-restart", "attach_ms", attach, "restart_ms", reattach, "home_ms", home)
}

// scenarioKubeletRestart: after a kubelet restart the plugin registers again, the capacity comes
// back, and a new pod gets a device.
func scenarioKubeletRestart(t *testing.T, st *stack.Stack, l scenarioLinks, all stack.Devices) {
	ctx := context.Background()
	restarted := time.Now()
	if err := st.RestartKubelet(ctx); err != nil {
		t.Fatalf("restart kubelet: %v", err)
	}
	if err := waitAllocatable(ctx, st, all, 60*time.Second); err != nil {
		pluginAlive(t, st)
		t.Fatalf("capacity did not come back after the kubelet restart: %v", err)
	}
	reregister := time.Since(restarted)
	p := runPod(t, st, "afterrestart", podManifest("afterrestart", map[string]int{seedResource: 1}))
	_, _, attach := p.attach(t, "app", linkWant{Name: l.Seed, Addr: seedAddr})
	notOnHost(t, l.Seed)
	home := p.remove(t, homeLink{l.Seed, seedAddr})
	timing("5-kubelet-restart", "reregister_ms", reregister, "attach_ms", attach, "home_ms", home)
}

// scenarioTooMany: a pod asking for more devices than the pool has is rejected at admission, runs
// nothing, and moves nothing.
func scenarioTooMany(t *testing.T, st *stack.Stack, l scenarioLinks, all stack.Devices) {
	ctx := context.Background()
	want := len(all[seedResource]) + 1
	p := runPod(t, st, "greedy", podManifest("greedy", map[string]int{seedResource: want}))
	var got *stack.Pod
	err := poll(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		var err error
		if got, err = st.KubeletPod(ctx, p.Name); err != nil {
			return err
		}
		if got.Status.Phase != "Failed" {
			return fmt.Errorf("pod %s phase %q reason %q, want Failed", p.Name, got.Status.Phase, got.Status.Reason)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a pod asking for %d of %s was not rejected: %v", want, seedResource, err)
	}
	timing("6-too-many-devices", "rejected_ms", time.Since(p.written))
	if r := got.Status.Reason; r != "UnexpectedAdmissionError" && !strings.HasPrefix(r, "OutOf") {
		t.Errorf("pod %s rejected with reason %q (%s), want UnexpectedAdmissionError or OutOf...", p.Name, r, got.Status.Message)
	}
	logf("pod %s rejected: %s: %s", p.Name, got.Status.Reason, got.Status.Message)
	if sbs, err := st.Sandboxes(ctx, p.Name); err != nil || len(sbs) != 0 {
		t.Errorf("rejected pod %s has sandboxes %v (err %v), want none", p.Name, sbs, err)
	}
	for _, n := range []string{l.Seed, l.Net1, l.Net2, l.Veth, l.Peer, l.IPAM0, l.IPAM1} {
		if !onHost(n) {
			t.Errorf("link %s left the host for a rejected pod", n)
		}
	}
	inUse(t, st, seedResource, nil)
	if err := waitAllocatable(ctx, st, all, 5*time.Second); err != nil {
		t.Errorf("allocatable changed: %v", err)
	}
}
