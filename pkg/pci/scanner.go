package pci

import (
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/internal/deepeq"
)

// Scanner reads the PCI network functions of one sysfs root and keeps what it read, so that Update
// re-reads only the functions an event names instead of the whole bus. It is not safe for
// concurrent use: one goroutine (the daemon's loop, or `discover`) owns it.
//
// What a scanner keeps per function is the Device the scan produced and the few facts linking
// needs (its PF, its VFs' indexes, its representors): the devices themselves and nothing that grows
// with the events seen.
type Scanner struct {
	root  string
	ids   *IDs
	fns   map[string]*function
	vfsOf map[string]map[string]struct{} // PF address -> the functions whose physfn names it
	repOf map[string]string              // representor netdev (its device ID) -> its PF's address
	reads atomic.Int64                   // functions read from sysfs
}

// NewScanner returns a scanner of the sysfs root (the sysfs folder itself: "/sys",
// "testdata/sysfs/e810/sys") that names functions from ids (nil: no names). It reads nothing yet.
func NewScanner(sysfsRoot string, ids *IDs) *Scanner {
	return &Scanner{root: sysfsRoot, ids: ids, fns: map[string]*function{},
		vfsOf: map[string]map[string]struct{}{}, repOf: map[string]string{}}
}

// Root is the sysfs root the scanner reads.
func (s *Scanner) Root() string { return s.root }

// Reads is how many PCI functions the scanner has read from sysfs since it was made: every
// function of each Scan, and those Update re-read.
func (s *Scanner) Reads() int64 { return s.reads.Load() }

// Scan reads every function under the root again (see the package function Scan), replaces what
// the scanner knew, and returns the devices sorted by ID. On an error the scanner keeps what it
// knew.
func (s *Scanner) Scan() ([]device.Device, error) {
	if _, err := s.Load(); err != nil {
		return nil, err
	}
	return s.Devices(), nil
}

// Load is Scan without building the list: the scanner knows every function afterwards. It returns
// the IDs of the devices that differ from what the scanner knew before (added, gone or changed),
// sorted: all of them at the first load.
func (s *Scanner) Load() ([]string, error) {
	buf := new(scratch)
	busPath := filepath.Join(s.root, "bus", "pci", "devices")
	bus, err := openSysDir(busPath, buf)
	if err != nil {
		return nil, fmt.Errorf("pci: listing PCI functions of sysfs root %s: %w", s.root, err)
	}
	defer bus.close()
	addrs, err := bus.names()
	if err != nil {
		return nil, fmt.Errorf("pci: listing PCI functions of sysfs root %s: %w", s.root, err)
	}
	addrs = slices.DeleteFunc(addrs, func(a string) bool {
		if !device.IsPCIAddress(a) {
			klog.Warningf("pci: %s: %q is not a PCI address, skipped", busPath, a)
			return true
		}
		return false
	})
	old := s.fns
	var read []*function
	withSriovnetRoot(s.root, func() { read = s.readAll(&bus, addrs, old) })
	s.fns = make(map[string]*function, len(addrs))
	s.vfsOf = map[string]map[string]struct{}{}
	s.repOf = map[string]string{}
	changed := map[string]bool{}
	pairs := make([][2]string, 0, 8)
	for i, f := range read {
		if f == nil {
			continue
		}
		addr := addrs[i]
		s.add(addr, f)
		if o := old[addr]; o != f {
			// Read anew: it came, or differs from what was known.
			changed[addr] = true
			for _, x := range []*function{o, f} {
				if x != nil {
					for j := range x.reps {
						changed[x.reps[j].name] = true
					}
				}
			}
			if p := [2]string{f.dev.Vendor, f.dev.Device}; !slices.Contains(pairs, p) {
				pairs = append(pairs, p)
			}
		}
	}
	for addr, o := range old {
		if s.fns[addr] == nil {
			changed[addr] = true
			for j := range o.reps {
				changed[o.reps[j].name] = true
			}
		}
	}
	s.ids.Resolve(pairs)
	for addr, f := range s.fns {
		if changed[addr] {
			f.dev.VendorName, f.dev.DeviceName = s.ids.Names(f.dev.Vendor, f.dev.Device)
		}
		before := linkedFacts(&f.dev)
		s.link(&bus, addr, f)
		if !changed[addr] && linkedFacts(&f.dev) != before {
			changed[addr] = true // the same function, linked differently: its PF changed
		}
	}
	out := make([]string, 0, len(changed))
	for id := range changed {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// linked are the facts link sets, to tell whether linking again changed a function.
type linked struct {
	pfAddr, pfName, pfLinkType, pkey string
	vfIndex                          int
}

func linkedFacts(d *device.Device) linked {
	return linked{d.PFPCIAddress, d.PFName, d.PFLinkType, d.PKey, d.VFIndex}
}

// sameRead reports whether a function read now is the one known (old, linked and named): equal in
// everything a read finds. Linking and names are left out; they are done again.
func sameRead(old, now *function) bool {
	if old.physfn != now.physfn || old.pkeyOf != now.pkeyOf || !maps.Equal(old.virtfns, now.virtfns) ||
		!slices.Equal(old.reps, now.reps) {
		return false
	}
	d := old.dev
	d.PFPCIAddress, d.PFName, d.PFLinkType, d.VFIndex, d.PKey = "", "", "", -1, ""
	d.VendorName, d.DeviceName = now.dev.VendorName, now.dev.DeviceName
	return deepeq.Equal(&d, &now.dev)
}

// readAll reads the functions at addrs, in parallel (sysfs reads are system calls: two cores read
// about twice as fast as one); result i is addrs[i]'s function, nil for one that is not a network
// function or could not be read. A function read as it was known (in old) is the known one: a
// rescan that finds nothing new holds no second copy of the node.
func (s *Scanner) readAll(bus *sysDir, addrs []string, old map[string]*function) []*function {
	out := make([]*function, len(addrs))
	workers := min(runtime.GOMAXPROCS(0), 4, len(addrs)/32+1)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			b := *bus // the same open folder, with buffers of its own
			b.buf = new(scratch)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(addrs) {
					return
				}
				f := s.readOne(&b, addrs[i], true)
				if o := old[addrs[i]]; o != nil && f != nil && sameRead(o, f) {
					f = o
				}
				out[i] = f
			}
		})
	}
	wg.Wait()
	return out
}

