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
// again: the host name back, the alias cleared. Such a link is one the kernel returned from a
// destroyed pod namespace (physical links and VFs come back under their pod-side name; virtual
// ones are destroyed), or one a crashed hook left half way.
//
// It is cheap and safe to call on every link event: one link dump, no change to any link without
// our alias, and a link whose device lock is held (a hook is moving it right now) is left alone for
// the next call. A link whose host name is taken by another link keeps its name and alias and is
// reported in the error. Options.HostNS and Options.LockDir apply; the rest is ignored.
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
			errs = append(errs, err)
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
	r := Returned{From: name, To: hostName, PCIAddress: pci}
	if name != hostName {
		taken, err := host.taken(hostName, cur.Attrs().Index)
		if err != nil {
			return Returned{}, err
		}
		if taken {
			return Returned{}, fmt.Errorf("returned link %s: its host name %s is taken by another link", name, hostName)
		}
		up := isUp(cur)
		if up { // the kernel refuses to rename a running link
			if err := host.h.LinkSetDown(cur); err != nil {
				return Returned{}, fmt.Errorf("returned link %s: set down: %w", name, err)
			}
		}
		if err := host.h.LinkSetName(cur, hostName); err != nil {
			if up {
				_ = host.h.LinkSetUp(cur)
			}
			return Returned{}, fmt.Errorf("returned link %s: rename to %s: %w", name, hostName, err)
		}
		if up {
			if err := host.h.LinkSetUp(cur); err != nil {
				return Returned{}, fmt.Errorf("returned link %s: set %s up: %w", name, hostName, err)
			}
		}
	}
	if err := host.h.LinkSetAlias(cur, ""); err != nil {
		return Returned{}, fmt.Errorf("returned link %s: clear alias: %w", hostName, err)
	}
	return r, nil
}
