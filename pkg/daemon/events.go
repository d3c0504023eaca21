package daemon

import (
	"context"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/internal/deepeq"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/uevent"
)

// Incremental is a Scanner that the kernel's events keep current (inventory.Scanner): the loop
// hands it each batch of events and updates only the pools of the devices it reports, instead of
// rescanning the node on every event. Its periodic Rescan is the safety net, and says what the
// events missed.
type Incremental interface {
	Scanner
	Apply(inventory.Events) ([]string, error)
	Device(id string) (device.Device, bool)
	Devices() []device.Device
	Len() int
	Rescan() (missed []string, err error)
	// AliasedLinks reports a link whose alias starts with prefix (netns.AliasPrefix: one a hook
	// moved), so that ReconcileLinks (a dump of every link) runs only when there is one.
	AliasedLinks(prefix string) bool
}

// MissObserver hears how many devices a rescan found different from what the events had made of
// them (metrics: events_missed_devices_total). An Observer that implements it is told after every
// rescan of an Incremental scanner that found any.
type MissObserver interface {
	EventsMissed(devices int)
}

// LoopObserver hears the daemon's loop at every kubelet sync (Options.KubeletSync) and once at
// start, whether or not anything changed: with rescans minutes apart, its silence is what tells a
// stuck loop from an idle one (metrics: /healthz).
type LoopObserver interface {
	LoopAlive()
}

// maxBatch bounds the events taken into one update, so that a storm of events still lets the
// loop serve its other duties between updates.
const maxBatch = 4096

// eventSources are the loop's event channels; a nil channel is none.
type eventSources struct {
	links   <-chan netdev.LinkEvent
	uevents <-chan uevent.Event
	routes  <-chan netdev.RouteEvent
}

// drain adds to the batch what the sources hold now, without waiting: the rest of a burst becomes
// part of one update. A source that is closed is left for the loop to notice.
func (src eventSources) drain(batch *inventory.Events) {
	links, uevents, routes := src.links, src.uevents, src.routes
	for n := len(batch.Links) + len(batch.Uevents) + len(batch.Routes); n < maxBatch; n++ {
		select {
		case ev, ok := <-links:
			if !ok {
				links = nil
				continue
			}
			batch.Links = append(batch.Links, ev)
		case ev, ok := <-uevents:
			if !ok {
				uevents = nil
				continue
			}
			batch.Uevents = append(batch.Uevents, ev)
		case ev, ok := <-routes:
			if !ok {
				routes = nil
				continue
			}
			batch.Routes = append(batch.Routes, ev)
		default:
			return
		}
	}
}

// needsReconcile reports a link event of a link that carries our alias: one the kernel returned
// from a dead pod's namespace (or a hook left half way), which ReconcileLinks makes a plain host
// link again. Other links never need it, so other events do not pay for its link dump.
func needsReconcile(links []netdev.LinkEvent) bool {
	return slices.ContainsFunc(links, func(ev netdev.LinkEvent) bool {
		return !ev.Deleted && strings.HasPrefix(ev.Alias, netns.AliasPrefix)
	})
}

// onEvents handles one batch of events with an Incremental scanner: the scanner re-reads what the
// events name, and only the pools of the devices it reports are brought up to date. Lost events
// make a full rescan.
func (d *Daemon) onEvents(batch inventory.Events, src eventSources) {
	src.drain(&batch)
	if needsReconcile(batch.Links) {
		d.reconcileLinks() // its renames come back as events of their own
	}
	if batch.Lost() {
		d.rescanLogged("events lost", false)
		return
	}
	start := time.Now()
	changed, err := d.inc.Apply(batch)
	took := time.Since(start)
	if err != nil {
		d.opts.Observer.Scanned(0, took, err)
		klog.ErrorS(err, "Re-reading what the events name failed; rescanning")
		d.rescanLogged("events could not be applied", true) // the scanner may be half way: place everything
		return
	}
	d.opts.Observer.Scanned(d.inc.Len(), took, nil)
	klog.V(4).InfoS("Events applied", "links", len(batch.Links), "uevents", len(batch.Uevents), "routes", len(batch.Routes),
		"changed", len(changed), "took", took)
	if len(changed) == 0 {
		return
	}
	if d.applyChanged(changed) {
		d.saveState()
	}
}

