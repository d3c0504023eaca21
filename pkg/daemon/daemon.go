// Package daemon is the control loop of the node daemon: it scans the devices, places them in
// pools by the selector config, writes each pool's CDI spec, and hands the pools to their
// device-plugin servers; then it keeps all of that current on the kernel's events (links, default
// routes, uevents of PCI functions), on a periodic rescan, and when the config file changes. With
// an Incremental scanner an event re-reads only what it names and updates only the pools of the
// devices it changed; the rescan is the safety net, and counts what the events missed.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/health"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/internal/deepeq"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/podresources"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/uevent"
)

// Scanner finds the node's devices (inventory.Scanner).
type Scanner interface {
	Scan() ([]device.Device, error)
}

// SpecWriter keeps one CDI spec per pool (cdi.Writer).
type SpecWriter interface {
	WritePool(pool.Pool) error
	RemovePool(config.Resource) error
	Prune(keep []config.Resource) error
}

// Servers serves pools to the kubelet (server.Manager).
type Servers interface {
	Update(res config.Resource, devs []server.Device) error
	Remove(res config.Resource) error
}

// Observer hears what the loop does, for metrics and /healthz. Calls must not block.
type Observer interface {
	// ConfigLoaded reports a config load: applied with its warnings (err nil), or rejected.
	ConfigLoaded(path string, warnings []string, err error)
	Scanned(devices int, took time.Duration, err error)
}

// NopObserver ignores everything.
type NopObserver struct{}

// ConfigLoaded implements Observer.
func (NopObserver) ConfigLoaded(string, []string, error) {}

// Scanned implements Observer.
func (NopObserver) Scanned(int, time.Duration, error) {}

// Defaults of the timing options.
const (
	// DefaultRescanInterval is long: events keep an Incremental scanner's devices current, and the
	// rescan only catches what they missed (a lost event makes one at once). A rescan of an idle
	// 1,024-VF node costs 0.13-0.29 s of CPU with cold caches: every 10 minutes that alone was
	// most of the idle budget (0.02 CPU-s/min). /healthz does not wait for rescans: the loop
	// speaks at every kubelet sync (LoopObserver).
	DefaultRescanInterval = 30 * time.Minute
	DefaultCoalesce       = 100 * time.Millisecond
	DefaultKubeletSync    = 10 * time.Second
	DefaultDevRoot        = "/dev"
)

// Options wire the loop. ConfigPath, Scanner, Specs and Servers are required.
type Options struct {
	ConfigPath    string
	DefaultPrefix string // resource prefix of resources whose config names none
	StrictConfig  bool   // unknown and repeated keys reject the config instead of being warnings
	Scanner       Scanner
	Specs         SpecWriter
	Servers       Servers
	// Links streams link events of the host namespace (netdev.WatchLinks); nil: rescans only.
	Links func(ctx context.Context) (<-chan netdev.LinkEvent, error)
	// Uevents streams the host's device events (uevent.Watch with inventory.UeventSubsystems):
	// PCI functions added, removed, bound, unbound. nil: PCI changes wait for the rescan.
	Uevents func(ctx context.Context) (<-chan uevent.Event, error)
	// Routes streams default-route changes (netdev.WatchRoutes). nil: they wait for the rescan.
	Routes func(ctx context.Context) (<-chan netdev.RouteEvent, error)
	// ReconcileLinks gives links returned from dead pod namespaces their host names back
	// (netns.ReconcileReturned); run at start, before every rescan, and on the link events of
	// links that carry our alias (with a scanner that is not Incremental: on every link event).
	ReconcileLinks func() error
	RescanInterval time.Duration // periodic rescan, the safety net for missed events
	Coalesce       time.Duration // config folder events; and link events of a scanner that is not Incremental: the first rescans at once, the rest of a burst within this window once more
	Observer       Observer
	// StateFile keeps the pooled devices across restarts of the daemon (see savedState); "" keeps
	// nothing.
	StateFile string
	// Ledger keeps which devices the kubelet holds. The servers' Recorder (NewRecorder on the same
	// ledger) feeds it; nil makes a private one that hears only the kubelet.
	Ledger   *allocation.Ledger
	Recorder *Recorder // nil: NewRecorder(Ledger, nil)
	// Kubelet lists what the kubelet's containers hold (podresources.Client.Held); nil: the ledger
	// hears only Allocate and GetPreferredAllocation.
	Kubelet     func(ctx context.Context) (podresources.Held, error)
	KubeletSync time.Duration // how often Kubelet is asked
	// DevRoot is where the host's device nodes are (/dev): a needVhostNet device is unhealthy
	// while vhost-net or net/tun is missing there.
	DevRoot string
	// LeaseDir holds the IPAM leases the hooks took (ipam.LeasePath); the daemon releases (DEL) a
	// device's lease once no pod holds it. "" releases nothing.
	LeaseDir string
}