// readOne reads the function at addr; nil when it is not a network function, or is gone (logged
// when warnGone: a full scan listed it a moment ago).
func (s *Scanner) readOne(bus *sysDir, addr string, warnGone bool) *function {
	s.reads.Add(1)
	dir, err := bus.sub(addr)
	if err != nil {
		if warnGone || !notExist(err) {
			klog.Warningf("pci: %s: %v", addr, err)
		}
		return nil
	}
	defer dir.close()
	f := readFunction(&dir, addr)
	if f != nil && f.dev.IsVFIO() {
		f.dev.VFIONoIOMMU = noIOMMUGroup(s.root, addr, f.dev.IOMMUGroup)
	}
	return f
}

// add records a function read at addr.
func (s *Scanner) add(addr string, f *function) {
	s.fns[addr] = f
	if f.physfn != "" {
		if s.vfsOf[f.physfn] == nil {
			s.vfsOf[f.physfn] = map[string]struct{}{}
		}
		s.vfsOf[f.physfn][addr] = struct{}{}
	}
	for i := range f.reps {
		s.repOf[f.reps[i].name] = addr
	}
}

// drop forgets the function at addr.
func (s *Scanner) drop(addr string) {
	f := s.fns[addr]
	if f == nil {
		return
	}
	delete(s.fns, addr)
	if vfs := s.vfsOf[f.physfn]; vfs != nil {
		delete(vfs, addr)
		if len(vfs) == 0 {
			delete(s.vfsOf, f.physfn)
		}
	}
	for i := range f.reps {
		if s.repOf[f.reps[i].name] == addr {
			delete(s.repOf, f.reps[i].name)
		}
	}
}

// link fills what a function's device takes from other functions: a VF's PF facts, and the
// partition key of an InfiniBand function (whose link type a VF without netdev takes from its PF).
func (s *Scanner) link(bus *sysDir, addr string, f *function) {
	d := &f.dev
	d.PFPCIAddress, d.PFName, d.PFLinkType, d.VFIndex, d.PKey = "", "", "", -1, ""
	if f.physfn != "" {
		linkVF(d, addr, f.physfn, s.fns)
	}
	if f.pkeyOf != "" && effectiveLinkType(d) == "infiniband" {
		// sriov-dp reads the key only of an InfiniBand function (its VF takes the PF's type).
		if dir, err := bus.sub(addr); err == nil {
			d.PKey = readPKey(addr, &dir, f.pkeyOf)
			dir.close()
		}
	}
}

