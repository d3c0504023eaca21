package netns

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Returned is a link the kernel handed back to the host when a pod's namespace was destroyed, as
// ReconcileReturned found and fixed it.
type Returned struct {
	From       string // the name it came back under: its pod-side name, or devN on a clash
	To         string // its host name, from our alias (From == To when it came back under it)
	PCIAddress string // from our alias; "" for a software link
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
// keeps its name and alias and is reported in the error. Options.HostNS and Options.LockDir apply;
// the rest is ignored.
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
	)
	for _, l := range ls {
		hostName, pci, ours := ParseAlias(l.Attrs().Alias)
		if !ours {
			continue
		}
		r, err := reconcileOne(host, o.LockDir, l, hostName, pci)
		switch {
		case errors.Is(err, errLocked):
		case err != nil:
			errs = append(errs, fmt.Errorf("returned link %s: %w", l.Attrs().Name, err))
		default:
			done = append(done, r)
		}
	}
	return done, errors.Join(errs...)
}

func reconcileOne(host *space, lockDir string, l netlink.Link, hostName, pci string) (Returned, error) {
	t := Target{HostName: hostName} // the same lock the hook takes for this device
	if pci != "" {
		t = Target{PCIAddress: pci}
	}
	lock, err := tryLockDevice(lockDir, t.lockKey())
	if err != nil {
		return Returned{}, err
	}
	defer lock.unlock()

	// Re-read under the lock: a hook may have finished with it since the dump.
	name := l.Attrs().Name
	cur, err := host.linkByName(name)
	if err != nil {
		return Returned{}, err
	}
	if cur == nil || cur.Attrs().Index != l.Attrs().Index || cur.Attrs().Alias != l.Attrs().Alias {
		return Returned{}, errLocked // changed under us: the next call sees the new state
	}
	rec, err := lock.readRecord(t)
	if err != nil {
		return Returned{}, err
	}
	f, ok := rec.facts(hostName)
	if !ok { // no record of it: its name back, our alias cleared, nothing else changed
		f = linkFacts{HostName: hostName, MTU: cur.Attrs().MTU, Up: isUp(cur)}
	}
	settled := settleHome(host, name, f)
	if settled != nil && !errors.Is(settled, errMasterGone) {
		return Returned{}, settled
	}
	if rec != nil {
		complete := true
		for _, rf := range rec.Links {
			hl, err := host.linkByName(rf.HostName)
			if err != nil {
				return Returned{}, err
			}
			if hl == nil {
				complete = false
			} else if _, _, ours := ParseAlias(hl.Attrs().Alias); ours {
				complete = false
			}
		}
		if complete {
			if err := lock.removeRecord(); err != nil {
				return Returned{}, err
			}
		}
	}
	if settled != nil { // home and complete, but for its master
		return Returned{}, settled
	}
	return Returned{From: name, To: hostName, PCIAddress: pci}, nil
}
