package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	vnetns "github.com/vishvananda/netns"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma/rdmafake"
)

// The RDMA tests move real netdevs between real namespaces and RDMA devices through the recording
// fake (this kernel has no RDMA). Two kinds of function: RoCE, whose netdev (a veth here) is
// independent of its RDMA device, and IPoIB, whose netdev (an ifb here) the fake deletes and
// re-creates, fresh, in the host namespace at every move of the RDMA device, as the kernel does.

const rdmaPCI = "0000:3b:05.0"

// rdmaRig is a PCI function with one netdev and RDMA devices, and a host and a pod namespace.
type rdmaRig struct {
	host, pod      *netnstest.NS
	killPod        func() // Unshared pods only
	fake           *rdmafake.Fake
	hostID, podID  string
	dev            string // the netdev's host name
	home           netnstest.LinkState
	rdma           []rdma.Device
	opts           Options
	target         Target
	log            []string // the fake's calls ("rdma move ...") and the steps, in order
	recordedIndex0 int      // the netdev's ifindex when the rig was made
}

type rigKind struct {
	ipoib    bool
	rdmaDevs int  // 1 unless set
	unshared bool // the pod is an `unshare -n` process's namespace, which can die
}

func newRDMARig(t *testing.T, k rigKind) *rdmaRig {
	t.Helper()
	netnstest.RequireRoot(t)
	r := &rdmaRig{host: netnstest.New(t), fake: rdmafake.New()}
	if k.unshared {
		r.pod, r.killPod = netnstest.Unshared(t)
	} else {
		r.pod = netnstest.New(t)
	}
	var err error
	if r.hostID, err = rdmafake.ID(vnetnsOf(t, r.host)); err != nil {
		t.Fatal(err)
	}
	if r.podID, err = rdmafake.ID(vnetnsOf(t, r.pod)); err != nil {
		t.Fatal(err)
	}
	if k.ipoib {
		r.dev = r.host.Ifb(t)
		if err := r.host.H.LinkSetUp(r.host.Link(t, r.dev)); err != nil {
			t.Fatal(err)
		}
	} else {
		r.dev, _ = r.host.Veth(t)
	}
	r.home = prepare(t, r.host, r.dev, "10.79.1.1/24", "fd00:79::1/64")
	r.recordedIndex0 = r.host.Link(t, r.dev).Attrs().Index
	for _, err := range []error{r.fake.Label(r.hostID, "host"), r.fake.Label(r.podID, "pod")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	n := max(k.rdmaDevs, 1)
	for i := range n {
		d := rdma.Device{Index: uint32(10 + i), Name: fmt.Sprintf("mlx5_%d", 2+i), NodeGUID: fmt.Sprintf("0c42:a103:0065:6b%02x", i)}
		var ulp *rdmafake.ULP
		if k.ipoib && i == 0 {
			ulp = &rdmafake.ULP{Name: r.dev, Alias: Alias(r.dev, rdmaPCI), InitNS: r.host.Path}
		}
		if err := r.fake.Add(d, r.hostID, ulp); err != nil {
			t.Fatal(err)
		}
		r.rdma = append(r.rdma, d)
		r.opts.RDMADevices = append(r.opts.RDMADevices, d.Name)
	}
	r.opts = Options{PodIfName: "net1", HostNS: r.host.Path, LockDir: t.TempDir(), SysfsRoot: pciFixture(t, rdmaPCI, r.dev),
		RDMADevices: r.opts.RDMADevices, RDMA: r.fake}
	r.target = Target{PCIAddress: rdmaPCI}
	r.fake.OnCall = func(c rdmafake.Call) { r.log = append(r.log, "rdma "+c.String()) }
	stepHook = func(what string) { r.log = append(r.log, what) }
	t.Cleanup(func() { stepHook = nil })
	return r
}

// vnetnsOf opens a test namespace's handle for the fake's ID.
func vnetnsOf(t *testing.T, ns *netnstest.NS) vnetns.NsHandle {
	t.Helper()
	s, err := openSpace(ns.Path, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s.ns
}

// where says where the fake has the rig's RDMA device i, and under which name.
func (r *rdmaRig) where(t *testing.T, i int) (string, string) {
	t.Helper()
	ns, name, err := r.fake.Where(r.rdma[i].Index)
	if err != nil {
		t.Fatal(err)
	}
	return ns, name
}

// atHome checks that the netdev is on the host as it was, every RDMA device on the host under its
// name, the pod holds nothing of ours and the record is gone.
func (r *rdmaRig) atHome(t *testing.T, ctx string) {
	t.Helper()
	if !r.host.Has(r.dev) {
		t.Fatalf("%s: %s is not on the host; host has %v, pod has %v", ctx, r.dev, r.host.LinkNames(t), r.pod.LinkNames(t))
	}
	if got := r.host.State(t, r.dev); !got.Equal(r.home) {
		t.Fatalf("%s: %s home is %+v, want %+v", ctx, r.dev, got, r.home)
	}
	for i, d := range r.rdma {
		if ns, name := r.where(t, i); ns != "host" || name != d.Name {
			t.Fatalf("%s: RDMA device %s is in %s as %s, want on the host", ctx, d.Name, ns, name)
		}
	}
	if got := ours(t, r.pod); len(got) != 0 {
		t.Fatalf("%s: the pod keeps %v", ctx, got)
	}
	if got := netnstest.RecordFiles(t, r.opts.LockDir); len(got) != 0 {
		t.Fatalf("%s: the lock directory keeps %v", ctx, got)
	}
}

// inPod checks that the netdev is in the pod as net1 with our alias, its addresses and MTU, up; every
// RDMA device is in the pod under its name; the record is at rest.
func (r *rdmaRig) inPod(t *testing.T, ctx string) {
	t.Helper()
	if r.host.Has(r.dev) {
		t.Fatalf("%s: %s is still on the host", ctx, r.dev)
	}
	want := r.home
	want.Alias, want.Up = Alias(r.dev, rdmaPCI), true
	if !r.pod.Has("net1") {
		t.Fatalf("%s: no net1 in the pod; pod has %v", ctx, r.pod.LinkNames(t))
	}
	if got := r.pod.State(t, "net1"); !got.Equal(want) {
		t.Fatalf("%s: net1 in the pod is %+v, want %+v", ctx, got, want)
	}
	for i, d := range r.rdma {
		if ns, name := r.where(t, i); ns != "pod" || name != d.Name {
			t.Fatalf("%s: RDMA device %s is in %s as %s, want in the pod", ctx, d.Name, ns, name)
		}
	}
	rec := r.record(t)
	if rec == nil || rec.InFlight != "" || len(rec.RDMA) != len(r.rdma) {
		t.Fatalf("%s: record %+v, want one at rest listing the RDMA devices", ctx, rec)
	}
}

// invariant checks the rule: a netdev of ours in the pod has its RDMA devices there too.
func (r *rdmaRig) invariant(t *testing.T, ctx string) {
	t.Helper()
	if len(ours(t, r.pod)) == 0 {
		return
	}
	for i, d := range r.rdma {
		if ns, _ := r.where(t, i); ns != "pod" {
			t.Fatalf("%s: the netdev is in the pod, RDMA device %s in %s", ctx, d.Name, ns)
		}
	}
}

// record reads the device's record (nil: none).
func (r *rdmaRig) record(t *testing.T) *record {
	t.Helper()
	lock, err := lockDevice(r.opts.LockDir, r.target.lockKey())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.unlock()
	rec, err := lock.readRecord(r.target)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// ours lists the namespace's links carrying our alias.
func ours(t *testing.T, ns *netnstest.NS) []string {
	t.Helper()
	var names []string
	for _, name := range ns.LinkNames(t) {
		if _, _, ok := ParseAlias(ns.Link(t, name).Attrs().Alias); ok {
			names = append(names, name)
		}
	}
	return names
}

// indexOf is the position of the first log entry with that prefix at or after from, -1 if none.
func indexOf(log []string, prefix string, from int) int {
	for i := from; i < len(log); i++ {
		if strings.HasPrefix(log[i], prefix) {
			return i
		}
	}
	return -1
}

func TestRDMAOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind rigKind
	}{
		{"RoCE", rigKind{}},
		{"IPoIB: the RDMA move re-creates the netdev on the host", rigKind{ipoib: true}},
		{"two RDMA devices", rigKind{rdmaDevs: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRDMARig(t, tc.kind)
			names := rdmaNamesOf(r.rdma)
			for round := range 2 { // a container restart: the same again
				r.log = nil
				res, err := Attach(r.pod.Path, r.target, r.opts)
				if err != nil {
					t.Fatalf("round %d: Attach: %v", round, err)
				}
				if !slices.Equal(res.RDMA, names) || len(res.Moved) != 1 || res.Already {
					t.Errorf("round %d: Attach = %+v, want RDMA %v and one netdev moved", round, res, names)
				}
				r.inPod(t, "after attach")
				netdevMove := indexOf(r.log, "transfer: move", 0)
				for _, d := range r.rdma {
					i := slices.Index(r.log, "rdma move "+d.Name+" host->pod")
					if i < 0 || netdevMove < 0 || i > netdevMove {
						t.Errorf("round %d: attach moved %s at %d, the netdev at %d: want the RDMA device first; log %v", round, d.Name, i, netdevMove, r.log)
					}
				}
				if tc.kind.ipoib && r.pod.Link(t, "net1").Attrs().Index == r.recordedIndex0 && round == 0 {
					t.Errorf("the fake did not re-create the IPoIB netdev: the test proves nothing")
				}

				r.log = nil
				res, err = Attach(r.pod.Path, r.target, r.opts)
				if err != nil || !res.Already || len(res.RDMA) != 0 || len(res.Moved) != 0 {
					t.Errorf("round %d: second Attach = %+v, %v; want Already", round, res, err)
				}
				if got := strings.Join(r.log, "; "); got != "rdma list host; rdma list pod" {
					t.Errorf("round %d: second Attach did %q, want the two lists only", round, got)
				}

				r.log = nil
				res, err = Detach(r.pod.Path, r.target, r.opts)
				if err != nil {
					t.Fatalf("round %d: Detach: %v", round, err)
				}
				if !slices.Equal(res.RDMA, names) || len(res.Moved) != 1 {
					t.Errorf("round %d: Detach = %+v, want RDMA %v and one netdev moved", round, res, names)
				}
				r.atHome(t, "after detach")
				lastNetdevMove := -1
				for i := indexOf(r.log, "transfer: move", 0); i >= 0; i = indexOf(r.log, "transfer: move", i+1) {
					lastNetdevMove = i
				}
				for _, d := range r.rdma {
					i := slices.Index(r.log, "rdma move "+d.Name+" pod->host")
					if i < 0 || i < lastNetdevMove {
						t.Errorf("round %d: detach moved %s at %d, the netdev at %d: want the netdev first; log %v", round, d.Name, i, lastNetdevMove, r.log)
					}
				}

				r.log = nil
				res, err = Detach(r.pod.Path, r.target, r.opts)
				if err != nil || !res.Already {
					t.Errorf("round %d: second Detach = %+v, %v; want Already", round, res, err)
				}
				if indexOf(r.log, "rdma move", 0) >= 0 {
					t.Errorf("round %d: second Detach moved: %v", round, r.log)
				}
			}
		})
	}
}

func rdmaNamesOf(devs []rdma.Device) []string {
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	return names
}

// TestRDMAAttachRollsBack fails every call an attach makes of the fake in turn, then the netdev's
// set-up after the RDMA device moved, then that and the RDMA device's way back: whatever fails,
// everything is where it was, or (when undoing fails too) the error says both and the device stays
// in a state the next hook finishes.
func TestRDMAAttachRollsBack(t *testing.T) {
	for _, kind := range []rigKind{{}, {ipoib: true}, {rdmaDevs: 2}} {
		t.Run(fmt.Sprintf("ipoib=%v, %d RDMA devices", kind.ipoib, max(kind.rdmaDevs, 1)), func(t *testing.T) {
			r := newRDMARig(t, kind)
			if _, err := Attach(r.pod.Path, r.target, r.opts); err != nil {
				t.Fatal(err)
			}
			calls := r.fake.Calls()
			for i := 1; i <= len(calls); i++ {
				r := newRDMARig(t, kind)
				if err := r.fake.FailCalls(i); err != nil {
					t.Fatal(err)
				}
				_, err := Attach(r.pod.Path, r.target, r.opts)
				ctx := fmt.Sprintf("call %d (%s) fails", i, calls[i-1])
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("call %d", i)) {
					t.Fatalf("%s: Attach = %v", ctx, err)
				}
				r.atHome(t, ctx)
			}
		})
	}

	t.Run("the netdev fails in the pod after the RDMA move", func(t *testing.T) {
		for _, kind := range []rigKind{{}, {ipoib: true}} {
			r := newRDMARig(t, kind)
			r.pod.Exec(t, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1")
			_, err := Attach(r.pod.Path, r.target, r.opts)
			if err == nil || !strings.Contains(err.Error(), "fd00:79::1") {
				t.Fatalf("ipoib=%v: Attach = %v, want the IPv6 address's failure", kind.ipoib, err)
			}
			r.atHome(t, fmt.Sprintf("ipoib=%v: rolled back", kind.ipoib))
			if !slices.Contains(r.fake.Calls(), "move mlx5_2 pod->host") {
				t.Errorf("ipoib=%v: the RDMA device did not go back: %v", kind.ipoib, r.fake.Calls())
			}
		}
	})

	t.Run("the RDMA device's way back fails too", func(t *testing.T) {
		r := newRDMARig(t, rigKind{ipoib: true})
		r.pod.Exec(t, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1")
		if err := r.fake.FailCalls(4); err != nil { // list host, list pod, move in, move back
			t.Fatal(err)
		}
		_, err := Attach(r.pod.Path, r.target, r.opts)
		if err == nil || !strings.Contains(err.Error(), "fd00:79::1") || !strings.Contains(err.Error(), "move RDMA device mlx5_2 from the pod to the host namespace") {
			t.Fatalf("Attach = %v, want both failures named", err)
		}
		r.invariant(t, "after a failed rollback")
		if rec := r.record(t); rec == nil || rec.InFlight != inFlightAttach {
			t.Fatalf("record %+v, want the attach in flight", rec)
		}
		if _, err := Detach(r.pod.Path, r.target, r.opts); err != nil {
			t.Fatal(err)
		}
		r.atHome(t, "detach after the failed rollback")
	})
}

// TestRDMADetachFails fails every call a detach makes of the fake in turn: the device stays in a
// state of the chain (never its netdev in the pod with its RDMA device home), and the retry finishes.
func TestRDMADetachFails(t *testing.T) {
	for _, kind := range []rigKind{{}, {ipoib: true}} {
		t.Run(fmt.Sprintf("ipoib=%v", kind.ipoib), func(t *testing.T) {
			r := newRDMARig(t, kind)
			if _, err := Attach(r.pod.Path, r.target, r.opts); err != nil {
				t.Fatal(err)
			}
			before := len(r.fake.Calls())
			if _, err := Detach(r.pod.Path, r.target, r.opts); err != nil {
				t.Fatal(err)
			}
			calls := r.fake.Calls()[before:]
			for i := 1; i <= len(calls); i++ {
				r := newRDMARig(t, kind)
				if _, err := Attach(r.pod.Path, r.target, r.opts); err != nil {
					t.Fatal(err)
				}
				ctx := fmt.Sprintf("detach's call %d (%s) fails", i, calls[i-1])
				if err := r.fake.FailCalls(len(r.fake.Calls()) + i); err != nil {
					t.Fatal(err)
				}
				if _, err := Detach(r.pod.Path, r.target, r.opts); err == nil {
					t.Fatalf("%s: Detach succeeded", ctx)
				}
				r.invariant(t, ctx)
				if _, err := Detach(r.pod.Path, r.target, r.opts); err != nil {
					t.Fatalf("%s: the retry: %v", ctx, err)
				}
				r.atHome(t, ctx+", then the retry")
			}
		})
	}
}

// TestRDMAHalfDone starts from the states a killed hook leaves (made by stopping a hook at a step:
// a panic there ends it as a kill would, but for the deferred closes) and checks that each next hook
// finishes in the direction it is asked for.
func TestRDMAHalfDone(t *testing.T) {
	type half struct {
		op   string // the hook stopped
		step string // at the first step that starts with this
		nth  int    // ... or its nth
	}
	// The states of the chain (see rdmamove.go) a kill can leave; the hook's kill tests stop the
	// real binary at every step, these are the ones the order rests on.
	halves := []half{
		{"attach", "rdma: move", 1},    // record written, nothing moved: H, with a record
		{"attach", "attach: alias", 1}, // RDMA device in the pod, netdev on the host (IPoIB: re-created): M
		{"detach", "rdma: move", 1},    // netdev home, RDMA device in the pod: M, from the other side
		{"detach", "addr: add", 3},     // RDMA device home, the netdev (IPoIB: re-created) half settled
	}
	for _, kind := range []rigKind{{}, {ipoib: true}} {
		for _, h := range halves {
			for _, next := range []string{"attach", "detach", "reconcile"} {
				name := fmt.Sprintf("ipoib=%v/%s stopped at %s #%d, then %s", kind.ipoib, h.op, h.step, h.nth, next)
				t.Run(name, func(t *testing.T) {
					r := newRDMARig(t, kind)
					op := func(op string) (Result, error) {
						if op == "attach" {
							return Attach(r.pod.Path, r.target, r.opts)
						}
						return Detach(r.pod.Path, r.target, r.opts)
					}
					if h.op == "detach" {
						if _, err := op("attach"); err != nil {
							t.Fatal(err)
						}
					}
					if !stopAt(t, h.step, h.nth, func() { _, _ = op(h.op) }) {
						t.Skipf("%s never reaches %s #%d here", h.op, h.step, h.nth)
					}
					r.invariant(t, "stopped")
					switch next {
					case "reconcile":
						if _, err := ReconcileReturned(r.opts); err != nil {
							t.Fatalf("ReconcileReturned: %v", err)
						}
						r.invariant(t, "reconciled")
						if _, err := op(h.op); err != nil {
							t.Fatalf("%s after reconcile: %v", h.op, err)
						}
						next = h.op
					default:
						if _, err := op(next); err != nil {
							t.Fatalf("%s: %v", next, err)
						}
					}
					if next == "attach" {
						r.inPod(t, "finished")
					} else {
						r.atHome(t, "finished")
					}
				})
			}
		}
	}
}

// stopped is what stopAt's step hook panics with.
type stopped struct{}

// stopAt runs f with the step hook ending it at the nth step starting with prefix; it reports
// whether f got there.
func stopAt(t *testing.T, prefix string, nth int, f func()) (hit bool) {
	t.Helper()
	prev := stepHook
	defer func() { stepHook = prev }()
	n := 0
	stepHook = func(what string) {
		if prev != nil {
			prev(what)
		}
		if strings.HasPrefix(what, prefix) {
			if n++; n == nth {
				panic(stopped{})
			}
		}
	}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopped); !ok {
				panic(v)
			}
			hit = true
		}
	}()
	f()
	return false
}