// Daemon is the loop. Its state is owned by the goroutine running Run.
type Daemon struct {
	opts Options
	inc  Incremental // opts.Scanner, when events keep it current; nil otherwise

	cfg        *config.Config
	cfgErr     string                  // last config error logged
	kubeletErr string                  // last error asking the kubelet, logged once
	kubeletOK  bool                    // the kubelet has answered in this run: its word decides releases
	hostNames  map[string]hostNames    // PCI address -> last host netdev names seen
	pooled     map[string]pooledDevice // ID -> last seen copy of every device in a pool
	written    map[string]specPrint    // full name -> the pool as its CDI spec was last written
	served     map[string]config.Resource
	lastScan   []device.Device // what the last successful scan found, to re-place after ledger changes (not kept with an Incremental scanner, which holds its devices)
	scanned    bool
	// savedState is the state file's content as last read or written, to skip unchanged writes.
	savedState []byte

	// Of each pool's CDI spec, besides written: the IDs it holds, and whether its last write failed.
	inSpec     map[string]map[string]bool
	specFailed map[string]bool
	// rescanFailed: the last rescan of an Incremental scanner failed, so the next places every
	// device (the scanner may have changed half way).
	rescanFailed bool
	// entriesCfg is the config the pooled devices' server entries were computed under.
	entriesCfg *config.Config
}

// pooledDevice is a device as it was last seen in a pool, and the pool.
type pooledDevice struct {
	dev      device.Device
	resource string
	gone     bool          // not on the host: kept while the kubelet holds it
	sdev     server.Device // what its server was last handed, when cached
	cached   bool
	reuse    bool // sdev's device nodes and _INFO are still this device's (it is as it was)
}

// carry keeps what can be kept of a device's old server entry: its device nodes and _INFO, when the
// device is in the same pool, unchanged, under the same config. The rest (health, in use, in the
// spec) is computed again.
func (p *pooledDevice) carry(old pooledDevice, sameCfg bool) {
	if sameCfg && old.cached && old.resource == p.resource && deepeq.Equal(&old.dev, &p.dev) {
		p.sdev, p.reuse = old.sdev, true
	}
}

// hostNames are the netdev names and link type a PCI function last had on the host, with its
// driver then.
type hostNames struct {
	names     []string
	linkType  string
	driver    string
	rdma      []string // RDMA devices
	rdmaChars []string // and their character devices
}

