package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma"
)

// Returned is a link the kernel handed back to the host when a pod's namespace was destroyed, as
// ReconcileReturned found and fixed it.
type Returned struct {
	From       string // the name it came back under: its pod-side name, or devN on a clash
	To         string // its host name, from our alias (From == To when it came back under it)
	PCIAddress string // from our alias; "" for a software link
	// RDMA: this is an RDMA device of the device's record, renamed From -> To (the kernel names one
	// "ibdevN" when its name is taken on its way back).
	RDMA bool
}

// ReconcileReturned finds host links carrying our alias (see Alias) and makes them plain host links
// again, as a completed Detach leaves them: the host name back, and what the device's record says the
// link had on the host (addresses, MTU, admin state, bridge or bond, alias). Such a link is one the
// kernel returned from a destroyed pod namespace (physical links and VFs come back under their
// pod-side name and without addresses; virtual ones are destroyed), or one a killed hook left half
// way. Without a record (a link moved by a hook from before records) it gets its host name back and
// our alias cleared. The record is removed once every link it lists is home and complete.
//
// It is cheap and safe to call on every link event: one link dump, no change to any link without
// our alias, and a link whose device lock is held (a hook is moving it right now) is left alone for
// the next call. A link whose host name is taken by another link, or whose record cannot be read,
// keeps its name and alias and is reported in the error.
//
// RDMA devices a record lists (see Options.RDMADevices) come home by themselves when a pod's
// namespace is destroyed: the kernel moves them to the host namespace, under their name or, where
// that is taken, "ibdevN", and re-creates an IPoIB netdev there without our alias or what it had.
// So records that list RDMA devices are looked at even when no link carries our alias: once every
// RDMA device of one is on the host (known by index or name, and node GUID), each gets its recorded
// name back, the function's netdevs on the host get their recorded facts, and the record is removed
// when the links are complete too. Until then (an RDMA device still in a pod) nothing RDMA is
// touched; an RDMA device no record lists never is. The RDMA devices are listed only when such a
// record exists. Options.HostNS, LockDir, SysfsRoot and RDMA apply; the rest is ignored.
func ReconcileReturned(o Options) ([]Returned, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	host, err := openSpace(o.HostNS, "host")
	if err != nil {
		return nil, err
	}
	defer host.close()
	ls, err := host.links()
	if err != nil {
		return nil, err
	}
	var (
		done []Returned
		errs []error
		seen = map[string]bool{} // lock keys of the devices a link of ours was found for
	)
	for _, l := range ls {
		hostName, pci, ours := ParseAlias(l.Attrs().Alias)
		if !ours {
			continue
		}
		t := Target{HostName: hostName} // the same lock the hook takes for this device
		if pci != "" {
			t = Target{PCIAddress: pci}
		}
		seen[t.lockKey()] = true
		r, err := reconcileOne(host, o, l, t, hostName)
		switch {
		case errors.Is(err, errLocked):
		case err != nil:
			errs = append(errs, fmt.Errorf("returned link %s: %w", l.Attrs().Name, err))
		default:
			done = append(done, r...)
		}
	}
	r, err := reconcileRDMARecords(host, o, seen)
	return append(done, r...), errors.Join(append(errs, err)...)
}

func reconcileOne(host *space, o Options, l netlink.Link, t Target, hostName string) ([]Returned, error) {
	pci := t.PCIAddress
	lock, err := tryLockDevice(o.LockDir, t.lockKey())
	if err != nil {
		return nil, err
	}
	defer lock.unlock()

	// Re-read under the lock: a hook may have finished with it since the dump.
	name := l.Attrs().Name
	cur, err := host.linkByName(name)
	if err != nil {
		return nil, err
	}
	if cur == nil || cur.Attrs().Index != l.Attrs().Index || cur.Attrs().Alias != l.Attrs().Alias {
		return nil, errLocked // changed under us: the next call sees the new state
	}
	rec, err := lock.readRecord(t)
	if err != nil {
		return nil, err
	}
	f, ok := rec.facts(hostName)
	if !ok { // no record of it: its name back, our alias cleared, nothing else changed
		f = linkFacts{HostName: hostName, MTU: cur.Attrs().MTU, Up: isUp(cur)}
	}
	settled := settleHome(host, name, f)
	if settled != nil && !errors.Is(settled, errMasterGone) {
		return nil, settled
	}
	done := []Returned{{From: name, To: hostName, PCIAddress: pci}}
	if rec != nil {
		complete := true
		if rec.hasRDMA() {
			r, home, err := reconcileRDMA(host, o, t, rec)
			done = append(done, r...)
			if err != nil {
				return done, err
			}
			complete = home
		}
		if err := removeIfComplete(host, lock, rec, complete); err != nil {
			return done, err
		}
	}
	if settled != nil { // home and complete, but for its master
		return done, settled
	}
	return done, nil
}

