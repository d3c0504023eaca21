package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma/rdmafake"
)

// The kill tests end the real hook binary with SIGKILL at every point of attach and detach, the way
// `kill -9`, the OOM killer or a runtime's hook timeout do, and check the invariant: whatever
// the point, the device is never lost nor doubled, and the next hook finishes the job: the link is
// on the host under its host name with what it had there (addresses, MTU, admin state, bridge,
// alias), or in the pod under its pod-side name with our alias, its addresses and MTU, up.
//
// Deterministic kills use the fault-injection build (faultBin), which kills itself at its Nth step;
// every step of a run is hit, followed by each kind of next hook: the same one again (the runtime's
// retry), the opposite one (a container torn down during its start, or restarted during its stop),
// the daemon's reconciler and then the retry. Double kills kill that retry too. Random-time kills
// send SIGKILL to the shipped binary after a random delay.

// killRig is one device (or PCI function) of a kill scenario and what its two settled states are.
type killRig struct {
	name           string
	host, pod      *netnstest.NS
	h              hook
	devs           []string
	pci            string
	sysfs          string   // the PCI function's sysfs fixture
	args           []string // the device arguments of both hooks
	attach, detach []byte   // OCI states
	home           map[string]netnstest.LinkState
	master         map[string]int // master index at home; 0: none
	podNames       []string       // the pod-side names, sorted
	hostLinks      []string       // the host's link names at home, sorted
	podLinks       []string       // the pod's own link names, sorted
	// RDMA scenarios: the function's RDMA devices, which only the fake has (this kernel has no
	// RDMA), its state file, shared by every hook process and the test. Every hook of such a
	// scenario is the fault-injection build, the only one that can be given the fake.
	rdma     []rdma.Device
	rdmaFile string
	// noRandom: random-time kills do not fit the scenario (they could land inside one of the fake's
	// calls that stands for one atomic kernel operation but makes several, as IPoIB's re-creation does).
	noRandom bool
}

