// Package inventory is discovery as one call: every PCI network function of a sysfs root, the
// switchdev representors, and the software links and loopback of the current network namespace,
// with the facts that keep a device out of every pool (default route, loopback, representor) set.
//
// A Scanner keeps what its last scan found, so that the kernel's events update it in place: Apply
// re-reads only the PCI functions and links a batch of uevents and netlink events names, and
// reports the devices that may have changed; Rescan reads everything again and reports what the
// events had missed.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/uevent"
)

// DefaultSysfsRoot is where a real host mounts sysfs.
const DefaultSysfsRoot = "/sys"

// UeventSubsystems are the subsystems whose uevents Apply acts on: PCI functions themselves (added,
// removed, bound, unbound) and the devices sysfs lists beneath a function that discovery reads (RDMA
// devices and their character devices, uio nodes). Network devices are followed through netlink
// link events instead, which also say when their state changes.
var UeventSubsystems = []string{"pci", "infiniband", "infiniband_verbs", "infiniband_mad", "uio"}

// WatchUevents streams the uevents of UeventSubsystems that reach the calling process's network
// namespace (the host's, for a daemon with hostNetwork) until ctx is done.
func WatchUevents(ctx context.Context) (<-chan uevent.Event, error) {
	conn, err := uevent.Dial(0)
	if err != nil {
		return nil, err
	}
	return uevent.Watch(ctx, conn, UeventSubsystems...), nil
}

// Options say where to look.
type Options struct {
	SysfsRoot     string // sysfs directory; "" means /sys. Fixture trees pass their own.
	PCIIDsPath    string // pci.ids file; "" searches the usual places. Missing means empty names.
	SoftwareLinks bool   // list software links of the current namespace (and find default routes)
	DevRoot       string // where the host's device nodes are ("" = /dev): whether rdma_cm is there
}

// Scanner discovers devices and keeps what it found; pci.ids is found when the scanner is made,
// and read only for the vendor:device pairs the scans meet. Not safe for concurrent use.
type Scanner struct {
	root    string
	links   bool
	devRoot string
	pci     *pci.Scanner
	ns      *netdev.Namespace // opened by the first scan that lists links
	table   *netdev.Table     // nil without SoftwareLinks, or before the first scan
	scanned bool
	rdmaCM  bool // the host has /dev/infiniband/rdma_cm

	// The netdev names of each PCI device (its IfNames) and the reverse: which device a name
	// belongs to. A software link with such a name is that device, not a link of its own.
	namesOf map[string][]string
	owner   map[string]string
}

// New finds pci.ids and returns a scanner; it reads nothing yet.
func New(opts Options) (*Scanner, error) {
	root := opts.SysfsRoot
	if root == "" {
		root = DefaultSysfsRoot
	}
	ids, err := pci.OpenIDs(opts.PCIIDsPath)
	if err != nil {
		return nil, fmt.Errorf("load pci.ids: %w", err)
	}
	devRoot := opts.DevRoot
	if devRoot == "" {
		devRoot = "/dev"
	}
	return &Scanner{root: root, links: opts.SoftwareLinks, devRoot: devRoot, pci: pci.NewScanner(root, ids),
		namesOf: map[string][]string{}, owner: map[string]string{}}, nil
}

// SysfsRoot is the sysfs directory the scanner reads.
func (s *Scanner) SysfsRoot() string { return s.root }

// Reads is how many PCI functions the scanner has read from sysfs (see pci.Scanner.Reads).
func (s *Scanner) Reads() int64 { return s.pci.Reads() }

// Close releases the netlink socket of the namespace's links.
func (s *Scanner) Close() {
	if s.ns != nil {
		s.ns.Close()
		s.ns = nil
	}
}

// Scan reads every device again and returns them all, sorted by ID. On an error the scanner keeps
// what it knew.
func (s *Scanner) Scan() ([]device.Device, error) {
	if _, err := s.load(); err != nil {
		return nil, err
	}
	return s.Devices(), nil
}