// rescan is the periodic full rescan of an Incremental scanner: it counts the devices the events
// had missed and brings their pools up to date (those of devices needing vhost-net too: their
// device nodes come and go with kernel modules, which no event announces). all places every device
// again instead, as after a config change; so does the first rescan after one that failed (the
// scanner may have changed half way).
func (d *Daemon) rescan(why string, all bool) error {
	start := time.Now()
	missed, err := d.inc.Rescan()
	took := time.Since(start)
	n := d.inc.Len()
	d.opts.Observer.Scanned(n, took, err)
	if err != nil {
		d.rescanFailed = true
		return err
	}
	klog.V(4).InfoS("Rescanned devices", "trigger", why, "devices", n, "took", took, "missed", len(missed))
	if len(missed) > 0 {
		klog.InfoS("The rescan found devices the events had missed", "trigger", why, "devices", len(missed), "first", missed[:min(len(missed), 5)])
		if o, ok := d.opts.Observer.(MissObserver); ok {
			o.EventsMissed(len(missed))
		}
	}
	// A rescan reads the whole node: its garbage goes back to the system at once rather than
	// keep the heap at the size the rescan grew it to until the next one.
	defer debug.FreeOSMemory()
	if all || d.rescanFailed || !d.scanned {
		d.rescanFailed, d.scanned = false, true
		d.apply(d.inc.Devices())
		d.saveState()
		return nil
	}
	ids := missed
	for id, p := range d.pooled {
		if p.dev.VhostNet && !slices.Contains(missed, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 && d.applyChanged(ids) {
		d.saveState()
	}
	return nil
}

func (d *Daemon) rescanLogged(why string, all bool) {
	if err := d.rescan(why, all); err != nil {
		klog.ErrorS(err, "Rescan failed; keeping the current pools", "trigger", why)
	}
}

// specView is what a pool's CDI spec holds of a device: link state changes often and is not in it.
func specView(dev device.Device) device.Device {
	dev.Carrier, dev.OperState = "", ""
	return dev
}

// applyChanged brings the pools of the changed devices up to date, by the rules apply() follows for
// all devices: a device is placed by the current config; one that left the host stays, as last
// seen, only while the kubelet holds it. Only the pools a changed device was or is in are
// touched; of those, only the changed devices are looked at again (health, device nodes, _INFO),
// and the CDI spec is compared and written only when a device came, went, or changed in more than
// its link state. It reports whether what the state file keeps changed.
func (d *Daemon) applyChanged(changed []string) (stateChanged bool) {
	// A VF's health follows its PF's carrier: a changed PF changes its pooled VFs' entries.
	set := make(map[string]bool, len(changed))
	for _, id := range changed {
		set[id] = true
	}
	for id, p := range d.pooled {
		if pf := p.dev.PFPCIAddress; pf != "" && set[pf] && !set[id] {
			set[id] = true
			changed = append(changed, id)
		}
	}
	now := make([]device.Device, 0, len(changed))
	present := make(map[string]bool, len(changed))
	for _, id := range changed {
		dev, ok := d.inc.Device(id)
		if !ok {
			continue
		}
		var before hostNames
		if dev.IsPCI() {
			before = d.hostNames[dev.PCIAddress]
		}
		d.keepHostNames(&dev)
		if after := d.hostNames[dev.PCIAddress]; dev.IsPCI() && !deepeq.Equal(&before, &after) {
			stateChanged = true
		}
		present[id] = true
		now = append(now, dev)
	}
	placed := map[string]pooledDevice{}
	for _, p := range pool.Assign(now, d.cfg).Pools {
		name := p.Resource.FullName()
		for _, dev := range p.Devices {
			placed[dev.ID] = pooledDevice{dev: dev, resource: name}
		}
	}
	touched := map[string]bool{}   // pools to bring up to date
	specDirty := map[string]bool{} // pools whose spec may change
	recompute := map[string]bool{} // devices whose server entry is computed again
	for _, id := range changed {
		old, wasPooled := d.pooled[id]
		next, isPlaced := placed[id]
		switch {
		case isPlaced:
			touched[next.resource] = true
			recompute[id] = true
			if !wasPooled || old.resource != next.resource {
				specDirty[next.resource] = true
				if wasPooled {
					touched[old.resource], specDirty[old.resource] = true, true
				}
			} else if a, b := specView(old.dev), specView(next.dev); old.gone || !deepeq.Equal(&a, &b) {
				specDirty[next.resource] = true
			}
			next.carry(old, d.entriesCfg == d.cfg)
			d.pooled[id] = next
		case !wasPooled:
		case !present[id] && d.opts.Ledger.Holds(old.resource, id):
			if !old.gone { // just left the host: listed, as last seen, while the pod holds it
				old.gone, old.cached = true, false
				d.pooled[id] = old
				touched[old.resource] = true
				recompute[id] = true
			}
		default:
			if !present[id] {
				klog.InfoS("Device left its pool: not on the host, and no pod holds it", "pool", old.resource, "device", id)
			}
			delete(d.pooled, id)
			touched[old.resource], specDirty[old.resource] = true, true
		}
		if !present[id] {
			if _, pooled := d.pooled[id]; !pooled {
				if _, had := d.hostNames[id]; had {
					delete(d.hostNames, id) // neither on the host nor pooled: forget its names
					stateChanged = true
				}
			}
		}
	}
	if len(touched) == 0 {
		return stateChanged
	}
	if len(specDirty) > 0 {
		stateChanged = true
	}
	members := map[string][]device.Device{}
	for _, p := range d.pooled {
		if touched[p.resource] {
			members[p.resource] = append(members[p.resource], p.dev)
		}
	}
	for _, res := range d.cfg.Resources {
		name := res.FullName()
		if !touched[name] {
			continue
		}
		devs := members[name]
		device.SortByID(devs)
		d.syncPool(pool.Pool{Resource: res, Devices: devs}, specDirty[name], recompute, d.pfLookup(devs, recompute))
	}
	return stateChanged
}

// pfLookup is the inventory health needs of the devices whose entries are computed again: the PFs
// of those that are VFs (a VF follows its PF's carrier).
func (d *Daemon) pfLookup(devs []device.Device, recompute map[string]bool) map[string]*device.Device {
	out := map[string]*device.Device{}
	for i := range devs {
		pf := devs[i].PFPCIAddress
		if pf == "" || !recompute[devs[i].ID] {
			continue
		}
		if _, ok := out[pf]; ok {
			continue
		}
		if p, ok := d.inc.Device(pf); ok {
			out[pf] = &p
		}
	}
	return out
}

// watchEvents subscribes to the uevents and default-route changes, when the options have them.
func (d *Daemon) watchEvents(ctx context.Context) (<-chan uevent.Event, <-chan netdev.RouteEvent) {
	var uevents <-chan uevent.Event
	var routes <-chan netdev.RouteEvent
	if d.opts.Uevents != nil {
		ch, err := d.opts.Uevents(ctx)
		if err != nil {
			klog.ErrorS(err, "No device events (uevents); relying on the periodic rescan for PCI changes", "interval", d.opts.RescanInterval)
		} else {
			uevents = ch
		}
	}
	if d.opts.Routes != nil {
		ch, err := d.opts.Routes(ctx)
		if err != nil {
			klog.ErrorS(err, "No route events; relying on the periodic rescan for default-route changes", "interval", d.opts.RescanInterval)
		} else {
			routes = ch
		}
	}
	return uevents, routes
}