// New checks the options and returns a loop that Run starts.
func New(opts Options) (*Daemon, error) {
	switch {
	case opts.ConfigPath == "":
		return nil, errors.New("daemon: no config file")
	case opts.Scanner == nil, opts.Specs == nil, opts.Servers == nil:
		return nil, errors.New("daemon: scanner, spec writer and servers are required")
	}
	if opts.DefaultPrefix == "" {
		opts.DefaultPrefix = config.DefaultResourcePrefix
	}
	if opts.RescanInterval <= 0 {
		opts.RescanInterval = DefaultRescanInterval
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	if opts.Observer == nil {
		opts.Observer = NopObserver{}
	}
	if opts.Ledger == nil {
		opts.Ledger = allocation.New(0)
	}
	if opts.Recorder == nil {
		opts.Recorder = NewRecorder(opts.Ledger, nil)
	}
	if opts.KubeletSync <= 0 {
		opts.KubeletSync = DefaultKubeletSync
	}
	if opts.DevRoot == "" {
		opts.DevRoot = DefaultDevRoot
	}
	d := &Daemon{
		opts:      opts,
		hostNames: map[string]hostNames{},
		pooled:    map[string]pooledDevice{},
		written:   map[string]specPrint{},
		served:    map[string]config.Resource{},
	}
	d.inc, _ = opts.Scanner.(Incremental)
	d.inSpec, d.specFailed = map[string]map[string]bool{}, map[string]bool{}
	return d, nil
}

// Run loads the config, serves the pools and keeps them current until ctx ends. It fails only at
// start (no valid config, first scan failed); later errors are logged and the last good state
// kept. The servers are left running: their owner stops them.
func (d *Daemon) Run(ctx context.Context) error {
	// Watch before the first load and scan, so no change between them and the loop is missed.
	cfgEvents, stopCfg := d.watchConfig()
	defer stopCfg()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the event subscriptions
	links := d.watchLinks(ctx)
	uevents, routes := d.watchEvents(ctx)

	cfg, err := d.loadConfig()
	if err != nil {
		d.opts.Observer.ConfigLoaded(d.opts.ConfigPath, nil, err)
		return fmt.Errorf("load config: %w", err)
	}
	d.cfg = cfg
	klog.InfoS("Config loaded", "file", d.opts.ConfigPath, "pools", poolNames(cfg), "warnings", len(cfg.Warnings))
	logWarnings(cfg)
	d.opts.Observer.ConfigLoaded(d.opts.ConfigPath, cfg.Warnings, nil)
	d.loadState()
	d.syncKubelet(ctx) // before the first placement: what pods hold stays in its pool
	if d.inc == nil {
		d.reconcileLinks() // an Incremental scanner's first scan says whether it is needed
	}
	if err := d.refresh("start"); err != nil {
		return err
	}
	if err := d.opts.Specs.Prune(cfg.Resources); err != nil {
		klog.ErrorS(err, "Removing CDI specs of pools no longer configured failed")
	}
	d.releaseAllocations(ctx)
	for _, r := range cfg.Resources {
		d.opts.Recorder.removeStale(r.FullName(), device.IsPCIAddress)
	}
	// The start read and placed the whole node: its garbage goes now, so that the heap's next goal
	// is measured on what the daemon keeps, not on what the start left behind.
	debug.FreeOSMemory()

	d.alive()
	tick := time.NewTicker(d.opts.RescanInterval)
	defer tick.Stop()
	kubeletTick := time.NewTicker(d.opts.KubeletSync)
	defer kubeletTick.Stop()
	var linkTimer, cfgTimer <-chan time.Time
	linksDirty := false
	linkSeen := linkStates{}
	// coalesced is what a scanner that is not Incremental does on an event: the first is acted on
	// at once; the rest of its burst waits for the window to close and makes one more rescan.
	coalesced := func() {
		if linkTimer == nil {
			d.onLinkEvents()
			linkTimer = time.After(d.opts.Coalesce)
		} else {
			linksDirty = true
		}
	}
	sources := func() eventSources { return eventSources{links: links, uevents: uevents, routes: routes} }
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-links:
			if !ok {
				klog.InfoS("Link events ended; relying on the periodic rescan", "interval", d.opts.RescanInterval)
				links = nil
				continue
			}
			if d.inc != nil {
				d.onEvents(inventory.Events{Links: []netdev.LinkEvent{ev}}, sources())
				continue
			}
			if !linkSeen.changed(ev) {
				continue // same name, carrier and alias: an address or statistics update
			}
			klog.V(4).InfoS("Link event", "link", ev.Name, "deleted", ev.Deleted, "carrier", ev.Carrier)
			coalesced()
		case ev, ok := <-uevents:
			if !ok {
				klog.InfoS("Device events ended; relying on the periodic rescan", "interval", d.opts.RescanInterval)
				uevents = nil
				continue
			}
			if d.inc != nil {
				d.onEvents(inventory.Events{Uevents: []uevent.Event{ev}}, sources())
				continue
			}
			coalesced()
		case ev, ok := <-routes:
			if !ok {
				klog.InfoS("Route events ended; relying on the periodic rescan", "interval", d.opts.RescanInterval)
				routes = nil
				continue
			}
			if d.inc != nil {
				d.onEvents(inventory.Events{Routes: []netdev.RouteEvent{ev}}, sources())
				continue
			}
			coalesced()
		case <-linkTimer:
			linkTimer = nil
			if linksDirty {
				linksDirty = false
				d.onLinkEvents()
				linkTimer = time.After(d.opts.Coalesce)
			}
		case ev, ok := <-cfgEvents:
			if !ok {
				cfgEvents = nil
				continue
			}
			if !d.isConfigEvent(ev) {
				continue // another file in the folder (a log written beside the config, say)
			}
			klog.V(4).InfoS("Config folder event", "event", ev.String())
			if cfgTimer == nil {
				cfgTimer = time.After(d.opts.Coalesce)
			}
		case <-cfgTimer:
			cfgTimer = nil
			if !d.reloadConfig() {
				continue
			}
			if d.inc != nil && d.scanned {
				// The devices are what the events keep: place them again by the new config.
				d.apply(d.inc.Devices())
				d.saveState()
				continue
			}
			d.refreshLogged("config change")
		case <-tick.C:
			cfgChanged := d.reloadConfig()
			if d.inc != nil && d.scanned {
				if d.inc.AliasedLinks(netns.AliasPrefix) {
					d.reconcileLinks() // its renames come back as link events
				}
				d.rescanLogged("periodic rescan", cfgChanged)
				continue
			}
			d.reconcileLinks()
			d.refreshLogged("periodic rescan")
		case <-kubeletTick.C:
			d.syncKubelet(ctx)
			d.alive()
		case <-d.opts.Ledger.Changed():
			// An allocation, or a release: what is held decides which gone devices stay pooled.
			d.releaseAllocations(ctx)
			if d.scanned {
				d.apply(d.current())
			}
			d.saveState()
		}
	}
}