// TestRDMANamespaceGone: the pod's namespace dies with the device inside. The kernel hands the
// RDMA device back to the host (under "ibdev0" when its name is taken there), and the netdev: a
// physical one comes back under its pod-side name, an IPoIB one is re-created by the RDMA device's
// return. Detach after that, or the reconciler, completes everything; detach before the RDMA device
// is back succeeds and leaves the rest to the reconciler.
func TestRDMANamespaceGone(t *testing.T) {
	for _, kind := range []rigKind{{unshared: true}, {ipoib: true, unshared: true}} {
		for _, when := range []string{"detach after the return", "detach before the return, then reconcile"} {
			t.Run(fmt.Sprintf("ipoib=%v, %s", kind.ipoib, when), func(t *testing.T) {
				r := newRDMARig(t, kind)
				if _, err := Attach(r.pod.Path, r.target, r.opts); err != nil {
					t.Fatal(err)
				}
				podNS := vnetnsOf(t, r.pod) // keeps the namespace for the staging below
				r.killPod()
				returnNetdev := func() {
					if !kind.ipoib { // a physical netdev comes back under its pod-side name
						if err := r.pod.H.LinkSetNsFd(r.pod.Link(t, "net1"), r.host.FD()); err != nil {
							t.Fatal(err)
						}
					}
				}
				returnRDMA := func(rename bool) {
					if err := r.fake.KernelReturn(podNS, r.hostID); err != nil {
						t.Fatal(err)
					}
					if rename {
						if err := r.fake.RenameByHand(r.rdma[0].Index, "ibdev0"); err != nil {
							t.Fatal(err)
						}
					}
				}
				if when == "detach after the return" {
					returnNetdev()
					returnRDMA(false)
					res, err := Detach(r.pod.Path, r.target, r.opts)
					if err != nil || !res.NamespaceGone {
						t.Fatalf("Detach = %+v, %v; want NamespaceGone", res, err)
					}
					r.atHome(t, "detach")
					return
				}
				returnNetdev()
				res, err := Detach(r.pod.Path, r.target, r.opts)
				if err != nil || !res.NamespaceGone {
					t.Fatalf("Detach = %+v, %v; want NamespaceGone", res, err)
				}
				if rec := r.record(t); rec == nil || !rec.hasRDMA() {
					t.Fatalf("the record %+v is gone before the RDMA device is back", rec)
				}
				returnRDMA(true)
				// An RDMA device no record lists is never touched, whatever its name.
				stranger := rdma.Device{Index: 30, Name: "ibdev7", NodeGUID: "0c42:a103:0065:6bff"}
				if err := r.fake.Add(stranger, r.hostID, nil); err != nil {
					t.Fatal(err)
				}
				back, err := ReconcileReturned(r.opts)
				if err != nil {
					t.Fatalf("ReconcileReturned: %v", err)
				}
				if !slices.Contains(back, Returned{From: "ibdev0", To: "mlx5_2", PCIAddress: rdmaPCI, RDMA: true}) {
					t.Errorf("ReconcileReturned = %+v, want mlx5_2 renamed back from ibdev0", back)
				}
				r.atHome(t, "reconciled")
				if ns, name, _ := r.fake.Where(30); ns != "host" || name != "ibdev7" {
					t.Errorf("the stranger is in %s as %s", ns, name)
				}
				for _, c := range r.fake.Calls() {
					if strings.Contains(c, "ibdev7") {
						t.Errorf("the reconciler called %q on an RDMA device it has no record of", c)
					}
				}
			})
		}
	}
}