// pciSysfs is a sysfs root where the PCI function pci lists devs as its netdevs.
func pciSysfs(t *testing.T, pci string, devs ...string) string {
	t.Helper()
	sysfs := t.TempDir()
	real := filepath.Join(sysfs, "devices", "pci0000:3a", pci)
	for _, dev := range devs {
		if err := os.MkdirAll(filepath.Join(real, "net", dev), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(sysfs, "bus", "pci", "devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(sysfs, "bus", "pci", "devices", pci)); err != nil {
		t.Fatal(err)
	}
	return sysfs
}

// withRDMA gives the rig's PCI function an RDMA device on the host, in a fake whose state is in a
// file; ipoib makes its netdev one the RDMA device's every move re-creates.
func (r *killRig) withRDMA(t *testing.T, d rdma.Device, ipoib bool) {
	t.Helper()
	hostID, err := rdmafake.IDOf(r.host.Path)
	if err != nil {
		t.Fatal(err)
	}
	podID, err := rdmafake.IDOf(r.pod.Path)
	if err != nil {
		t.Fatal(err)
	}
	var ulp *rdmafake.ULP
	if ipoib {
		ulp = &rdmafake.ULP{Name: r.devs[0], Alias: netns.Alias(r.devs[0], r.pci), InitNS: r.host.Path}
	}
	r.rdmaFile = filepath.Join(t.TempDir(), "rdma.json")
	f, err := rdmafake.Create(r.rdmaFile, rdmafake.State{Labels: map[string]string{hostID: "host", podID: "pod"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Add(d, hostID, ulp); err != nil {
		t.Fatal(err)
	}
	r.rdma = append(r.rdma, d)
	r.args = append(r.args, "--rdma-device", d.Name)
}

// rdmaAt checks that every RDMA device of the rig is in the namespace labelled ns, under its name.
func (r *killRig) rdmaAt(t *testing.T, ns, ctx string) {
	t.Helper()
	for _, d := range r.rdma {
		got, name, err := rdmafake.Open(r.rdmaFile).Where(d.Index)
		if err != nil {
			t.Fatal(err)
		}
		if got != ns || name != d.Name {
			t.Fatalf("%s: RDMA device %s is in %s as %s, want in %s", ctx, d.Name, got, name, ns)
		}
	}
}

// ipoibDevice is device's IPoIB stand-in: an ifb (no peer: the fake re-creates it alone) with the
// same addresses and MTU, up.
func ipoibDevice(t *testing.T, ns *netnstest.NS, n int) string {
	t.Helper()
	dev := ns.Ifb(t)
	if err := ns.H.LinkSetMTU(ns.Link(t, dev), 1400); err != nil {
		t.Fatal(err)
	}
	if err := ns.H.LinkSetUp(ns.Link(t, dev)); err != nil {
		t.Fatal(err)
	}
	ns.AddAddr(t, dev, fmt.Sprintf("198.18.%d.1/24", n))
	ns.AddAddr(t, dev, fmt.Sprintf("fdb5:1e6f:7d2a:%x::1/64", n))
	return dev
}

// killScenarios are the devices the kill tests move: a plain veth renamed net1; a bridge port, admin
// down, with an alias, whose names are taken in the pod, so that both directions rename it on the
// host side (item 3 of the issue); a PCI function with two netdevs.
func killScenarios() []struct {
	name  string
	setup func(t *testing.T, r *killRig)
} {
	return []struct {
		name  string
		setup func(t *testing.T, r *killRig)
	}{
		{name: "veth", setup: func(t *testing.T, r *killRig) {
			dev, _ := device(t, r.host, 1)
			r.devs, r.podNames = []string{dev}, []string{"net1"}
			r.args = []string{"--host-ifname", dev, "--pod-ifname", "net1"}
		}},
		{name: "bridge port, travel names", setup: func(t *testing.T, r *killRig) {
			dev, _ := device(t, r.host, 2)
			br := r.host.Bridge(t)
			r.host.Exec(t, "ip", "link", "set", dev, "master", br)
			r.host.Exec(t, "ip", "link", "set", dev, "down", "alias", "rack 3 uplink")
			for _, name := range []string{dev, "net1"} { // taken in the pod
				if err := r.pod.H.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
					t.Fatal(err)
				}
			}
			r.devs, r.podNames = []string{dev}, []string{"net2"}
			r.args = []string{"--host-ifname", dev, "--pod-ifname", "net1", "--allow-upper-devices"}
		}},
		{name: "PCI function with two netdevs", setup: func(t *testing.T, r *killRig) {
			a, _ := device(t, r.host, 3)
			b, _ := device(t, r.host, 4)
			r.pci = "0000:3b:02.0"
			r.sysfs = pciSysfs(t, r.pci, a, b)
			r.devs, r.podNames = []string{a, b}, []string{"net1", "net2"}
			r.args = []string{"--pci-address", r.pci, "--sysfs-root", r.sysfs, "--pod-ifname", "net1"}
		}},
		{name: "RoCE function: RDMA device in first, home last", setup: func(t *testing.T, r *killRig) {
			dev, _ := device(t, r.host, 5)
			r.pci = "0000:3b:03.0"
			r.sysfs = pciSysfs(t, r.pci, dev)
			r.devs, r.podNames = []string{dev}, []string{"net1"}
			r.args = []string{"--pci-address", r.pci, "--sysfs-root", r.sysfs, "--pod-ifname", "net1"}
			r.withRDMA(t, rdma.Device{Index: 12, Name: "mlx5_4", NodeGUID: "0c42:a103:0065:6b04"}, false)
		}},
		{name: "IPoIB function: every RDMA move re-creates the netdev on the host", setup: func(t *testing.T, r *killRig) {
			dev := ipoibDevice(t, r.host, 6)
			r.pci = "0000:3b:04.0"
			r.sysfs = pciSysfs(t, r.pci, dev)
			r.devs, r.podNames = []string{dev}, []string{"net1"}
			r.args = []string{"--pci-address", r.pci, "--sysfs-root", r.sysfs, "--pod-ifname", "net1"}
			r.withRDMA(t, rdma.Device{Index: 13, Name: "mlx5_5", NodeGUID: "0c42:a103:0065:6b05"}, true)
			r.noRandom = true
		}},
	}
}

func newKillRig(t *testing.T, name string, setup func(*testing.T, *killRig)) *killRig {
	t.Helper()
	r := &killRig{name: name, host: netnstest.New(t), pod: netnstest.New(t)}
	r.h = hook{host: r.host, lockDir: t.TempDir()}
	setup(t, r)
	b := bundle(t, r.pod.Path, true)
	r.attach, r.detach = state(t, specs.StateCreating, 4242, b), state(t, specs.StateStopped, 0, b)
	r.home, r.master = map[string]netnstest.LinkState{}, map[string]int{}
	for _, dev := range r.devs {
		r.home[dev] = r.host.State(t, dev)
		r.master[dev] = r.host.Link(t, dev).Attrs().MasterIndex
	}
	r.hostLinks, r.podLinks = sortedNames(t, r.host), sortedNames(t, r.pod)
	return r
}

func sortedNames(t *testing.T, ns *netnstest.NS) []string {
	names := ns.LinkNames(t)
	slices.Sort(names)
	return names
}

// killRun is how one run of a hook binary ended.
type killRun struct {
	code   int
	killed bool // by SIGKILL
	stderr string
}

// runBin runs a hook binary in the rig's host namespace with extra environment; kill, if not nil, is
// called with the started process.
func (r *killRig) runBin(t *testing.T, bin string, env []string, op string, kill func(*os.Process)) killRun {
	t.Helper()
	stdin := r.attach
	if op == "detach" {
		stdin = r.detach
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{"ip", "netns", "exec", r.host.Name, bin, op, "--lock-dir", r.h.lockDir}, r.args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	if r.rdmaFile != "" {
		cmd.Env = append(cmd.Env, "NETDEVICE_FAULT_RDMA="+r.rdmaFile)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if kill != nil {
		kill(cmd.Process)
	}
	err := cmd.Wait()
	run := killRun{stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		run.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			run.killed = true
		}
	} else if err != nil {
		t.Fatalf("run %v: %v", argv, err)
	}
	return run
}

// must runs the shipped hook and fails unless it succeeds silently, then checks where it left the
// device.
func (r *killRig) must(t *testing.T, op, ctx string) {
	t.Helper()
	if run := r.runBin(t, r.bin(), nil, op, nil); run.code != 0 || run.stderr != "" {
		t.Fatalf("%s: %s: exit %d, stderr %q", ctx, op, run.code, run.stderr)
	}
	if op == "attach" {
		r.inPod(t, ctx+": after attach")
	} else {
		r.atHome(t, ctx+": after detach")
	}
}

// bin is the hook the rig runs when it kills nothing: the shipped one, unless the scenario needs the
// RDMA fake.
func (r *killRig) bin() string {
	if r.rdmaFile != "" {
		return faultBin
	}
	return hookBin
}

// reconcile runs the daemon's reconciler on the rig's host.
func (r *killRig) reconcile(t *testing.T, ctx string) {
	t.Helper()
	o := netns.Options{HostNS: r.host.Path, LockDir: r.h.lockDir, SysfsRoot: r.sysfs}
	if r.rdmaFile != "" {
		o.RDMA = rdmafake.Open(r.rdmaFile)
	}
	if _, err := netns.ReconcileReturned(o); err != nil {
		t.Fatalf("%s: ReconcileReturned: %v", ctx, err)
	}
}

// atHome checks that the device is home, as it was, and nothing else changed: no stray link on
// either side, no record, no temporary file.
func (r *killRig) atHome(t *testing.T, ctx string) {
	t.Helper()
	for _, dev := range r.devs {
		if !r.host.Has(dev) {
			t.Fatalf("%s: %s is not on the host; host has %v, pod has %v", ctx, dev, r.host.LinkNames(t), r.pod.LinkNames(t))
		}
		if got := r.host.State(t, dev); !got.Equal(r.home[dev]) {
			t.Fatalf("%s: %s home is %+v, want %+v", ctx, dev, got, r.home[dev])
		}
		if m := r.host.Link(t, dev).Attrs().MasterIndex; m != r.master[dev] {
			t.Fatalf("%s: %s home has master %d, want %d", ctx, dev, m, r.master[dev])
		}
	}
	if got := sortedNames(t, r.host); !slices.Equal(got, r.hostLinks) {
		t.Fatalf("%s: host links %v, want %v", ctx, got, r.hostLinks)
	}
	if got := sortedNames(t, r.pod); !slices.Equal(got, r.podLinks) {
		t.Fatalf("%s: pod links %v, want %v", ctx, got, r.podLinks)
	}
	if got := netnstest.RecordFiles(t, r.h.lockDir); len(got) != 0 {
		t.Fatalf("%s: the lock directory keeps %v", ctx, got)
	}
	r.rdmaAt(t, "host", ctx)
}

// inPod checks that every link of the device is in the pod under a pod-side name, with our alias,
// its addresses and MTU, up; that the host lost nothing else; and that the record is at rest.
func (r *killRig) inPod(t *testing.T, ctx string) {
	t.Helper()
	var names []string
	for _, dev := range r.devs {
		if r.host.Has(dev) {
			t.Fatalf("%s: %s is still on the host", ctx, dev)
		}
		want := r.home[dev]
		want.Alias, want.Up = netns.Alias(dev, r.pci), true
		found := ""
		for _, name := range r.pod.LinkNames(t) {
			if r.pod.Link(t, name).Attrs().Alias == want.Alias {
				found = name
			}
		}
		if found == "" {
			t.Fatalf("%s: %s is not in the pod; host has %v, pod has %v", ctx, dev, r.host.LinkNames(t), r.pod.LinkNames(t))
		}
		if got := r.pod.State(t, found); !got.Equal(want) {
			t.Fatalf("%s: %s in the pod as %s is %+v, want %+v", ctx, dev, found, got, want)
		}
		names = append(names, found)
	}
	slices.Sort(names)
	if !slices.Equal(names, r.podNames) {
		t.Fatalf("%s: pod-side names %v, want %v", ctx, names, r.podNames)
	}
	var hostWant []string
	for _, n := range r.hostLinks {
		if !slices.Contains(r.devs, n) {
			hostWant = append(hostWant, n)
		}
	}
	if got := sortedNames(t, r.host); !slices.Equal(got, hostWant) {
		t.Fatalf("%s: host links %v, want %v", ctx, got, hostWant)
	}
	if got := netnstest.RecordFiles(t, r.h.lockDir); os.Getenv("NETDEVICE_HOOK_TEST_BIN") == "" && (len(got) != 1 || !strings.HasSuffix(got[0], ".json")) {
		t.Fatalf("%s: the lock directory holds %v, want the record alone", ctx, got)
	}
	r.rdmaAt(t, "pod", ctx)
}

// noneLost checks, right after a kill, that every link of the device is somewhere exactly once: on
// the host (by our alias, under whatever name, or by its host name) or in the pod (by our alias).
func (r *killRig) noneLost(t *testing.T, ctx string) {
	t.Helper()
	for _, dev := range r.devs {
		alias := netns.Alias(dev, r.pci)
		n := 0
		for _, ns := range []*netnstest.NS{r.host, r.pod} {
			for _, name := range ns.LinkNames(t) {
				if a := ns.Link(t, name).Attrs().Alias; a == alias || ns == r.host && name == dev {
					n++
				}
			}
		}
		if n != 1 {
			t.Fatalf("%s: %s is there %d times; host has %v, pod has %v", ctx, dev, n, r.host.LinkNames(t), r.pod.LinkNames(t))
		}
	}
	// The rule: never a netdev in the pod with its RDMA device on the host.
	if len(r.rdma) > 0 && len(ours(t, r.pod)) > 0 {
		r.rdmaAt(t, "pod", ctx+": a netdev is in the pod")
	}
}

// steps counts the fault-injection steps of one op from its start state.
func (r *killRig) steps(t *testing.T, op string) []string {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "trace")
	if run := r.runBin(t, faultBin, []string{"NETDEVICE_FAULT_TRACE=" + trace}, op, nil); run.code != 0 {
		t.Fatalf("traced %s: exit %d, %q", op, run.code, run.stderr)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func opposite(op string) string {
	if op == "attach" {
		return "detach"
	}
	return "attach"
}

// killTally counts kills per op for the summary; rdma counts the kills at RDMA steps ("rdma: ...").
type killTally struct {
	killed, completed, rdma int
}

// TestHookKilledAtEveryStep kills the hook at every step of attach and of detach, for every kill
// scenario, and checks that each kind of next hook finishes the job. With -short only the retry
// follows each kill.
func TestHookKilledAtEveryStep(t *testing.T) {
	netnstest.RequireRoot(t)
	var mu sync.Mutex // the scenarios run in parallel: their time is mostly the kernel's RCU waits
	tally := map[string]*killTally{"attach": {}, "detach": {}}
	t.Cleanup(func() { // after the parallel subtests
		for _, op := range []string{"attach", "detach"} {
			t.Logf("deterministic kills during %s: %d killed (%d of them at RDMA steps), all finished by the next hook; %d runs ended before their step",
				op, tally[op].killed, tally[op].rdma, tally[op].completed)
		}
	})
	for i, sc := range killScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(11, uint64(i)))
			r := newKillRig(t, sc.name, sc.setup)
			for _, op := range []string{"attach", "detach"} {
				toStart := func() {
					if op == "attach" {
						r.must(t, "detach", "back to the start")
					} else {
						r.must(t, "attach", "back to the start")
					}
				}
				toStart()
				steps := r.steps(t, op)
				if op == "attach" {
					r.inPod(t, "traced attach")
				} else {
					r.atHome(t, "traced detach")
				}
				kill := func(at int) killRun {
					run := r.runBin(t, faultBin, []string{"NETDEVICE_FAULT_KILL_AT=" + strconv.Itoa(at)}, op, nil)
					mu.Lock()
					defer mu.Unlock()
					if run.killed {
						tally[op].killed++
						if at <= len(steps) && strings.Contains(steps[at-1], " rdma: ") {
							tally[op].rdma++
						}
					} else {
						tally[op].completed++
						t.Logf("%s with a kill at step %d ran to its end (exit %d): its path had fewer steps", op, at, run.code)
					}
					return run
				}
				nexts, doubles := []string{"retry", "opposite", "reconcile, retry"}, 4
				if testing.Short() {
					nexts, doubles = nexts[:1], 0
				}
				for at := 1; at <= len(steps); at++ {
					for _, next := range nexts {
						ctx := fmt.Sprintf("%s killed at step %d (%s), then %s", op, at, steps[at-1], next)
						toStart()
						if run := kill(at); !run.killed && (run.code != 0 || run.stderr != "") {
							t.Fatalf("%s: the hook failed instead: exit %d, %q", ctx, run.code, run.stderr)
						}
						r.noneLost(t, ctx)
						switch next {
						case "retry":
							r.must(t, op, ctx)
						case "opposite":
							r.must(t, opposite(op), ctx)
						default:
							r.reconcile(t, ctx)
							r.noneLost(t, ctx+", reconciled")
							r.must(t, op, ctx)
						}
					}
				}
				// Double kills: the retry is killed too, at a random step of its own.
				for range doubles {
					at, again := 1+rng.IntN(len(steps)), 1+rng.IntN(len(steps))
					ctx := fmt.Sprintf("%s killed at step %d, its retry at step %d", op, at, again)
					toStart()
					kill(at)
					r.noneLost(t, ctx)
					kill(again)
					r.noneLost(t, ctx)
					r.must(t, op, ctx)
				}
			}
		})
	}
}

// TestHookKilledAtRandomTimes sends SIGKILL to the shipped hook binary after a random delay within
// the time an attach or a detach takes, then runs the same hook again.
func TestHookKilledAtRandomTimes(t *testing.T) {
	netnstest.RequireRoot(t)
	rounds := 16
	if testing.Short() {
		rounds = 4
	}
	rng := rand.New(rand.NewPCG(7, 2))
	tally := map[string]*killTally{"attach": {}, "detach": {}}
	defer func() {
		for _, op := range []string{"attach", "detach"} {
			t.Logf("random-time kills during %s: %d killed, all finished by the retry; %d runs finished first", op, tally[op].killed, tally[op].completed)
		}
	}()
	for _, sc := range killScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			r := newKillRig(t, sc.name, sc.setup)
			if r.noRandom {
				t.Skip("random-time kills do not fit this scenario's fake")
			}
			for _, op := range []string{"attach", "detach"} {
				// How long the run takes, to spread the kills over it.
				if op == "detach" {
					r.must(t, "attach", "start")
				}
				start := time.Now()
				r.must(t, op, "timed "+op)
				took := time.Since(start)
				for i := range rounds {
					if op == "attach" {
						r.must(t, "detach", "back to the start")
					} else {
						r.must(t, "attach", "back to the start")
					}
					delay := time.Duration(rng.Int64N(int64(took + took/4)))
					run := r.runBin(t, r.bin(), nil, op, func(p *os.Process) {
						time.Sleep(delay)
						_ = p.Signal(syscall.SIGKILL)
					})
					ctx := fmt.Sprintf("%s killed after %v (run %d)", op, delay, i)
					if run.killed {
						tally[op].killed++
					} else {
						tally[op].completed++
						if run.code != 0 || run.stderr != "" {
							t.Fatalf("%s: the hook failed instead: exit %d, %q", ctx, run.code, run.stderr)
						}
					}
					r.noneLost(t, ctx)
					r.must(t, op, ctx)
				}
			}
		})
	}
}
