// Package daemon is the control loop of the node daemon: it scans the devices, places them in
// pools by the selector config, writes each pool's CDI spec, and hands the pools to their
// device-plugin servers; then it keeps all of that current on link events, on a periodic rescan,
// and when the config file changes.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/health"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
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
	ConfigLoaded(path string, err error)
	Scanned(devices int, took time.Duration, err error)
}

// NopObserver ignores everything.
type NopObserver struct{}

// ConfigLoaded implements Observer.
func (NopObserver) ConfigLoaded(string, error) {}

// Scanned implements Observer.
func (NopObserver) Scanned(int, time.Duration, error) {}

// Defaults of the timing options.
const (
	DefaultRescanInterval = 30 * time.Second
	DefaultCoalesce       = 100 * time.Millisecond
)

// Options wire the loop. ConfigPath, Scanner, Specs and Servers are required.
type Options struct {
	ConfigPath    string
	DefaultPrefix string // resource prefix of resources whose config names none
	Scanner       Scanner
	Specs         SpecWriter
	Servers       Servers
	// Links streams link events of the host namespace (netdev.WatchLinks); nil: rescans only.
	Links func(ctx context.Context) (<-chan netdev.LinkEvent, error)
	// ReconcileLinks gives links returned from dead pod namespaces their host names back
	// (netns.ReconcileReturned); run before every scan that follows link events or the rescan.
	ReconcileLinks func() error
	RescanInterval time.Duration // periodic rescan, the safety net for missed events
	Coalesce       time.Duration // link events: the first rescans at once, the rest of a burst within this window once more
	Observer       Observer
	// StateFile keeps the pooled devices across restarts of the daemon (see savedState); "" keeps
	// nothing.
	StateFile string
}

// Daemon is the loop. Its state is owned by the goroutine running Run.
type Daemon struct {
	opts Options

	cfg       *config.Config
	cfgErr    string                   // last config error logged by a periodic reload
	hostNames map[string]hostNames     // PCI address -> last host netdev names seen
	pooled    map[string]device.Device // ID -> last seen copy of every device in a pool
	restored  map[string]bool          // IDs the saved state pooled that this run has not seen on the host yet
	written   map[string]pool.Pool     // full name -> the pool as its CDI spec was last written
	served    map[string]config.Resource
	// savedState is the state file's content as last read or written, to skip unchanged writes.
	savedState []byte
}

// hostNames are the netdev names and link type a PCI function last had on the host, with its
// driver then.
type hostNames struct {
	names    []string
	linkType string
	driver   string
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
	return &Daemon{
		opts:      opts,
		hostNames: map[string]hostNames{},
		pooled:    map[string]device.Device{},
		restored:  map[string]bool{},
		written:   map[string]pool.Pool{},
		served:    map[string]config.Resource{},
	}, nil
}