// TestReconcileLeavesRDMAInLivePods: a device at rest in a live pod, and one whose hook holds its
// lock, are not touched: the RDMA devices are only listed.
func TestReconcileLeavesRDMAInLivePods(t *testing.T) {
	r := newRDMARig(t, rigKind{ipoib: true})
	if _, err := Attach(r.pod.Path, r.target, r.opts); err != nil {
		t.Fatal(err)
	}
	before := len(r.fake.Calls())
	if _, err := ReconcileReturned(r.opts); err != nil {
		t.Fatal(err)
	}
	if got := r.fake.Calls()[before:]; !slices.Equal(got, []string{"list host"}) {
		t.Errorf("ReconcileReturned called %v, want one list", got)
	}
	r.inPod(t, "after reconcile")

	lock, err := lockDevice(r.opts.LockDir, r.target.lockKey())
	if err != nil {
		t.Fatal(err)
	}
	before = len(r.fake.Calls())
	if _, err := ReconcileReturned(r.opts); err != nil {
		t.Fatal(err)
	}
	lock.unlock()
	if got := r.fake.Calls()[before:]; len(got) != 0 {
		t.Errorf("ReconcileReturned called %v while a hook holds the lock", got)
	}
}

// TestRDMARefuses: an RDMA device in neither namespace, and an RDMA subsystem the kernel lacks (the
// real netlink on this machine), fail the attach before anything changes.
func TestRDMARefuses(t *testing.T) {
	r := newRDMARig(t, rigKind{})
	r.opts.RDMADevices = append(r.opts.RDMADevices, "mlx5_9")
	_, err := Attach(r.pod.Path, r.target, r.opts)
	if err == nil || !strings.Contains(err.Error(), "RDMA device mlx5_9 is in neither") {
		t.Errorf("Attach with an unknown RDMA device = %v", err)
	}
	r.atHome(t, "unknown RDMA device")

	if _, err := os.Stat("/sys/class/infiniband"); err == nil {
		t.Log("this kernel has RDMA: the no-RDMA case is not checked")
	} else {
		r.opts.RDMA = nil // the kernel's
		r.opts.RDMADevices = []string{"mlx5_2"}
		_, err = Attach(r.pod.Path, r.target, r.opts)
		if err == nil || !strings.Contains(err.Error(), "no RDMA subsystem") {
			t.Errorf("Attach through netlink on a kernel without RDMA = %v", err)
		}
		r.atHome(t, "no RDMA subsystem")
	}

	for _, bad := range [][]string{{"mlx5/2"}, {""}, {"mlx5_2", "mlx5_2"}, {strings.Repeat("m", 64)}} {
		r.opts.RDMADevices = bad
		if _, err := Attach(r.pod.Path, r.target, r.opts); err == nil {
			t.Errorf("Attach with RDMA devices %q succeeded", bad)
		}
	}
	r.atHome(t, "bad names")
}