// current is every device as the last scan, and the events since, found them.
func (d *Daemon) current() []device.Device {
	if d.inc != nil {
		return d.inc.Devices()
	}
	return d.lastScan
}

func poolNames(cfg *config.Config) []string {
	out := make([]string, len(cfg.Resources))
	for i := range cfg.Resources {
		out[i] = cfg.Resources[i].FullName()
	}
	return out
}

// watchConfig watches the config file's folder: a ConfigMap update swaps the "..data" symlink
// there rather than writing the file.
func (d *Daemon) watchConfig() (<-chan fsnotify.Event, func()) {
	dir := filepath.Dir(d.opts.ConfigPath)
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(dir)
		if err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		klog.ErrorS(err, "Cannot watch the config folder; changes are picked up by the periodic rescan", "dir", dir, "interval", d.opts.RescanInterval)
		return nil, func() {}
	}
	go func() {
		for err := range w.Errors {
			klog.ErrorS(err, "Watching the config folder failed", "dir", dir)
		}
	}()
	return w.Events, func() { _ = w.Close() }
}

// isConfigEvent reports an event that can change what the config path reads: the file itself, or
// the "..data" link a ConfigMap volume swaps (and the timestamped folder it points to is created
// before the swap, so the swap is the event that matters).
func (d *Daemon) isConfigEvent(ev fsnotify.Event) bool {
	name := filepath.Base(ev.Name)
	return name == filepath.Base(d.opts.ConfigPath) || name == "..data"
}

func (d *Daemon) watchLinks(ctx context.Context) <-chan netdev.LinkEvent {
	if d.opts.Links == nil {
		return nil
	}
	ch, err := d.opts.Links(ctx)
	if err != nil {
		klog.ErrorS(err, "No link events; relying on the periodic rescan", "interval", d.opts.RescanInterval)
		return nil
	}
	return ch
}

func (d *Daemon) loadConfig() (*config.Config, error) {
	return config.LoadWith(d.opts.ConfigPath, config.Options{DefaultPrefix: d.opts.DefaultPrefix, Strict: d.opts.StrictConfig})
}

// logWarnings logs each problem sriov-dp would have ignored, once per load that brings it.
func logWarnings(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		klog.InfoS("Config warning", "warning", w)
	}
}