// Run loads the config, serves the pools and keeps them current until ctx ends. It fails only at
// start (no valid config, first scan failed); later errors are logged and the last good state
// kept. The servers are left running: their owner stops them.
func (d *Daemon) Run(ctx context.Context) error {
	// Watch before the first load and scan, so no change between them and the loop is missed.
	cfgEvents, stopCfg := d.watchConfig()
	defer stopCfg()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the link subscription
	links := d.watchLinks(ctx)

	cfg, err := config.Load(d.opts.ConfigPath, d.opts.DefaultPrefix)
	d.opts.Observer.ConfigLoaded(d.opts.ConfigPath, err)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	d.cfg = cfg
	klog.InfoS("Config loaded", "file", d.opts.ConfigPath, "pools", poolNames(cfg))
	d.loadState()
	d.reconcileLinks()
	if err := d.refresh("start"); err != nil {
		return err
	}
	if err := d.opts.Specs.Prune(cfg.Resources); err != nil {
		klog.ErrorS(err, "Removing CDI specs of pools no longer configured failed")
	}

	tick := time.NewTicker(d.opts.RescanInterval)
	defer tick.Stop()
	var linkTimer, cfgTimer <-chan time.Time
	linksDirty := false
	linkSeen := linkStates{}
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
			if !linkSeen.changed(ev) {
				continue // same name, carrier and alias: an address or statistics update
			}
			klog.V(4).InfoS("Link event", "link", ev.Name, "deleted", ev.Deleted, "carrier", ev.Carrier)
			// The first event is acted on at once; the rest of its burst waits for the window
			// to close and makes one more rescan.
			if linkTimer == nil {
				d.onLinkEvents()
				linkTimer = time.After(d.opts.Coalesce)
			} else {
				linksDirty = true
			}
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
			klog.V(4).InfoS("Config folder event", "event", ev.String())
			if cfgTimer == nil {
				cfgTimer = time.After(d.opts.Coalesce)
			}
		case <-cfgTimer:
			cfgTimer = nil
			if d.reloadConfig(true) {
				d.refreshLogged("config change")
			}
		case <-tick.C:
			d.reloadConfig(false)
			d.reconcileLinks()
			d.refreshLogged("periodic rescan")
		}
	}
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