// Rescan is Scan for a scanner that events keep current: it reads everything again and returns
// the IDs of the devices whose Device the scan found different from what the events had made of
// it (added, gone or changed), sorted: what the events missed. Device and Devices tell what they
// are now. Before the first scan it reports nothing.
func (s *Scanner) Rescan() ([]string, error) {
	if !s.scanned {
		_, err := s.load()
		return nil, err
	}
	oldTable, oldOwner, oldNames, oldCM := s.table, s.owner, s.namesOf, s.rdmaCM
	changed, err := s.load()
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	soft := func(names []string) {
		for _, n := range names {
			if l, ok := s.linkNamed(n); ok && l.Software() {
				ids[n] = true
			} else if oldTable != nil {
				if l, ok := oldTable.ByName(n); ok && l.Software() {
					ids[n] = true
				}
			}
		}
	}
	for _, id := range changed {
		ids[id] = true
		// A name that left or came to a PCI device hides or shows a software link of that name.
		soft(oldNames[id])
		soft(s.namesOf[id])
	}
	if s.table != nil && oldTable != nil {
		for _, n := range s.table.Changed(oldTable) {
			id, isPCI := s.owner[n]
			oldID, wasPCI := oldOwner[n]
			if !isPCI {
				ids[n] = true // the software link of that name
			}
			// A PCI netdev's link matters through its facts alone.
			if (isPCI || wasPCI) && (s.table.Routed(n) != oldTable.Routed(n) || !slices.Equal(s.table.Uppers(n), oldTable.Uppers(n))) {
				if isPCI {
					ids[id] = true
				}
				if wasPCI {
					ids[oldID] = true
				}
			}
		}
	}
	if s.rdmaCM != oldCM {
		for _, d := range s.pci.Devices() {
			if len(d.RDMADevices) > 0 {
				ids[d.ID] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(ids)), nil
}

// differences returns the IDs present in only one of two sorted lists, or in both but different.
func differences(a, b []device.Device) []string {
	var out []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].ID < b[j].ID:
			out = append(out, a[i].ID)
			i++
		case i == len(a) || b[j].ID < a[i].ID:
			out = append(out, b[j].ID)
			j++
		default:
			if !reflect.DeepEqual(a[i], b[j]) {
				out = append(out, a[i].ID)
			}
			i++
			j++
		}
	}
	return out
}

// load reads everything again and returns the PCI devices that changed.
func (s *Scanner) load() ([]string, error) {
	changed, err := s.pci.Load()
	if err != nil {
		return nil, fmt.Errorf("scan PCI devices under %s: %w", s.root, err)
	}
	s.rdmaCM = s.hasRDMACM()
	s.namesOf, s.owner = map[string][]string{}, map[string]string{}
	s.pci.NetdevNames(s.index)
	if s.links {
		if s.ns == nil {
			ns, err := netdev.Current()
			if err != nil {
				return nil, err
			}
			s.ns = ns
		}
		t := netdev.NewTable()
		if err := t.Load(s.ns); err != nil {
			return nil, fmt.Errorf("scan software links and default routes: %w", err)
		}
		s.table = t
	}
	s.scanned = true
	return changed, nil
}

// index records the netdev names of a PCI device.
func (s *Scanner) index(id string, names []string) {
	if len(names) == 0 {
		delete(s.namesOf, id)
		return
	}
	s.namesOf[id] = names
	for _, n := range names {
		s.owner[n] = id
	}
}

// unindex forgets the netdev names of a PCI device.
func (s *Scanner) unindex(id string) {
	for _, n := range s.namesOf[id] {
		if s.owner[n] == id {
			delete(s.owner, n)
		}
	}
	delete(s.namesOf, id)
}

// Devices returns every device as the scanner knows it now, sorted by ID.
func (s *Scanner) Devices() []device.Device {
	devs := s.pci.Devices()
	for i := range devs {
		s.addFacts(&devs[i])
	}
	if s.table != nil {
		// Some drivers give their netdevs a netlink kind (IPoIB's are "ipoib"), and on a real host
		// every VF netdev is a link: one netdev is one device, the PCI function.
		soft := s.table.SoftDevicesExcept(func(name string) bool { _, isPCI := s.owner[name]; return isPCI })
		devs = mergeByID(devs, soft)
	}
	return devs
}