// removeIfComplete removes the record when complete (its RDMA devices are home, if any) and every
// link it lists is on the host under its host name without our alias.
func removeIfComplete(host *space, lock *deviceLock, rec *record, complete bool) error {
	for _, rf := range rec.Links {
		if !complete {
			break
		}
		hl, err := host.linkByName(rf.HostName)
		if err != nil {
			return err
		}
		if hl == nil {
			complete = false
		} else if _, _, ours := ParseAlias(hl.Attrs().Alias); ours {
			complete = false
		}
	}
	if !complete {
		return nil
	}
	return lock.removeRecord()
}

// reconcileRDMA looks for the record's RDMA devices on the host. Once all are there (home says so)
// each gets its recorded name back, and the target's netdevs on the host their recorded facts
// (settleRecreated); until then nothing is touched.
func reconcileRDMA(host *space, o Options, t Target, rec *record) (done []Returned, home bool, err error) {
	devs, err := o.RDMA.List(host.ns)
	if err != nil {
		return nil, false, fmt.Errorf("list the RDMA devices in the host namespace: %w", err)
	}
	found := make([]rdma.Device, len(rec.RDMA))
	for i, f := range rec.RDMA {
		d, ok := f.find(devs)
		if !ok {
			return nil, false, nil // still in a pod, or on its way back
		}
		found[i] = d
	}
	var errs []error
	for i, f := range rec.RDMA {
		if found[i].Name == f.Name {
			continue
		}
		if err := nameRDMA(o.RDMA, host, found[i], f.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, Returned{From: found[i].Name, To: f.Name, PCIAddress: t.PCIAddress, RDMA: true})
	}
	settled, err := settleRecreated(host, t, o.SysfsRoot, rec)
	for _, name := range settled {
		done = append(done, Returned{From: name, To: name, PCIAddress: t.PCIAddress})
	}
	if err != nil && !errors.Is(err, errMasterGone) {
		errs = append(errs, err)
	}
	return done, len(errs) == 0, errors.Join(errs...)
}

// reconcileRDMARecords does reconcileRDMA for the records that list RDMA devices, of the devices no
// link of ours was found for (seen has their lock keys): a re-created IPoIB netdev carries no alias.
func reconcileRDMARecords(host *space, o Options, seen map[string]bool) ([]Returned, error) {
	if _, err := os.Lstat(o.LockDir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no hook ran yet: no record
	}
	dir, err := openLockDir(o.LockDir)
	if err != nil {
		return nil, err
	}
	names, err := dir.Readdirnames(-1)
	_ = dir.Close()
	if err != nil {
		return nil, fmt.Errorf("list the lock directory: %w", err)
	}
	var (
		done []Returned
		errs []error
	)
	for _, name := range names {
		key, ok := strings.CutSuffix(name, ".json")
		if !ok || seen[key] {
			continue
		}
		t, ok := targetOfKey(key)
		if !ok {
			continue
		}
		r, err := reconcileRecord(host, o, t)
		done = append(done, r...)
		if err != nil && !errors.Is(err, errLocked) {
			errs = append(errs, fmt.Errorf("%s: %w", t, err))
		}
	}
	return done, errors.Join(errs...)
}

func reconcileRecord(host *space, o Options, t Target) ([]Returned, error) {
	lock, err := tryLockDevice(o.LockDir, t.lockKey())
	if err != nil {
		return nil, err
	}
	defer lock.unlock()
	rec, err := lock.readRecord(t)
	if err != nil || !rec.hasRDMA() {
		return nil, err
	}
	done, home, err := reconcileRDMA(host, o, t, rec)
	if err != nil {
		return done, err
	}
	return done, removeIfComplete(host, lock, rec, home)
}

// targetOfKey is the target a lock key (Target.lockKey) belongs to.
func targetOfKey(key string) (Target, bool) {
	var t Target
	if pci, ok := strings.CutPrefix(key, "pci-"); ok {
		t.PCIAddress = pci
	} else if name, ok := strings.CutPrefix(key, "link-"); ok {
		t.HostName = name
	}
	return t, t.Validate() == nil
}