// reloadConfig loads the config file again and reports whether it changed. An invalid file is
// logged and counted once for as long as it stays the same (a folder can see many events, the
// rescan retries it every interval), and the current pools stay.
func (d *Daemon) reloadConfig() bool {
	cfg, err := d.loadConfig()
	if err != nil {
		if err.Error() != d.cfgErr {
			klog.ErrorS(err, "Config rejected; keeping the current pools", "file", d.opts.ConfigPath, "pools", poolNames(d.cfg))
			d.opts.Observer.ConfigLoaded(d.opts.ConfigPath, nil, err)
		}
		d.cfgErr = err.Error()
		return false
	}
	d.cfgErr = ""
	if reflect.DeepEqual(cfg, d.cfg) {
		return false
	}
	klog.InfoS("Config changed", "file", d.opts.ConfigPath, "pools", poolNames(cfg), "warnings", len(cfg.Warnings))
	if !slices.Equal(cfg.Warnings, d.cfg.Warnings) {
		logWarnings(cfg)
	}
	d.opts.Observer.ConfigLoaded(d.opts.ConfigPath, cfg.Warnings, nil)
	d.cfg = cfg
	return true
}

func (d *Daemon) reconcileLinks() {
	if d.opts.ReconcileLinks == nil {
		return
	}
	if err := d.opts.ReconcileLinks(); err != nil {
		klog.ErrorS(err, "Restoring host names of links back from pods failed")
	}
}

// linkStates remembers the last event per link index, to skip events that change nothing the
// pools depend on (the kernel sends RTM_NEWLINK for IPv6 address configuration and the like).
type linkStates map[int]netdev.LinkEvent

func (s linkStates) changed(ev netdev.LinkEvent) bool {
	if ev.Deleted {
		delete(s, ev.Index)
		return true
	}
	prev, ok := s[ev.Index]
	s[ev.Index] = ev
	return !ok || prev.Name != ev.Name || prev.Carrier != ev.Carrier || prev.Alias != ev.Alias || prev.Deleted != ev.Deleted
}

func (d *Daemon) onLinkEvents() {
	d.reconcileLinks()
	d.refreshLogged("link events")
}

func (d *Daemon) refreshLogged(why string) {
	if err := d.refresh(why); err != nil {
		klog.ErrorS(err, "Rescan failed; keeping the current pools", "trigger", why)
	}
}

// syncKubelet asks the kubelet which devices its pods hold and lets the ledger release the rest.
// Without an answer nothing is released: a kubelet that is restarting holds what it held.
func (d *Daemon) syncKubelet(ctx context.Context) {
	if d.opts.Kubelet == nil {
		return
	}
	held, err := d.opts.Kubelet(ctx)
	if err != nil {
		if err.Error() != d.kubeletErr {
			klog.ErrorS(err, "Cannot ask the kubelet which devices pods hold; releasing nothing until it answers")
			d.kubeletErr = err.Error()
		}
		return
	}
	if d.kubeletErr != "" {
		klog.InfoS("The kubelet answers again: releasing what no pod holds")
		d.kubeletErr = ""
	}
	d.kubeletOK = true
	d.opts.Ledger.Sync(held, poolNames(d.cfg))
	d.releaseLeases(ctx)
}

// releaseLeases releases (DEL) every IPAM lease of a device no pod holds: those whose release
// failed before, and those a reboot or a daemon that was down left. It runs only once the kubelet
// has answered in this run, so a daemon restarted without its state never releases the addresses
// of pods that still run.
func (d *Daemon) releaseLeases(ctx context.Context) {
	if d.opts.LeaseDir == "" || !d.kubeletOK {
		return
	}
	leases, err := ipam.Leases(d.opts.LeaseDir)
	if err != nil {
		klog.ErrorS(err, "Reading IPAM leases failed", "dir", d.opts.LeaseDir)
	}
	for _, l := range leases {
		if d.opts.Ledger.Holds(l.Pool, l.Device) {
			continue
		}
		d.releaseLease(ctx, l.Pool, l.Device)
	}
}

