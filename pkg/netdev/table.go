package netdev

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/defroute"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// Link is what discovery keeps of one link of the namespace: the facts a software link's Device
// has, and its place among the other links (master, lower devices) for pkg/defroute's rule. It is
// what a netlink message says, a few hundred bytes per link; LinkEvent carries one.
type Link struct {
	Index     int
	Name      string
	Kind      string // netlink kind (veth, ifb, ...); "" for a driver-backed netdev (a PCI function's)
	LinkType  string // as sriov-dp's linkTypes: "ether", "loopback", ...
	OperState string
	MAC       string
	MTU       int
	Flags     uint32 // IFF_* flags of the message
	Alias     string
	Master    int
	Lowers    []int // defroute.Lowers: the devices it is bound to
}

// LinkOf reads a netlink link.
func LinkOf(l netlink.Link) Link {
	a := l.Attrs()
	out := Link{
		Index: a.Index, Name: a.Name, LinkType: a.EncapType, OperState: a.OperState.String(),
		MAC: a.HardwareAddr.String(), MTU: a.MTU, Flags: a.RawFlags, Alias: a.Alias, Master: a.MasterIndex,
		Lowers: defroute.Lowers(l),
	}
	if t := l.Type(); t != physicalLinkType {
		out.Kind = t
	}
	return out
}

// Loopback reports the loopback.
func (l *Link) Loopback() bool { return l.Flags&unix.IFF_LOOPBACK != 0 }

// Software reports a link pools may take by name or kind: one with a netlink kind, or the loopback
// (listed so that discover can say why it is never taken). Driver-backed netdevs are found through
// sysfs.
func (l *Link) Software() bool { return l.Kind != "" || l.Loopback() }

// Carrier is the link's carrier by its flags (see Carrier).
func (l *Link) Carrier() string { return carrierFromFlags(l.Flags) }

func (l *Link) equal(o *Link) bool {
	return l.Index == o.Index && l.Name == o.Name && l.Kind == o.Kind && l.LinkType == o.LinkType &&
		l.OperState == o.OperState && l.MAC == o.MAC && l.MTU == o.MTU && l.Flags == o.Flags &&
		l.Alias == o.Alias && l.Master == o.Master && slices.Equal(l.Lowers, o.Lowers)
}

// Table is the links of one namespace and the links its default routes go out of: loaded with one
// dump of links and routes, then kept current by link events (which carry the whole link) and by
// reading the routes again when a default route changes. The default-route carriers and upper
// links are derived from it by pkg/defroute's rule, the hook's too. Not safe for concurrent use.
type Table struct {
	links  map[int]*Link
	byName map[string]int
	via    []int // links default routes go out of

	carriers map[int]bool     // derived: carry a default route, themselves or beneath one
	uppers   map[int][]string // derived: the names of the links bound to each, and of its master
}

// NewTable returns an empty table; Load fills it.
func NewTable() *Table {
	return &Table{links: map[int]*Link{}, byName: map[string]int{}, carriers: map[int]bool{}, uppers: map[int][]string{}}
}

// Load replaces the table with one consistent dump of the namespace's links and routes. The links
// are read one receive buffer at a time (dumpLinks); the rule is pkg/defroute's. A dump interrupted
// by changes is retried, then fails closed, as defroute.Read does.
func (t *Table) Load(n *Namespace) error {
	var err error
	for range defroute.Tries {
		var links []Link
		var routes []netlink.Route
		if links, err = n.dumpLinks(); err == nil {
			routes, err = n.handle.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
			if err != nil {
				err = fmt.Errorf("list routes: %w", err)
			}
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			continue
		}
		if err != nil {
			return err
		}
		t.links = make(map[int]*Link, len(links))
		t.byName = make(map[string]int, len(links))
		for i := range links {
			l := &links[i]
			t.links[l.Index] = l
			t.byName[l.Name] = l.Index
		}
		t.via = defroute.RouteLinks(routes)
		t.carriers, t.uppers = map[int]bool{}, map[int][]string{}
		t.derive()
		return nil
	}
	return fmt.Errorf("links or routes kept changing during %d dumps: %w", defroute.Tries, err)
}

// Len is the number of links.
func (t *Table) Len() int { return len(t.links) }

// Get returns the link with the index.
func (t *Table) Get(index int) (Link, bool) {
	l, ok := t.links[index]
	if !ok {
		return Link{}, false
	}
	return *l, true
}