// reloadConfig loads the config file again and reports whether it changed. An invalid file is
// logged (a periodic reload logs the same error only once) and the current pools stay.
func (d *Daemon) reloadConfig(fromEvent bool) bool {
	cfg, err := config.Load(d.opts.ConfigPath, d.opts.DefaultPrefix)
	if err != nil {
		if fromEvent || err.Error() != d.cfgErr {
			klog.ErrorS(err, "Config rejected; keeping the current pools", "file", d.opts.ConfigPath, "pools", poolNames(d.cfg))
			d.opts.Observer.ConfigLoaded(d.opts.ConfigPath, err)
		}
		d.cfgErr = err.Error()
		return false
	}
	d.cfgErr = ""
	if reflect.DeepEqual(cfg, d.cfg) {
		return false
	}
	klog.InfoS("Config changed", "file", d.opts.ConfigPath, "pools", poolNames(cfg))
	d.opts.Observer.ConfigLoaded(d.opts.ConfigPath, nil)
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
	return !ok || prev != ev
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

// refresh scans and applies the result.
func (d *Daemon) refresh(why string) error {
	start := time.Now()
	devs, err := d.opts.Scanner.Scan()
	took := time.Since(start)
	d.opts.Observer.Scanned(len(devs), took, err)
	if err != nil {
		return fmt.Errorf("scan devices (%s): %w", why, err)
	}
	klog.V(4).InfoS("Scanned devices", "trigger", why, "devices", len(devs), "took", took)
	d.apply(devs)
	d.saveState()
	return nil
}

// apply places the scanned devices in the pools of the current config and brings specs and
// servers in line: specs first, so a device is never advertised before its CDI spec exists.
func (d *Daemon) apply(devs []device.Device) {
	present := make(map[string]bool, len(devs))
	inventory := make(map[string]*device.Device, len(devs))
	for i := range devs {
		dev := &devs[i]
		d.keepHostNames(dev)
		present[dev.ID] = true
		delete(d.restored, dev.ID)
		inventory[dev.ID] = dev
	}
	// Devices that were in a pool and are not on the host now stay, as they were last seen: the
	// config decides again where they belong, and their servers list them as gone.
	all := devs
	for id, dev := range d.pooled {
		if !present[id] {
			all = append(all, dev)
		}
	}
	result := pool.Assign(all, d.cfg)

	pooled := make(map[string]device.Device, len(d.pooled))
	keep := make(map[string]bool, len(result.Pools))
	for _, p := range result.Pools {
		name := p.Resource.FullName()
		keep[name] = true
		for _, dev := range p.Devices {
			pooled[dev.ID] = dev
		}
		inSpec := d.writeSpec(p)
		sdevs := make([]server.Device, len(p.Devices))
		for i := range p.Devices {
			sdevs[i] = d.serverDevice(&p.Devices[i], !present[p.Devices[i].ID], inventory, inSpec)
		}
		if err := d.opts.Servers.Update(p.Resource, sdevs); err != nil {
			klog.ErrorS(err, "Serving pool failed", "pool", name)
			continue
		}
		d.served[name] = p.Resource
	}
	d.pooled = pooled
	for id := range d.restored {
		if _, ok := pooled[id]; !ok {
			delete(d.restored, id)
		}
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
	}
}

// keepHostNames remembers a PCI function's netdev names and link type, and gives them back to a function that
// shows none because its netdev is inside a pod (sysfs lists only the host namespace's), so a
// selector on interface names keeps it in its pool. A function rebound to another driver lost
// its netdev for real and gets nothing back.
func (d *Daemon) keepHostNames(dev *device.Device) {
	if !dev.IsPCI() || dev.Representor { // a representor shares its PF's address: not its names
		return
	}
	if len(dev.IfNames) > 0 {
		d.hostNames[dev.PCIAddress] = hostNames{names: dev.IfNames, linkType: dev.LinkType, driver: dev.Driver}
		return
	}
	if h, ok := d.hostNames[dev.PCIAddress]; ok && h.driver == dev.Driver {
		dev.IfNames = h.names
		dev.IfName = h.names[0]
		dev.LinkType = h.linkType // a linkTypes selector keeps it too
	}
}

// writeSpec writes the pool's CDI spec when what it depends on changed, and returns the IDs the
// spec on disk holds. Devices whose ID cannot be a CDI name are left out (their servers report
// them unhealthy), so an error here is a real write failure: the old spec stays and is retried.
func (d *Daemon) writeSpec(p pool.Pool) map[string]bool {
	name := p.Resource.FullName()
	want := pool.Pool{Resource: p.Resource, Devices: make([]device.Device, 0, len(p.Devices))}
	for _, dev := range p.Devices {
		if _, err := cdi.QualifiedName(&p.Resource, dev.ID); err != nil {
			continue
		}
		dev.Carrier, dev.OperState = "", "" // link state changes often and is not in the spec
		want.Devices = append(want.Devices, dev)
	}
	if old, ok := d.written[name]; !ok || !reflect.DeepEqual(old, want) {
		if err := d.opts.Specs.WritePool(want); err != nil {
			klog.ErrorS(err, "Writing the CDI spec failed; new devices stay unhealthy until it succeeds", "pool", name)
		} else {
			klog.V(2).InfoS("CDI spec written", "pool", name, "devices", len(want.Devices))
			d.written[name] = want
		}
	}
	ids := map[string]bool{}
	for _, dev := range d.written[name].Devices {
		ids[dev.ID] = true
	}
	return ids
}

// serverDevice turns a pooled device into what its server needs, deciding health and vfio nodes
// now so that the kubelet's calls do no I/O.
func (d *Daemon) serverDevice(dev *device.Device, gone bool, inventory map[string]*device.Device, inSpec map[string]bool) server.Device {
	sd := server.Device{
		ID:           dev.ID,
		Gone:         gone,
		Restored:     gone && d.restored[dev.ID],
		NUMANode:     dev.NUMANode,
		PCIAddress:   dev.PCIAddress,
		PFPCIAddress: dev.PFPCIAddress,
	}
	if !gone {
		sd.Problem = health.Problem(dev, inventory)
	}
	if dev.IsVFIO() {
		if dev.IOMMUGroup < 0 {
			sd.Problem = "vfio-pci device without an IOMMU group"
		} else {
			sd.VFIODevice = dev.VFIOGroupNode()
		}
	}
	if sd.Problem == "" && !inSpec[dev.ID] {
		sd.Problem = "not in the pool's CDI spec (writing it failed)"
	}
	return sd
}