// releaseLease releases one device's IPAM lease, if it has one; a failure is logged and retried at
// the next kubelet sync.
func (d *Daemon) releaseLease(ctx context.Context, pool, device string) {
	if d.opts.LeaseDir == "" {
		return
	}
	l, err := ipam.Release(ctx, ipam.LeasePath(d.opts.LeaseDir, pool, device))
	switch {
	case err != nil:
		klog.ErrorS(err, "Releasing an IPAM lease failed; retried at the next kubelet sync", "pool", pool, "device", device)
	case l != nil:
		klog.InfoS("IPAM lease released", "pool", pool, "device", device, "sandbox", l.ContainerID)
	}
}

// releaseAllocations releases what came with the allocations the ledger let go (the
// device-information files, the IPAM leases), and logs them.
func (d *Daemon) releaseAllocations(ctx context.Context) {
	for _, k := range d.opts.Recorder.release(d.opts.Ledger.Released()) {
		klog.InfoS("Device no longer held by a pod", "pool", k.Resource, "device", k.ID)
		d.releaseLease(ctx, k.Resource, k.ID)
	}
}

// refresh scans and applies the result; with an Incremental scanner after its first scan, it is
// the rescan that also counts what the events missed.
func (d *Daemon) refresh(why string) error {
	if d.inc != nil && d.scanned {
		return d.rescan(why, true)
	}
	start := time.Now()
	devs, err := d.opts.Scanner.Scan()
	if err == nil && d.inc != nil && d.inc.AliasedLinks(netns.AliasPrefix) {
		// Links back from dead pods' namespaces: their host names first, then the placement.
		d.reconcileLinks()
		devs, err = d.opts.Scanner.Scan()
	}
	took := time.Since(start)
	d.opts.Observer.Scanned(len(devs), took, err)
	if err != nil {
		return fmt.Errorf("scan devices (%s): %w", why, err)
	}
	klog.V(4).InfoS("Scanned devices", "trigger", why, "devices", len(devs), "took", took)
	d.scanned = true
	if d.inc == nil {
		d.lastScan = devs
	}
	d.apply(devs)
	d.saveState()
	return nil
}

// apply places the scanned devices in the pools of the current config and brings specs and
// servers in line: specs first, so a device is never advertised before its CDI spec exists.
//
// A device that was in a pool and is not on the host now stays, as last seen, only while the
// kubelet holds it: a software link or VF netdev inside its pod (the pod's containers may restart
// and need it in the CDI spec), or a VF destroyed under its pod (listed unhealthy until the pod
// is gone). Anything else that left the host leaves its pool.
func (d *Daemon) apply(scan []device.Device) {
	present := make(map[string]bool, len(scan))
	inventory := make(map[string]*device.Device, len(scan))
	devs := scan // an Incremental scanner's list is made for the call
	if d.inc == nil {
		devs = make([]device.Device, len(scan), len(scan)+len(d.pooled))
		copy(devs, scan) // keepHostNames changes them; the scan stays as found (lastScan)
	}
	for i := range devs {
		dev := &devs[i]
		d.keepHostNames(dev)
		present[dev.ID] = true
		inventory[dev.ID] = dev
	}
	all := devs
	for id, p := range d.pooled {
		if present[id] {
			continue
		}
		if d.opts.Ledger.Holds(p.resource, id) {
			all = append(all, p.dev)
			continue
		}
		klog.InfoS("Device left its pool: not on the host, and no pod holds it", "pool", p.resource, "device", id)
	}
	result := pool.Assign(all, d.cfg)

	pooled := make(map[string]pooledDevice, len(d.pooled))
	keep := make(map[string]bool, len(result.Pools))
	sameCfg := d.entriesCfg == d.cfg
	for _, p := range result.Pools {
		name := p.Resource.FullName()
		keep[name] = true
		for _, dev := range p.Devices {
			pd := pooledDevice{dev: dev, resource: name, gone: !present[dev.ID]}
			pd.carry(d.pooled[dev.ID], sameCfg)
			pooled[dev.ID] = pd
		}
	}
	d.pooled = pooled
	d.entriesCfg = d.cfg
	d.pruneHostNames(present)
	for _, p := range result.Pools {
		d.syncPool(p, true, nil, inventory)
	}
	for name, res := range d.served {
		if keep[name] {
			continue
		}
		if err := d.opts.Servers.Remove(res); err != nil {
			klog.ErrorS(err, "Stopping the server of a removed pool failed", "pool", name)
		}
		if err := d.opts.Specs.RemovePool(res); err != nil {
			klog.ErrorS(err, "Removing the CDI spec of a removed pool failed", "pool", name)
		}
		delete(d.served, name)
		delete(d.written, name)
		delete(d.inSpec, name)
		delete(d.specFailed, name)
	}
	d.opts.Ledger.Forget(slices.Collect(maps.Keys(keep)))
}

