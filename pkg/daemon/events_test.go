package daemon

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/uevent"
)

// The daemon's scanner is the inventory, whose events keep it current.
var _ Incremental = (*inventory.Scanner)(nil)

// recServers and recSpecs remember what the loop last handed each pool's server and spec writer.
type recServers struct {
	lists   map[string][]server.Device
	updates int
}

func (r *recServers) Update(res config.Resource, devs []server.Device) error {
	r.lists[res.FullName()] = slices.Clone(devs)
	r.updates++
	return nil
}

func (r *recServers) Remove(res config.Resource) error {
	delete(r.lists, res.FullName())
	return nil
}

type recSpecs struct {
	specs  map[string]pool.Pool
	writes int
}

func (r *recSpecs) WritePool(p pool.Pool) error {
	r.specs[p.Resource.FullName()] = p
	r.writes++
	return nil
}

func (r *recSpecs) RemovePool(res config.Resource) error {
	delete(r.specs, res.FullName())
	return nil
}

func (r *recSpecs) Prune([]config.Resource) error { return nil }

// twin is a daemon outside Run, on a fixture tree, whose servers and specs are recorded.
type twin struct {
	d       *Daemon
	servers *recServers
	specs   *recSpecs
	scanner *inventory.Scanner
}

func newTwin(t testing.TB, root, cfgPath string, ledger *allocation.Ledger) *twin {
	t.Helper()
	scanner, err := inventory.New(inventory.Options{SysfsRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	tw := &twin{servers: &recServers{lists: map[string][]server.Device{}}, specs: &recSpecs{specs: map[string]pool.Pool{}}, scanner: scanner}
	tw.d, err = New(Options{ConfigPath: cfgPath, Scanner: scanner, Specs: tw.specs, Servers: tw.servers, Ledger: ledger})
	if err != nil {
		t.Fatal(err)
	}
	if tw.d.cfg, err = tw.d.loadConfig(); err != nil {
		t.Fatal(err)
	}
	if err := tw.d.refresh("start"); err != nil {
		t.Fatal(err)
	}
	return tw
}

func pciUevent(action, addr string) uevent.Event {
	return uevent.Event{Action: action, DevPath: "/devices/pci0000:3a/0000:3a:00.0/" + addr, Subsystem: "pci",
		Vars: map[string]string{"PCI_SLOT_NAME": addr}}
}

// netdevEvent is the link event of a PCI function's netdev (a driver-backed link: no kind).
func netdevEvent(name string, index int, deleted bool) netdev.LinkEvent {
	return netdev.LinkEvent{Name: name, Index: index, Deleted: deleted,
		Link: netdev.Link{Index: index, Name: name, LinkType: "ether", Flags: unix.IFF_UP}}
}

// The incremental path is the full one, only cheaper: after every change and the events it
// brings, a daemon that applied the events hands its servers and spec writer exactly what a twin
// that rescanned and re-placed everything hands them, and keeps the same pooled devices and host
// names. The changes cover VFs unbound, bound, created and destroyed, a PF's carrier (its VFs
// follow), a VF netdev moved into a pod (the pool that chose it by name keeps it), a VF the
// kubelet holds destroyed under its pod (listed, gone, until released), and changes no event
// announced, which the periodic rescan finds and applies alone.
func TestIncrementalMatchesFullApply(t *testing.T) {
	tr, err := pcitest.NewTree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := e810(4)(tr); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	cfg := configOf(
		`{"resourceName": "vf0_by_name", "resourcePrefix": "intel.com", "selectors": {"ifNames": ["ens1f0v0"]}}`,
		`{"resourceName": "sriov_vf", "resourcePrefix": "intel.com", "selectors": {"vendors": ["8086"], "devices": ["1889"]}}`)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ledger := allocation.New(time.Hour)
	inc := newTwin(t, tr.Root, cfgPath, ledger)
	full := newTwin(t, tr.Root, cfgPath, ledger)
	if inc.d.inc == nil {
		t.Fatal("the inventory scanner is not Incremental")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	funcDir := func(addr string) string {
		d, err := tr.FuncDir(addr)
		must(err)
		return d
	}
	vf := func(i int) string {
		a, err := tr.VFAddr("0000:3b:00.0", i)
		must(err)
		return a
	}
	steps := []struct {
		name string
		do   func() inventory.Events
	}{
		{"VF 1 unbound", func() inventory.Events {
			must(os.Remove(filepath.Join(funcDir(vf(1)), "driver")))
			return inventory.Events{Uevents: []uevent.Event{pciUevent("unbind", vf(1))}}
		}},
		{"VF 1 bound again", func() inventory.Events {
			must(os.Symlink(driverLink(t, funcDir(vf(0))), filepath.Join(funcDir(vf(1)), "driver")))
			return inventory.Events{Uevents: []uevent.Event{pciUevent("bind", vf(1))}}
		}},
		{"VF 4 created", func() inventory.Events {
			must(addVF(tr, 4))
			return inventory.Events{Uevents: []uevent.Event{pciUevent("add", vf(4)), pciUevent("bind", vf(4))}}
		}},
		{"PF carrier down: its VFs follow", func() inventory.Events {
			write(t, filepath.Join(funcDir("0000:3b:00.0"), "net/ens1f0/carrier"), "0")
			return inventory.Events{Links: []netdev.LinkEvent{netdevEvent("ens1f0", 2, false)}}
		}},
		{"VF 0's netdev into a pod", func() inventory.Events {
			must(os.RemoveAll(filepath.Join(funcDir(vf(0)), "net")))
			must(os.Remove(filepath.Join(tr.Root, "class/net/ens1f0v0")))
			return inventory.Events{Links: []netdev.LinkEvent{netdevEvent("ens1f0v0", 3, true)}}
		}},
		{"VF 2, held by a pod, destroyed", func() inventory.Events {
			ledger.Allocated("intel.com/sriov_vf", []string{vf(2)})
			must(os.Remove(filepath.Join(tr.Root, "bus/pci/devices", vf(2))))
			must(os.Remove(filepath.Join(funcDir("0000:3b:00.0"), "virtfn2")))
			return inventory.Events{Uevents: []uevent.Event{pciUevent("remove", vf(2))}}
		}},
		{"VF 3 destroyed, no pod holds it", func() inventory.Events {
			must(os.Remove(filepath.Join(tr.Root, "bus/pci/devices", vf(3))))
			must(os.Remove(filepath.Join(funcDir("0000:3b:00.0"), "virtfn3")))
			return inventory.Events{Uevents: []uevent.Event{pciUevent("remove", vf(3))}}
		}},
		{"PF carrier up", func() inventory.Events {
			write(t, filepath.Join(funcDir("0000:3b:00.0"), "net/ens1f0/carrier"), "1")
			return inventory.Events{Links: []netdev.LinkEvent{netdevEvent("ens1f0", 2, false)}}
		}},
		{"an event that changes nothing", func() inventory.Events {
			return inventory.Events{Uevents: []uevent.Event{pciUevent("change", vf(1))}}
		}},
		// No event: the next two are found by the rescan, which places only what it found.
		{"PF carrier down, unannounced", func() inventory.Events {
			write(t, filepath.Join(funcDir("0000:3b:00.0"), "net/ens1f0/carrier"), "0")
			return inventory.Events{}
		}},
		{"VF 1 unbound and VF 5 created, unannounced", func() inventory.Events {
			must(os.Remove(filepath.Join(funcDir(vf(1)), "driver")))
			must(addVF(tr, 5))
			return inventory.Events{}
		}},
	}
	for _, st := range steps {
		ev := st.do()
		reads := inc.scanner.Reads()
		if ev.Empty() {
			must(inc.d.rescan("missed", false))
			reads = inc.scanner.Reads() // a rescan reads everything
		} else {
			inc.d.onEvents(ev, eventSources{})
		}
		if r := inc.scanner.Reads() - reads; r > 2 {
			t.Errorf("%s: the events re-read %d functions", st.name, r)
		}
		must(full.d.refresh("full"))
		if !reflect.DeepEqual(inc.servers.lists, full.servers.lists) {
			t.Errorf("%s: servers got\n%+v\nfrom the events, and\n%+v\nfrom a full apply", st.name, inc.servers.lists, full.servers.lists)
		}
		if !reflect.DeepEqual(inc.specs.specs, full.specs.specs) {
			t.Errorf("%s: CDI specs from the events differ from a full apply's", st.name)
		}
		if !reflect.DeepEqual(inc.d.hostNames, full.d.hostNames) {
			t.Errorf("%s: host names %+v, full apply %+v", st.name, inc.d.hostNames, full.d.hostNames)
		}
		for id, p := range full.d.pooled {
			q, ok := inc.d.pooled[id]
			if !ok || q.resource != p.resource || q.gone != p.gone || !reflect.DeepEqual(q.dev, p.dev) {
				t.Errorf("%s: pooled %s = %+v, full apply %+v", st.name, id, q, p)
			}
		}
		if len(inc.d.pooled) != len(full.d.pooled) {
			t.Errorf("%s: %d pooled, full apply %d", st.name, len(inc.d.pooled), len(full.d.pooled))
		}
		// What both handed the servers is what computing every entry afresh gives: no cached
		// entry, nor kept device nodes and _INFO, is stale.
		for _, res := range inc.d.cfg.Resources {
			for _, sd := range inc.servers.lists[res.FullName()] {
				p := inc.d.pooled[sd.ID]
				byID := inc.d.pfLookup([]device.Device{p.dev}, map[string]bool{sd.ID: true})
				fresh := inc.d.serverDevice(&p.dev, &res, p.gone, byID, inc.d.inSpec[res.FullName()], nil)
				if !reflect.DeepEqual(fresh, sd) {
					t.Errorf("%s: %s handed %+v, afresh %+v", st.name, sd.ID, sd, fresh)
				}
			}
		}
	}
	// A config change (additionalInfo, which every _INFO holds): the pools placed again, nothing
	// kept from entries computed under the old config.
	cfg2 := configOf(
		`{"resourceName": "vf0_by_name", "resourcePrefix": "intel.com", "selectors": {"ifNames": ["ens1f0v0"]}}`,
		`{"resourceName": "sriov_vf", "resourcePrefix": "intel.com", "additionalInfo": {"*": {"k": "v"}}, "selectors": {"vendors": ["8086"], "devices": ["1889"]}}`)
	if err := os.WriteFile(cfgPath, []byte(cfg2), 0o644); err != nil {
		t.Fatal(err)
	}
	if !inc.d.reloadConfig() || !full.d.reloadConfig() {
		t.Fatal("the config change was not seen")
	}
	inc.d.apply(inc.d.inc.Devices()) // as Run does on a config change
	must(full.d.refresh("config"))
	if !reflect.DeepEqual(inc.servers.lists, full.servers.lists) {
		t.Errorf("config change: servers got\n%+v\nfrom the events' daemon, and\n%+v\nfrom a full rescan", inc.servers.lists, full.servers.lists)
	}
	for _, sd := range inc.servers.lists["intel.com/sriov_vf"] {
		if !strings.Contains(sd.Info, `"extra":{"k":"v"}`) {
			t.Errorf("config change: %s keeps the _INFO of the old config: %s", sd.ID, sd.Info)
		}
	}

	// Link-state changes write no spec: the PF's two carrier flips and the no-op cost no write
	// the full twin did not also skip; the events' daemon wrote at most as often.
	if inc.specs.writes > full.specs.writes {
		t.Errorf("the events wrote specs %d times, the full applies %d", inc.specs.writes, full.specs.writes)
	}
}

// missObserver is the harness's observer that also hears what rescans found the events missed.
type missObserver struct {
	*testObserver
	missed atomic.Int32
}

func (o *missObserver) EventsMissed(n int) { o.missed.Add(int32(n)) }

// feed is a stand-in event source the test writes to, as the kernel would.
type feed[E any] struct {
	mu sync.Mutex
	ch chan E
}

func (f *feed[E]) open(context.Context) (<-chan E, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ch = make(chan E, 64)
	return f.ch, nil
}

func (f *feed[E]) send(e E) {
	f.mu.Lock()
	ch := f.ch
	f.mu.Unlock()
	ch <- e
}

// One uevent for one VF re-reads that VF only and reaches ListAndWatch; a change no event
// announced is found by the periodic rescan, which counts it; lost events (the uevent socket
// overflowed) make a rescan at once.
func TestUeventsReachListAndWatch(t *testing.T) {
	requireNetns(t)
	const byID = "intel.com/sriov_vf"
	cfg := configOf(`{"resourceName": "sriov_vf", "resourcePrefix": "intel.com", "selectors": {"vendors": ["8086"], "devices": ["1889"]}}`)
	uevents := &feed[uevent.Event]{}
	var obs *missObserver
	h := newHarnessWith(t, harnessOpts{config: cfg, tree: e810(3), noLinks: true, rescan: time.Hour}, func(h *harness) {
		h.opts.Uevents = uevents.open
		obs = &missObserver{testObserver: h.obs}
		h.opts.Observer = obs
	})
	h.waitList(byID, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.1:Healthy[numa0] 0000:3b:01.2:Healthy[numa0]]")
	scanner := h.opts.Scanner.(*inventory.Scanner)
	vf0, err := h.tree.FuncDir("0000:3b:01.0")
	if err != nil {
		t.Fatal(err)
	}
	vf1, err := h.tree.FuncDir("0000:3b:01.1")
	if err != nil {
		t.Fatal(err)
	}

	reads, scans := scanner.Reads(), h.obs.scans.Load()
	if err := os.Remove(filepath.Join(vf1, "driver")); err != nil {
		t.Fatal(err)
	}
	uevents.send(pciUevent("unbind", "0000:3b:01.1"))
	h.waitList(byID, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.2:Healthy[numa0]]")
	if r := scanner.Reads() - reads; r != 1 {
		t.Errorf("one VF's uevent read %d functions, want 1", r)
	}
	waitFor(t, func() bool { return h.obs.scans.Load() == scans+1 })

	// A VF created: it and its PF are read.
	reads = scanner.Reads()
	if err := addVF(h.tree, 3); err != nil {
		t.Fatal(err)
	}
	uevents.send(pciUevent("add", "0000:3b:01.3"))
	h.waitList(byID, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.2:Healthy[numa0] 0000:3b:01.3:Healthy[numa0]]")
	if r := scanner.Reads() - reads; r != 2 {
		t.Errorf("a created VF's uevent read %d functions, want 2 (it and its PF)", r)
	}

	// Driver bound again, and no uevent: the periodic rescan finds it, and counts it missed.
	if err := os.Symlink(driverLink(t, vf0), filepath.Join(vf1, "driver")); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h.opts.RescanInterval = 100 * time.Millisecond
	h.start()
	h.waitList(byID, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.1:Healthy[numa0] 0000:3b:01.2:Healthy[numa0] 0000:3b:01.3:Healthy[numa0]]")
	if err := os.Remove(filepath.Join(vf1, "driver")); err != nil {
		t.Fatal(err)
	}
	h.waitList(byID, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.2:Healthy[numa0] 0000:3b:01.3:Healthy[numa0]]")
	waitFor(t, func() bool { return obs.missed.Load() >= 1 })

	// Lost events: a rescan at once, whatever the interval.
	h.stop()
	h.opts.RescanInterval = time.Hour
	h.start()
	h.waitList(byID, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.2:Healthy[numa0] 0000:3b:01.3:Healthy[numa0]]")
	missed := obs.missed.Load()
	if err := os.Symlink(driverLink(t, vf0), filepath.Join(vf1, "driver")); err != nil {
		t.Fatal(err)
	}
	uevents.send(uevent.Event{Overflow: true})
	h.waitList(byID, "[0000:3b:01.0:Healthy[numa0] 0000:3b:01.1:Healthy[numa0] 0000:3b:01.2:Healthy[numa0] 0000:3b:01.3:Healthy[numa0]]")
	if got := obs.missed.Load() - missed; got != 1 {
		t.Errorf("the rescan after lost events counted %d missed devices, want 1", got)
	}
}

// Reconciling (a dump of every link) happens only when a link carries our alias: the link the
// kernel returned from a dead pod, or a hook left half way. At start, before the first placement,
// when the first scan shows one; on a link event of such a link; at a rescan, when one is there.
func TestReconcileOnlyForOurLinks(t *testing.T) {
	requireNetns(t)
	links := &feed[netdev.LinkEvent]{}
	var reconciles atomic.Int32
	start := func(rescan time.Duration) *harness {
		return newHarnessWith(t, harnessOpts{config: configOf(softwarePool("netdevice", "ndrc*")), rescan: rescan}, func(h *harness) {
			h.opts.Links = links.open
			h.opts.ReconcileLinks = func() error { reconciles.Add(1); return nil }
		})
	}
	// A link with our alias, as a dead pod's namespace returns it: reconciled at start.
	back, _ := veth(t, "ndrcback", "ndrpback")
	if err := netlink.LinkSetAlias(back, "netdevice-plugin:ndrc0"); err != nil {
		t.Fatal(err)
	}
	h := start(100 * time.Millisecond)
	h.waitList(netdevice, "[ndrcback:Healthy]")
	if reconciles.Load() == 0 {
		t.Error("a link with our alias at start was not reconciled")
	}
	h.waitScans(3) // rescans while it is there reconcile too
	if n := reconciles.Load(); n < 2 {
		t.Errorf("%d reconciles with the link there through rescans, want more than the start's", n)
	}
	h.stop()
	if err := netlink.LinkDel(back); err != nil {
		t.Fatal(err)
	}

	reconciles.Store(0)
	h = start(100 * time.Millisecond)
	h.waitList(netdevice, "[]")
	h.waitScans(3)
	if n := reconciles.Load(); n != 0 {
		t.Errorf("no link with our alias, yet %d reconciles at start and rescans", n)
	}
	base := reconciles.Load()
	scans := h.obs.scans.Load()
	links.send(netdev.LinkEvent{Name: "ndrc9", Index: 999, Link: netdev.Link{Index: 999, Name: "ndrc9", Kind: "veth"}})
	waitFor(t, func() bool { return h.obs.scans.Load() > scans })
	if got := reconciles.Load() - base; got != 0 {
		t.Errorf("an ordinary link's event reconciled %d times", got)
	}
	alias := "netdevice-plugin:ndrc1"
	links.send(netdev.LinkEvent{Name: "net1", Index: 998, Alias: alias, Link: netdev.Link{Index: 998, Name: "net1", Kind: "veth", Alias: alias}})
	waitFor(t, func() bool { return reconciles.Load() > base })
}

// driverLink is the target of a function's driver link, to bind another function of the same
// folder to the same driver.
func driverLink(t *testing.T, funcDir string) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(funcDir, "driver"))
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// aliveObserver is the harness's observer that also hears the loop speak.
type aliveObserver struct {
	*testObserver
	alive atomic.Int32
}

func (o *aliveObserver) LoopAlive() { o.alive.Add(1) }

// The loop speaks once it starts and at every kubelet sync, with nothing to do: /healthz tells a
// stuck loop by its silence, since rescans are half an hour apart.
func TestLoopSpeaksAtEveryKubeletSync(t *testing.T) {
	var obs *aliveObserver
	h := newHarnessWith(t, harnessOpts{config: configOf(`{"resourceName": "links", "selectors": {"ifNames": ["ndlive*"]}}`),
		podResources: true, rescan: time.Hour}, func(h *harness) {
		obs = &aliveObserver{testObserver: h.obs}
		h.opts.Observer = obs
	})
	if h.opts.KubeletSync != 100*time.Millisecond {
		t.Fatalf("the harness syncs every %s, want 100ms", h.opts.KubeletSync)
	}
	waitFor(t, func() bool { return obs.alive.Load() >= 5 })
	if s := h.obs.scans.Load(); s > 1 {
		t.Errorf("%d scans while idle with a 1 h rescan, want 1 (the start's)", s)
	}
}