// ByName returns the link with the name.
func (t *Table) ByName(name string) (Link, bool) {
	i, ok := t.byName[name]
	if !ok {
		return Link{}, false
	}
	return t.Get(i)
}

// Apply applies link events in order and returns the names of the links that may look different
// now, sorted: those whose link changed (both names of a renamed one, a deleted one), and those
// whose derived facts (Routed, Uppers) changed with them. An event that repeats what the table
// knows (an address or statistics update) changes nothing. Resync events are left to the caller.
func (t *Table) Apply(evs []LinkEvent) []string {
	changed := map[string]bool{}
	graph := false
	for i := range evs {
		ev := &evs[i]
		if ev.Resync || ev.Link.Index <= 0 {
			continue
		}
		old, had := t.links[ev.Link.Index]
		if ev.Deleted {
			if !had {
				continue
			}
			t.remove(old)
			changed[old.Name] = true
			graph = true
			continue
		}
		if had && old.equal(&ev.Link) {
			continue
		}
		if had {
			changed[old.Name] = true
			graph = graph || old.Master != ev.Link.Master || !slices.Equal(old.Lowers, ev.Link.Lowers) || old.Name != ev.Link.Name
			t.remove(old)
		} else {
			graph = true
		}
		// A new link may take the name of one whose deletion this socket has not reported yet.
		if j, ok := t.byName[ev.Link.Name]; ok && j != ev.Link.Index {
			changed[t.links[j].Name] = true
			t.remove(t.links[j])
		}
		nl := ev.Link
		t.links[nl.Index] = &nl
		t.byName[nl.Name] = nl.Index
		changed[nl.Name] = true
	}
	if graph {
		for _, name := range t.derive() {
			changed[name] = true
		}
	}
	return slices.Sorted(maps.Keys(changed))
}

func (t *Table) remove(l *Link) {
	delete(t.links, l.Index)
	if t.byName[l.Name] == l.Index {
		delete(t.byName, l.Name)
	}
}

// ReadRoutes reads the routes again, after a default route changed, and returns the names of the
// links whose facts changed with it. The links are not dumped: the table has them.
func (t *Table) ReadRoutes(n *Namespace) ([]string, error) {
	var err error
	for range defroute.Tries {
		var routes []netlink.Route
		routes, err = n.handle.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		return t.SetRouteLinks(defroute.RouteLinks(routes)), nil
	}
	return nil, fmt.Errorf("routes kept changing during %d dumps: %w", defroute.Tries, err)
}

// SetRouteLinks sets the links the default routes go out of and returns the names of the links
// whose facts changed.
func (t *Table) SetRouteLinks(via []int) []string {
	if slices.Equal(via, t.via) {
		return nil
	}
	t.via = slices.Clone(via)
	return t.derive()
}

// derive applies the rule again and returns the names of the links whose Routed or Uppers
// changed (an upper renamed changes the Uppers of the links beneath it).
func (t *Table) derive() []string {
	nodes := make([]defroute.Node, 0, len(t.links))
	for _, l := range t.links {
		nodes = append(nodes, defroute.Node{Index: l.Index, Master: l.Master, Lowers: l.Lowers})
	}
	carriers, uppers := defroute.CarriersOf(nodes, t.via), t.upperNames(defroute.UppersOf(nodes))
	changed := map[int]bool{}
	for i := range carriers {
		if !t.carriers[i] {
			changed[i] = true
		}
	}
	for i := range t.carriers {
		if !carriers[i] {
			changed[i] = true
		}
	}
	for i, us := range uppers {
		if !slices.Equal(us, t.uppers[i]) {
			changed[i] = true
		}
	}
	for i := range t.uppers {
		if _, ok := uppers[i]; !ok {
			changed[i] = true
		}
	}
	t.carriers, t.uppers = carriers, uppers
	var names []string
	for i := range changed {
		if l, ok := t.links[i]; ok {
			names = append(names, l.Name)
		}
	}
	return names
}

// upperNames turns the rule's upper indexes into names, keeping their order.
func (t *Table) upperNames(up map[int][]int) map[int][]string {
	out := make(map[int][]string, len(up))
	for i, us := range up {
		var names []string
		for _, u := range us {
			if l, ok := t.links[u]; ok {
				names = append(names, l.Name)
			}
		}
		if names != nil {
			out[i] = names
		}
	}
	return out
}