// TestRecordRDMA: a record lists RDMA devices only when there are some (records of other devices stay
// as they were), reads back what was written, and refuses what no hook writes.
func TestRecordRDMA(t *testing.T) {
	dir := t.TempDir()
	target := Target{PCIAddress: rdmaPCI}
	lock, err := lockDevice(dir, target.lockKey())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.unlock()
	plain := newRecord(target, inFlightAttach, []linkFacts{{HostName: "ens1f0v2", MTU: 1500}})
	if err := lock.writeRecord(plain); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, lock.recordName()))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "rdma") {
		t.Errorf("a record without RDMA devices mentions them: %s", data)
	}
	withRDMA := plain.clone()
	withRDMA.RDMA = []rdmaFacts{{Name: "mlx5_2", Index: 3, NodeGUID: "0c42:a103:0065:6bd2"}, {Name: "smi1", Index: 4}}
	if err := lock.writeRecord(withRDMA); err != nil {
		t.Fatal(err)
	}
	got, err := lock.readRecord(target)
	if err != nil || !slices.Equal(got.RDMA, withRDMA.RDMA) {
		t.Fatalf("read back %+v, %v; want %+v", got, err, withRDMA.RDMA)
	}
	for name, rdmaJSON := range map[string]string{
		"bad name":       `[{"name":"mlx5/2","index":3}]`,
		"name twice":     `[{"name":"mlx5_2","index":3},{"name":"mlx5_2","index":4}]`,
		"index twice":    `[{"name":"mlx5_2","index":3},{"name":"mlx5_3","index":3}]`,
		"unknown field":  `[{"name":"mlx5_2","index":3,"where":"pod"}]`,
		"not a list":     `{"name":"mlx5_2"}`,
		"huge node GUID": `[{"name":"mlx5_2","index":3,"nodeGuid":"` + strings.Repeat("f", 65) + `"}]`,
	} {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal([]byte(rdmaJSON), &v); err != nil {
			t.Fatal(err)
		}
		m["rdma"] = v
		bad, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dir, lock.recordName()), bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := lock.readRecord(target); err == nil {
			t.Errorf("%s: a record with rdma %s was accepted", name, rdmaJSON)
		}
	}
}