// syncPool hands a pool's devices (sorted by ID, all in d.pooled) to its server, its CDI spec
// first: the spec is compared and written when writeSpec is set (or its last write failed), and
// the server entries of the devices in recompute (nil: all) are computed again, the others taken
// from what the server was last handed. byID holds at least the PFs of the VFs computed again.
func (d *Daemon) syncPool(p pool.Pool, writeSpec bool, recompute map[string]bool, byID map[string]*device.Device) {
	name := p.Resource.FullName()
	all := recompute == nil
	if _, known := d.inSpec[name]; writeSpec || d.specFailed[name] || !known {
		if d.writeSpec(p) || d.specFailed[name] {
			all = true // what the spec holds changed: every entry's CDI fact may have
		}
	}
	inSpec := d.inSpec[name]
	sdevs := make([]server.Device, len(p.Devices))
	for i := range p.Devices {
		dev := &p.Devices[i]
		pd := d.pooled[dev.ID]
		if all || recompute[dev.ID] || !pd.cached {
			var reuse *server.Device
			if pd.reuse {
				reuse = &pd.sdev
			}
			pd.sdev = d.serverDevice(dev, &p.Resource, pd.gone, byID, inSpec, reuse)
			pd.cached, pd.reuse = true, false
			d.pooled[dev.ID] = pd
		}
		sdevs[i] = pd.sdev
	}
	if err := d.opts.Servers.Update(p.Resource, sdevs); err != nil {
		klog.ErrorS(err, "Serving pool failed", "pool", name)
		return
	}
	d.served[name] = p.Resource
}

// pruneHostNames forgets the names of PCI functions that are neither on the host nor pooled, so
// the map does not grow with functions that come and go.
func (d *Daemon) pruneHostNames(present map[string]bool) {
	for addr := range d.hostNames {
		if _, pooled := d.pooled[addr]; !present[addr] && !pooled {
			delete(d.hostNames, addr)
		}
	}
}

// keepHostNames remembers a PCI function's netdev names and link type, and its RDMA devices, and
// gives them back to a function that shows none because they are inside a pod (sysfs lists only
// the host namespace's; in exclusive mode an RDMA device moves with the netdev), so selectors on
// interface names, link types and isRdma keep it in its pool and its hooks can bring them home. A
// function rebound to another driver lost them for real and gets nothing back.
func (d *Daemon) keepHostNames(dev *device.Device) {
	if !dev.IsPCI() || dev.Representor { // a representor shares its PF's address: not its names
		return
	}
	h, known := d.hostNames[dev.PCIAddress]
	if known && h.driver != dev.Driver {
		h, known = hostNames{}, false
	}
	h.driver = dev.Driver
	switch {
	case len(dev.IfNames) > 0:
		h.names, h.linkType = dev.IfNames, dev.LinkType
	case known && len(h.names) > 0:
		dev.IfNames, dev.IfName = h.names, h.names[0]
		dev.LinkType = h.linkType // a linkTypes selector keeps it too
	}
	switch {
	case len(dev.RDMADevices) > 0:
		h.rdma, h.rdmaChars = dev.RDMADevices, dev.RDMACharDevices
	case known && len(h.rdma) > 0:
		dev.RDMADevices, dev.RDMACharDevices, dev.RDMAAway = h.rdma, h.rdmaChars, true
	}
	if len(h.names) > 0 || len(h.rdma) > 0 {
		d.hostNames[dev.PCIAddress] = h
	}
}