// Routed reports whether the link named carries a default route, itself or beneath the one that
// does.
func (t *Table) Routed(name string) bool {
	i, ok := t.byName[name]
	return ok && t.carriers[i]
}

// Uppers names the links bound to the link named (and its master), in index order; nil for none.
// The slice is the table's: callers must not change it.
func (t *Table) Uppers(name string) []string {
	i, ok := t.byName[name]
	if !ok {
		return nil
	}
	return t.uppers[i]
}

// Soft returns the Device of the software link named (see Link.Software), as Scan lists it.
func (t *Table) Soft(name string) (device.Device, bool) {
	i, ok := t.byName[name]
	if !ok {
		return device.Device{}, false
	}
	l := t.links[i]
	if !l.Software() {
		return device.Device{}, false
	}
	d := deviceOf(l)
	d.Loopback = l.Loopback()
	d.DefaultRoute = t.carriers[i]
	d.Uppers = slices.Clone(t.Uppers(name))
	return d, true
}

// SoftDevices returns every software link as a Device, sorted by ID.
func (t *Table) SoftDevices() []device.Device {
	return t.SoftDevicesExcept(nil)
}

// SoftDevicesExcept is SoftDevices without the links whose name skip accepts (nil: none), which
// are never made Devices.
func (t *Table) SoftDevicesExcept(skip func(name string) bool) []device.Device {
	names := make([]string, 0, len(t.links))
	for _, l := range t.links {
		if l.Software() && (skip == nil || !skip(l.Name)) {
			names = append(names, l.Name)
		}
	}
	slices.Sort(names)
	out := make([]device.Device, 0, len(names))
	for _, n := range names {
		d, _ := t.Soft(n)
		out = append(out, d)
	}
	return out
}

// Changed returns the names of the links whose Device (a software link's) or facts (Routed,
// Uppers) differ between old and t, sorted: what a reload found that the events had not told.
func (t *Table) Changed(old *Table) []string {
	changed := map[string]bool{}
	check := func(name string) {
		if changed[name] {
			return
		}
		a, aok := old.linkNamed(name)
		b, bok := t.linkNamed(name)
		if aok != bok || aok && (a.Software() != b.Software() || a.Software() && !sameDevice(a, b)) ||
			old.Routed(name) != t.Routed(name) || !slices.Equal(old.Uppers(name), t.Uppers(name)) {
			changed[name] = true
		}
	}
	for name := range t.byName {
		check(name)
	}
	for name := range old.byName {
		check(name)
	}
	return slices.Sorted(maps.Keys(changed))
}

func (t *Table) linkNamed(name string) (*Link, bool) {
	i, ok := t.byName[name]
	if !ok {
		return nil, false
	}
	return t.links[i], true
}

// sameDevice reports whether two links make the same Device (deviceOf, Loopback): the facts aside.
func sameDevice(a, b *Link) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.LinkType == b.LinkType && a.OperState == b.OperState &&
		a.MAC == b.MAC && a.MTU == b.MTU && a.Carrier() == b.Carrier() && a.Loopback() == b.Loopback()
}

// HasAlias reports whether a link's alias starts with prefix.
func (t *Table) HasAlias(prefix string) bool {
	for _, l := range t.links {
		if strings.HasPrefix(l.Alias, prefix) {
			return true
		}
	}
	return false
}

// SoftCount counts the software links whose name keep accepts.
func (t *Table) SoftCount(keep func(name string) bool) int {
	n := 0
	for _, l := range t.links {
		if l.Software() && keep(l.Name) {
			n++
		}
	}
	return n
}

// Facts are the facts of every link by name, for the PCI functions' netdevs too.
func (t *Table) Facts() Facts {
	f := Facts{Routed: make(map[string]bool, len(t.carriers)), Uppers: map[string][]string{}}
	for _, l := range t.links {
		if t.carriers[l.Index] {
			f.Routed[l.Name] = true
		}
		if up := t.Uppers(l.Name); up != nil {
			f.Uppers[l.Name] = up
		}
	}
	return f
}

// deviceOf is FromLink of a kept link.
func deviceOf(l *Link) device.Device {
	d := device.New()
	d.ID, d.IfName, d.IfNames = l.Name, l.Name, []string{l.Name}
	d.Kind = l.Kind
	d.LinkType = l.LinkType
	d.OperState = l.OperState
	d.MAC = l.MAC
	d.MTU = l.MTU
	d.Carrier = l.Carrier()
	return d
}