// mergeByID merges two lists sorted by ID.
func mergeByID(a, b []device.Device) []device.Device {
	if len(b) == 0 {
		return a
	}
	out := make([]device.Device, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i].ID <= b[j].ID {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// AliasedLinks reports whether a link of the namespace has an alias starting with prefix (the
// links a hook moved carry netns.AliasPrefix): the table answers, no dump.
func (s *Scanner) AliasedLinks(prefix string) bool {
	return s.table != nil && s.table.HasAlias(prefix)
}

// Len is the number of devices Devices would return.
func (s *Scanner) Len() int {
	n := s.pci.Len()
	if s.table != nil {
		n += s.table.SoftCount(func(name string) bool { _, isPCI := s.owner[name]; return !isPCI })
	}
	return n
}

// Device returns the device with the ID as the scanner knows it now.
func (s *Scanner) Device(id string) (device.Device, bool) {
	if d, ok := s.pci.Device(id); ok {
		s.addFacts(&d)
		return d, true
	}
	if s.table == nil {
		return device.Device{}, false
	}
	if _, isPCI := s.owner[id]; isPCI {
		return device.Device{}, false
	}
	return s.table.Soft(id)
}

// addFacts sets what a PCI device's netdevs are among the namespace's links (a default route
// through one, links bound to one) and whether its pods get rdma_cm.
func (s *Scanner) addFacts(d *device.Device) {
	// The shared RDMA connection manager node goes to RDMA pods with their own devices (sriov-dp
	// hands it out only when it is there).
	d.RDMACM = s.rdmaCM && len(d.RDMADevices) > 0
	if s.table == nil {
		return
	}
	for _, name := range d.IfNames {
		if s.table.Routed(name) {
			d.DefaultRoute = true
		}
		d.Uppers = append(d.Uppers, s.table.Uppers(name)...)
	}
}

func (s *Scanner) hasRDMACM() bool {
	_, err := os.Stat(filepath.Join(s.devRoot, "infiniband", "rdma_cm"))
	return err == nil
}

// Events is one batch of what the kernel announced: link and default-route changes of the
// namespace (netdev.WatchLinks, WatchRoutes) and uevents (uevent.Watch).
type Events struct {
	Links   []netdev.LinkEvent
	Routes  []netdev.RouteEvent
	Uevents []uevent.Event
}

// Lost reports whether the batch says events were lost (a subscription made again, a uevent
// socket that overflowed): only a rescan can tell what changed then.
func (e *Events) Lost() bool {
	return slices.ContainsFunc(e.Links, func(l netdev.LinkEvent) bool { return l.Resync }) ||
		slices.ContainsFunc(e.Routes, func(r netdev.RouteEvent) bool { return r.Resync }) ||
		slices.ContainsFunc(e.Uevents, func(u uevent.Event) bool { return u.Overflow })
}

// Empty reports a batch with no event.
func (e *Events) Empty() bool { return len(e.Links)+len(e.Routes)+len(e.Uevents) == 0 }

// ErrNotScanned is Apply's answer before the first scan: there is nothing to update.
var ErrNotScanned = errors.New("inventory: events before the first scan")

// Apply brings the scanner up to date with a batch of events and returns the IDs of the devices
// that may have changed (added, gone or different), sorted; Device tells what each is now. It reads
// only what the events name:
//
//   - a uevent of a PCI function, or of a device beneath one (RDMA, uio), re-reads that function
//     (and the PF of a VF that came or went; see pci.Scanner.Update);
//   - a link event updates the link table from the event itself; a link that is a PCI function's
//     netdev (known by name, else found through the root's class/net) re-reads that function,
//     whose netdev state sysfs holds;
//   - a default-route change reads the routes, not the links again.
//
// The facts derived from links (default route, upper links) are recomputed from the table. Lost
// events are the caller's to handle (Events.Lost: Rescan).
func (s *Scanner) Apply(ev Events) ([]string, error) {
	if !s.scanned {
		return nil, ErrNotScanned
	}
	addrs := map[string]bool{}
	ids := map[string]bool{}
	// A name whose facts or link changed: its PCI device if it is one's netdev, else the
	// software link of that name.
	named := func(name string) {
		if id, ok := s.owner[name]; ok {
			ids[id] = true
		} else {
			ids[name] = true
		}
	}
	if len(ev.Links) > 0 {
		// Without software links there is no table, but a PCI netdev's event still re-reads
		// its function.
		for i := range ev.Links {
			e := &ev.Links[i]
			if e.Resync {
				continue
			}
			names := []string{e.Link.Name}
			if old, ok := s.linkAt(e.Link.Index); ok && old.Name != e.Link.Name {
				names = append(names, old.Name)
			}
			for _, n := range names {
				if id, ok := s.owner[n]; ok {
					if d, ok := s.pci.Device(id); ok {
						addrs[d.PCIAddress] = true
					}
				} else if !e.Link.Software() {
					if a := s.pci.FunctionOf(n); a != "" {
						addrs[a] = true
					}
				}
			}
		}
		if s.table != nil {
			for _, n := range s.table.Apply(ev.Links) {
				named(n)
			}
		}
	}
	if s.table != nil && len(ev.Routes) > 0 {
		names, err := s.table.ReadRoutes(s.ns)
		if err != nil {
			return nil, fmt.Errorf("read routes after a default route changed: %w", err)
		}
		for _, n := range names {
			named(n)
		}
	}
	for i := range ev.Uevents {
		u := &ev.Uevents[i]
		if u.Overflow || !slices.Contains(UeventSubsystems, u.Subsystem) {
			continue
		}
		if a := u.PCIAddress(); a != "" {
			addrs[a] = true
		}
	}
	if len(addrs) > 0 {
		touched, err := s.pci.Update(slices.Sorted(maps.Keys(addrs)))
		if err != nil {
			return nil, err
		}
		rdma := false
		// A name that left a PCI device is a software link's again if there is one of that
		// name; one that came to a PCI device hides the link.
		soft := func(names []string) {
			for _, n := range names {
				if l, ok := s.linkNamed(n); ok && l.Software() {
					ids[n] = true
				}
			}
		}
		for _, id := range touched {
			ids[id] = true
			soft(s.namesOf[id])
			s.unindex(id)
			if d, ok := s.pci.Device(id); ok {
				s.index(id, d.IfNames)
				soft(d.IfNames)
				rdma = rdma || len(d.RDMADevices) > 0
			}
		}
		if rdma {
			if cm := s.hasRDMACM(); cm != s.rdmaCM {
				s.rdmaCM = cm
				for _, d := range s.pci.Devices() {
					if len(d.RDMADevices) > 0 {
						ids[d.ID] = true
					}
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(ids)), nil
}

func (s *Scanner) linkAt(index int) (netdev.Link, bool) {
	if s.table == nil {
		return netdev.Link{}, false
	}
	return s.table.Get(index)
}

func (s *Scanner) linkNamed(name string) (netdev.Link, bool) {
	if s.table == nil {
		return netdev.Link{}, false
	}
	return s.table.ByName(name)
}