// writeSpec writes the pool's CDI spec when what it depends on changed, records the IDs the spec
// on disk holds (d.inSpec), and reports whether it wrote it. Devices whose ID cannot be a CDI name
// are left out (their servers report them unhealthy), so an error here is a real write failure:
// the old spec stays and is retried.
func (d *Daemon) writeSpec(p pool.Pool) (written bool) {
	name := p.Resource.FullName()
	valid := make([]bool, len(p.Devices))
	n := 0
	for i := range p.Devices {
		if _, err := cdi.QualifiedName(&p.Resource, p.Devices[i].ID); err == nil {
			valid[i] = true
			n++
		}
	}
	var want pool.Pool // built only to write it
	print := specFingerprint(&p, valid, n)
	if old, ok := d.written[name]; ok && old == print {
		delete(d.specFailed, name)
	} else {
		want = pool.Pool{Resource: p.Resource, Devices: make([]device.Device, 0, n)}
		for i := range p.Devices {
			if valid[i] {
				want.Devices = append(want.Devices, specView(p.Devices[i]))
			}
		}
		if err := d.opts.Specs.WritePool(want); err != nil {
			klog.ErrorS(err, "Writing the CDI spec failed; new devices stay unhealthy until it succeeds", "pool", name)
			d.specFailed[name] = true
		} else {
			klog.V(2).InfoS("CDI spec written", "pool", name, "devices", len(want.Devices))
			d.written[name] = print
			delete(d.specFailed, name)
			written = true
		}
	}
	if _, ok := d.inSpec[name]; written || !ok {
		ids := map[string]bool{}
		if written {
			ids = make(map[string]bool, len(want.Devices))
			for i := range want.Devices {
				if cdi.InSpec(&want.Devices[i], &p.Resource) {
					ids[want.Devices[i].ID] = true
				}
			}
		}
		d.inSpec[name] = ids
	}
	return written
}

// serverDevice turns a pooled device into what its server needs, deciding health, device nodes and
// the _INFO entry now so that the kubelet's calls do no I/O.
// reuse, when set, is the device's last entry, whose device nodes and _INFO still hold.
func (d *Daemon) serverDevice(dev *device.Device, res *config.Resource, gone bool, inventory map[string]*device.Device, inSpec map[string]bool, reuse *server.Device) server.Device {
	sd := server.Device{
		ID:           dev.ID,
		Gone:         gone,
		InUse:        d.opts.Ledger.Holds(res.FullName(), dev.ID),
		NUMANode:     dev.NUMANode,
		PCIAddress:   dev.PCIAddress,
		PFPCIAddress: dev.PFPCIAddress,
		CDI:          inSpec[dev.ID],
	}
	if reuse != nil {
		sd.Nodes, sd.Info = reuse.Nodes, reuse.Info
	} else {
		sd.Nodes, sd.Info = dev.Nodes(d.opts.DevRoot), server.Info(dev, res)
	}
	if dev.RDMA {
		sd.RDMADevices = dev.RDMADevices
	}
	if !gone {
		sd.Problem = health.Problem(dev, inventory)
	}
	if sd.Problem == "" && dev.VhostNet {
		sd.Problem = d.missingNodes(device.VhostNetNode, device.TunNode)
	}
	if sd.Problem == "" && dev.RDMA && dev.RDMAAway && !sd.InUse {
		// Away from the host while no pod holds it: unloaded, or lost with a pod.
		sd.Problem = "RDMA device " + strings.Join(dev.RDMADevices, ",") + " not on the host"
	}
	if sd.Problem == "" && cdi.InSpec(dev, res) && !inSpec[dev.ID] {
		sd.Problem = "not in the pool's CDI spec (writing it failed)"
	}
	return sd
}

// missingNodes names the host device nodes that are not there (under DevRoot), or "".
func (d *Daemon) missingNodes(paths ...string) string {
	var missing []string
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(d.opts.DevRoot, strings.TrimPrefix(p, "/dev/"))); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return "needVhostNet: no " + strings.Join(missing, ", ") + " on the host (load the vhost_net and tun modules)"
}

// alive tells a LoopObserver that the loop is running.
func (d *Daemon) alive() {
	if o, ok := d.opts.Observer.(LoopObserver); ok {
		o.LoopAlive()
	}
}