// TestRDMARenamed: an RDMA device renamed in the pod (a pod with CAP_NET_ADMIN may) comes home
// under its host name; one the kernel handed back as "ibdev0" from a pod that died is given its name
// back by the next attach, into a new pod, before it moves.
func TestRDMARenamed(t *testing.T) {
	t.Run("in the pod", func(t *testing.T) {
		r := newRDMARig(t, rigKind{})
		if _, err := Attach(r.pod.Path, r.target, r.opts); err != nil {
			t.Fatal(err)
		}
		if err := r.fake.RenameByHand(r.rdma[0].Index, "podrdma0"); err != nil {
			t.Fatal(err)
		}
		if _, err := Detach(r.pod.Path, r.target, r.opts); err != nil {
			t.Fatal(err)
		}
		r.atHome(t, "detach")
		if !slices.Contains(r.fake.Calls(), "rename podrdma0 host mlx5_2") {
			t.Errorf("calls %v, want the rename on the host", r.fake.Calls())
		}
	})
	t.Run("returned as ibdev0, then attached to a new pod", func(t *testing.T) {
		r := newRDMARig(t, rigKind{unshared: true})
		if _, err := Attach(r.pod.Path, r.target, r.opts); err != nil {
			t.Fatal(err)
		}
		podNS := vnetnsOf(t, r.pod)
		r.killPod()
		if err := r.pod.H.LinkSetNsFd(r.pod.Link(t, "net1"), r.host.FD()); err != nil { // the kernel returns the netdev
			t.Fatal(err)
		}
		if err := r.fake.KernelReturn(podNS, r.hostID); err != nil {
			t.Fatal(err)
		}
		if err := r.fake.RenameByHand(r.rdma[0].Index, "ibdev0"); err != nil {
			t.Fatal(err)
		}
		r.pod = netnstest.New(t)
		var err error
		if r.podID, err = rdmafake.ID(vnetnsOf(t, r.pod)); err != nil {
			t.Fatal(err)
		}
		if err := r.fake.Label(r.podID, "pod"); err != nil {
			t.Fatal(err)
		}
		res, err := Attach(r.pod.Path, r.target, r.opts)
		if err != nil || !slices.Equal(res.RDMA, []string{"mlx5_2"}) {
			t.Fatalf("Attach = %+v, %v", res, err)
		}
		r.inPod(t, "attached to the new pod")
		if !slices.Contains(r.fake.Calls(), "rename ibdev0 host mlx5_2") {
			t.Errorf("calls %v, want ibdev0 renamed before the move", r.fake.Calls())
		}
	})
}