// Update re-reads the functions at addrs, as events name them (a uevent of the function or of a
// device beneath it, a link event of one of its netdevs): one gone from sysfs, or no longer a
// network function, is dropped. A function that appeared or left also has its PF re-read (its
// virtfnN links and sriov_numvfs changed with it), and the VFs of every PF re-read are linked again
// (PF name and link type, partition key) without being re-read. It returns the IDs of the devices
// that may differ from before, sorted: the functions re-read or re-linked and their representors,
// those that left included. Nothing else is read. An error means the sysfs root itself is
// unreadable; the scanner is unchanged then.
func (s *Scanner) Update(addrs []string) ([]string, error) {
	busPath := filepath.Join(s.root, "bus", "pci", "devices")
	bus, err := openSysDir(busPath, new(scratch))
	if err != nil {
		return nil, fmt.Errorf("pci: re-reading PCI functions of sysfs root %s: %w", s.root, err)
	}
	defer bus.close()
	touched := map[string]bool{}
	reread := map[string]bool{}
	queue := slices.Clone(addrs)
	withSriovnetRoot(s.root, func() {
		for len(queue) > 0 {
			addr := queue[0]
			queue = queue[1:]
			if reread[addr] || !device.IsPCIAddress(addr) {
				continue
			}
			reread[addr] = true
			old := s.fns[addr]
			f := s.readOne(&bus, addr, false)
			if old != nil {
				touched[addr] = true
				for i := range old.reps {
					touched[old.reps[i].name] = true
				}
				s.drop(addr)
			}
			if f != nil {
				f.dev.VendorName, f.dev.DeviceName = s.ids.Names(f.dev.Vendor, f.dev.Device)
				s.add(addr, f)
				touched[addr] = true
				for i := range f.reps {
					touched[f.reps[i].name] = true
				}
			}
			if (old == nil) != (f == nil) {
				pf := ""
				if old != nil {
					pf = old.physfn
				} else {
					pf = f.physfn
				}
				if pf != "" {
					queue = append(queue, pf)
				}
			}
		}
	})
	relink := map[string]bool{}
	for addr := range reread {
		if _, ok := s.fns[addr]; ok {
			relink[addr] = true
		}
		for vf := range s.vfsOf[addr] {
			relink[vf] = true
		}
	}
	for addr := range relink {
		f := s.fns[addr]
		s.link(&bus, addr, f)
		touched[addr] = true
		for i := range f.reps {
			touched[f.reps[i].name] = true
		}
	}
	out := make([]string, 0, len(touched))
	for id := range touched {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// Device returns the device with the ID (a function's address, a representor's netdev name) as
// the scanner knows it now.
func (s *Scanner) Device(id string) (device.Device, bool) {
	if f, ok := s.fns[id]; ok {
		return f.dev, true
	}
	pf, ok := s.repOf[id]
	if !ok {
		return device.Device{}, false
	}
	f := s.fns[pf]
	for i := range f.reps {
		if f.reps[i].name == id {
			return representor(&f.dev, &f.reps[i]), true
		}
	}
	return device.Device{}, false
}

// NetdevNames calls fn with the ID and netdev names (IfNames) of every device, unsorted, without
// building the devices.
func (s *Scanner) NetdevNames(fn func(id string, names []string)) {
	for _, f := range s.fns {
		fn(f.dev.ID, f.dev.IfNames)
		for i := range f.reps {
			fn(f.reps[i].name, []string{f.reps[i].name})
		}
	}
}

// Len is the number of devices Devices would return.
func (s *Scanner) Len() int { return len(s.fns) + len(s.repOf) }

// Devices returns every device the scanner knows, sorted by ID: one per network function and one
// per switchdev representor of a PF.
func (s *Scanner) Devices() []device.Device {
	ids := make([]string, 0, len(s.fns)+len(s.repOf))
	for addr, f := range s.fns {
		ids = append(ids, addr)
		for i := range f.reps {
			ids = append(ids, f.reps[i].name)
		}
	}
	slices.Sort(ids) // the IDs, not the devices: sorting moves 16 bytes, not hundreds
	out := make([]device.Device, 0, len(ids))
	for _, id := range ids {
		d, _ := s.Device(id)
		out = append(out, d)
	}
	return out
}

// FunctionOf returns the address of the PCI function whose netdev the sysfs root's class/net
// entry name is (a VF's, a virtio-net's nested one), or "" for a netdev of no PCI function (a
// software link, or no such netdev in this root): the link a netlink event names, mapped to the
// function to re-read.
func (s *Scanner) FunctionOf(netdev string) string {
	if netdev == "" || netdev == "." || netdev == ".." || filepath.Base(netdev) != netdev {
		return ""
	}
	target, err := filepath.EvalSymlinks(filepath.Join(s.root, "class", "net", netdev))
	if err != nil {
		return ""
	}
	// .../devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0/net/ens1f0v0: the last PCI address on the
	// way up is the function (a bridge above it is a PCI address too).
	for p := filepath.Dir(target); p != "/" && p != "."; p = filepath.Dir(p) {
		if b := filepath.Base(p); device.IsPCIAddress(b) {
			return b
		}
	}
	return ""
}
