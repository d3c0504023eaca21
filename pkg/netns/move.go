package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/defroute"
)

// Moved is one link that changed namespace.
type Moved struct {
	HostName   string
	PodName    string
	PCIAddress string // "" for a software link
}

// Result says what Attach or Detach did.
type Result struct {
	Moved []Moved
	// Already: nothing to move; attach found the device in the pod, detach found it home.
	Already bool
	// Finished: links attach found in the pod half attached (an earlier hook was killed between the
	// move and the set-up) and renamed or set up.
	Finished []Moved
	// NamespaceGone: detach found the pod's namespace gone. The kernel destroys virtual links with
	// it and hands physical ones back to the host, where ReconcileReturned renames them.
	NamespaceGone bool
}

// begin validates a move, takes the device's lock (hooks on one device serialize) and opens the host
// namespace; release undoes both.
func begin(t Target, o Options) (_ Options, host *space, release func(), err error) {
	if err := t.Validate(); err != nil {
		return o, nil, nil, err
	}
	if o, err = o.withDefaults(); err != nil {
		return o, nil, nil, err
	}
	lock, err := lockDevice(o.LockDir, t.lockKey())
	if err != nil {
		return o, nil, nil, fmt.Errorf("%s: %w", t, err)
	}
	if host, err = openSpace(o.HostNS, "host"); err != nil {
		lock.unlock()
		return o, nil, nil, err
	}
	return o, host, func() { host.close(); lock.unlock() }, nil
}

// Attach moves the target's links from the host namespace into the namespace at podNS. Per link: it
// replaces the link's alias with ours (see Alias), which keeps the host name, notes the global
// addresses and MTU, moves the link, renames it (Options.PodIfName), re-adds the addresses, restores
// the MTU and sets it up. Any failure undoes what was done, so the link is back as it was, its old
// alias included. A successful Detach clears the alias: an alias an administrator gave a pooled link
// does not survive its first trip into a pod.
//
// It is idempotent: a device already in podNS (found by our alias, or for a PCI function by its
// parent device) is success with Result.Already. A link of ours that an earlier, killed hook left in
// the pod half done (down, or under its travel name) is finished first: renamed to its pod-side name
// and set up (Result.Finished); the addresses that hook noted on the host died with it. A software
// link found in the pod ends the search: the host is not searched, so a link created anew on the host
// under the same name (systemd-networkd does that) stays there. It refuses loopback and the links
// carrying the host's default route, in any routing table, and the links beneath them (pkg/defroute).
func Attach(podNS string, t Target, o Options) (Result, error) {
	o, host, release, err := begin(t, o)
	if err != nil {
		return Result{}, err
	}
	defer release()
	pod, err := openSpace(podNS, "pod")
	if err != nil {
		return Result{}, err
	}
	defer pod.close()
	if pod.ns.Equal(host.ns) {
		return Result{}, fmt.Errorf("pod network namespace %s is the host's own", podNS)
	}

	inPod, err := findInPod(pod, t)
	if err != nil {
		return Result{}, err
	}
	var onHost []netlink.Link
	if t.HostName == "" || len(inPod) == 0 { // a software link is one netdev: in the pod, it is done
		if onHost, err = findOnHost(host, t, o.SysfsRoot); err != nil {
			return Result{}, err
		}
	}
	if len(onHost) == 0 && len(inPod) == 0 {
		return Result{}, fmt.Errorf("%s: no link in the host namespace nor in pod namespace %s", t, podNS)
	}
	if err := refuseProtected(host, onHost, o.AllowUpperDevices); err != nil {
		return Result{}, fmt.Errorf("%s: %w", t, err)
	}
	res := Result{Already: len(onHost) == 0}
	// Links already in the pod are finished first, so they keep the lower pod-side names.
	if res.Finished, err = finishAll(pod, inPod, t, o.PodIfName); err != nil {
		return Result{}, fmt.Errorf("%s: %w", t, err)
	}

	var backs []func() error
	for _, l := range onHost {
		want := o.PodIfName
		if want == "" {
			want = l.Attrs().Name
		}
		m, back, err := attachOne(host, pod, l, t.PCIAddress, want)
		if err != nil {
			err = fmt.Errorf("%s: %w", t, err)
			for i := len(backs) - 1; i >= 0; i-- {
				if rerr := backs[i](); rerr != nil {
					err = fmt.Errorf("%w; rolling back failed too: %w", err, rerr)
				}
			}
			return Result{}, err
		}
		backs = append(backs, back)
		res.Moved = append(res.Moved, m)
	}
	return res, nil
}

// finishAll finishes the links of ours found in the pod (see finish); links of a PCI function that
// lack our alias were put there by something else and are left alone.
func finishAll(pod *space, inPod []podLink, t Target, podIfName string) ([]Moved, error) {
	var done []Moved
	for _, pl := range inPod {
		if !pl.ours {
			continue
		}
		want := podIfName
		if want == "" {
			want = pl.hostName
		}
		name, changed, err := finish(pod, pl.link, want)
		if err != nil {
			return nil, fmt.Errorf("finish the earlier attach of %s, found in the pod as %s: %w", pl.hostName, pl.link.Attrs().Name, err)
		}
		if changed {
			done = append(done, Moved{HostName: pl.hostName, PodName: name, PCIAddress: t.PCIAddress})
		}
	}
	return done, nil
}

// finish makes a link of ours in the pod what a complete attach leaves: named like want (want, or
// want+1, ... when taken, as attach names it) and up. It returns the name and whether it changed
// anything.
func finish(pod *space, l netlink.Link, want string) (name string, changed bool, err error) {
	name = l.Attrs().Name
	if !isNameLike(name, want) {
		wasUp := isUp(l)
		if wasUp { // the kernel renames only a link that is down
			if err := pod.h.LinkSetDown(l); err != nil {
				return "", false, fmt.Errorf("set %s down in the pod to rename it: %w", name, err)
			}
			l.Attrs().Flags &^= net.FlagUp
		}
		if name, err = pod.renameLike(l, want); err != nil {
			if wasUp {
				_ = pod.h.LinkSetUp(l) // as it was; the rename error is the one to report
			}
			return "", false, err
		}
		changed = true
	}
	if !isUp(l) {
		if err := pod.h.LinkSetUp(l); err != nil {
			return "", false, fmt.Errorf("set %s up in the pod: %w", name, err)
		}
		changed = true
	}
	return name, changed, nil
}

// isNameLike reports whether name is one attach gives a link that wants want: want, or want's
// trailing number counted up.
func isNameLike(name, want string) bool {
	for c := range nameCandidates(want) {
		if c == name {
			return true
		}
	}
	return false
}

// attachOne moves one host link into the pod under the first free name like want. It returns how to
// bring the link back exactly as it was, its alias included.
func attachOne(host, pod *space, l netlink.Link, pci, want string) (Moved, func() error, error) {
	a := *l.Attrs()
	addrs, err := host.globalAddrs(l)
	if err != nil {
		return Moved{}, nil, err
	}
	alias := Alias(a.Name, pci)
	if a.Alias != alias {
		if err := host.h.LinkSetAlias(l, alias); err != nil {
			return Moved{}, nil, fmt.Errorf("set alias of %s: %w", a.Name, err)
		}
	}
	restoreAlias := func(err error) error {
		if a.Alias == alias {
			return err
		}
		hl, rerr := host.linkByName(a.Name) // a failed transfer may have changed the index
		if rerr == nil && hl == nil {
			rerr = fmt.Errorf("%s is gone", a.Name)
		}
		if rerr == nil {
			rerr = host.h.LinkSetAlias(hl, a.Alias)
		}
		if rerr != nil {
			return fmt.Errorf("%w; restoring the alias of %s failed too: %w", err, a.Name, rerr)
		}
		return err
	}
	pl, err := transfer(l, host, pod, want, false)
	if err != nil {
		return Moved{}, nil, restoreAlias(err)
	}
	podName := pl.Attrs().Name
	back := func() error {
		_, err := bringHome(pod, host, pl, a.Name, addrs, a.MTU, a.Flags&net.FlagUp != 0, a.Alias)
		return err
	}
	fail := func(err error) (Moved, func() error, error) {
		if rerr := back(); rerr != nil {
			err = fmt.Errorf("%w; moving %s back failed too: %w", err, a.Name, rerr)
		}
		return Moved{}, nil, err
	}
	if pl.Attrs().MTU != a.MTU {
		if err := pod.h.LinkSetMTU(pl, a.MTU); err != nil {
			return fail(fmt.Errorf("set MTU %d on %s in the pod: %w", a.MTU, podName, err))
		}
	}
	if err := pod.addAddrs(pl, podName, addrs); err != nil {
		return fail(err)
	}
	if err := pod.h.LinkSetUp(pl); err != nil {
		return fail(fmt.Errorf("set %s up in the pod: %w", podName, err))
	}
	return Moved{HostName: a.Name, PodName: podName, PCIAddress: pci}, back, nil
}

// Detach brings the target's links home from the namespace at podNS: found there by our alias (or a
// PCI function's parent device), set down, moved back under the host name, given the addresses they
// had in the pod, alias cleared, set up. A device already home, or a pod namespace that is gone, is
// success. Once a link is home, later failures (an address that cannot be added) are reported but
// leave it home. The MTU travels with the link.
func Detach(podNS string, t Target, o Options) (Result, error) {
	o, host, release, err := begin(t, o)
	if err != nil {
		return Result{}, err
	}
	defer release()
	pod, err := openSpace(podNS, "pod")
	if errors.Is(err, ErrNamespaceGone) {
		return Result{NamespaceGone: true}, nil
	}
	if err != nil {
		return Result{}, err
	}
	defer pod.close()
	if pod.ns.Equal(host.ns) { // the pod's process is gone and its pid now names a host process
		return Result{Already: true}, nil
	}

	inPod, err := findInPod(pod, t)
	if err != nil {
		return Result{}, err
	}
	if len(inPod) == 0 {
		return Result{Already: true}, nil
	}
	var (
		res  Result
		errs []error
	)
	for _, pl := range inPod {
		addrs, err := pod.globalAddrs(pl.link)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		podName := pl.link.Attrs().Name
		home, err := bringHome(pod, host, pl.link, pl.hostName, addrs, pl.link.Attrs().MTU, true, "")
		if err != nil {
			errs = append(errs, err)
		}
		if home {
			res.Moved = append(res.Moved, Moved{HostName: pl.hostName, PodName: podName, PCIAddress: t.PCIAddress})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%s: %w", t, err)
	}
	return res, nil
}

// bringHome moves pl from the pod back to the host under hostName, then puts back the addresses and
// MTU, sets the alias and, if up, sets it up. The move itself is all or nothing; the steps after it
// are reported but leave the link home; home says whether the move happened.
func bringHome(pod, host *space, pl netlink.Link, hostName string, addrs []netlink.Addr, mtu int, up bool, alias string) (home bool, err error) {
	hl, err := transfer(pl, pod, host, hostName, true)
	if err != nil {
		return false, err
	}
	var errs []error
	if hl.Attrs().MTU != mtu {
		if err := host.h.LinkSetMTU(hl, mtu); err != nil {
			errs = append(errs, fmt.Errorf("set MTU %d on %s: %w", mtu, hostName, err))
		}
	}
	if err := host.addAddrs(hl, hostName, addrs); err != nil {
		errs = append(errs, err)
	}
	if err := host.h.LinkSetAlias(hl, alias); err != nil {
		errs = append(errs, fmt.Errorf("set alias of %s: %w", hostName, err))
	}
	if up {
		if err := host.h.LinkSetUp(hl); err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", hostName, err))
		}
	}
	return true, errors.Join(errs...)
}

// transfer moves l from one namespace to the other, returning the link as the far side sees it. It
// is all or nothing: on failure the link is back in from, named and up as before. The link travels
// down (the kernel closes it anyway).
//
// Into a pod (home false) the link gets the first free name like name there (name, name+1, ...). On
// the way home it gets name itself or the move fails, and the rename happens on the near side when
// name is free there, so the host never sees the pod-side name. A name that a concurrent hook takes
// between the look and the rename or move (the kernel's EEXIST) is retried with the next free one.
func transfer(l netlink.Link, from, to *space, name string, home bool) (netlink.Link, error) {
	// Fresh flags: the caller's copy may predate a set-up (older kernels refuse to rename a link
	// that is up).
	fresh, err := from.linkByName(l.Attrs().Name)
	if err != nil {
		return nil, err
	}
	if fresh == nil || fresh.Attrs().Index != l.Attrs().Index {
		return nil, fmt.Errorf("%s is no longer in the %s namespace", l.Attrs().Name, from.what)
	}
	l = fresh
	a := *l.Attrs()
	if home {
		if taken, err := to.taken(name, -1); err != nil {
			return nil, err
		} else if taken {
			return nil, fmt.Errorf("interface name %s is taken in the %s namespace", name, to.what)
		}
	}
	var undo []func() error
	rollback := func(err error) (netlink.Link, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			if rerr := undo[i](); rerr != nil {
				err = fmt.Errorf("%w; undoing failed too: %w", err, rerr)
			}
		}
		return nil, err
	}
	rename := func(newName string) error {
		cur := l.Attrs().Name
		if err := from.h.LinkSetName(l, newName); err != nil {
			return fmt.Errorf("rename %s to %s in the %s namespace: %w", cur, newName, from.what, err)
		}
		l.Attrs().Name = newName
		undo = append(undo, func() error { return from.h.LinkSetName(l, cur) })
		return nil
	}
	if isUp(l) {
		if err := from.h.LinkSetDown(l); err != nil {
			return nil, fmt.Errorf("set %s down in the %s namespace: %w", a.Name, from.what, err)
		}
		undo = append(undo, func() error { return from.h.LinkSetUp(l) })
	}
	if home && name != a.Name {
		if taken, err := from.taken(name, a.Index); err != nil {
			return rollback(err)
		} else if !taken {
			if err := rename(name); err != nil {
				return rollback(err)
			}
		}
	}
	for try := 1; ; try++ {
		if taken, err := to.taken(l.Attrs().Name, -1); err != nil {
			return rollback(err)
		} else if taken { // its name is taken on the far side: travel under a temporary one
			tmp, err := tempName(from, to, a.Index)
			if err != nil {
				return rollback(err)
			}
			if err := rename(tmp); err != nil {
				return rollback(err)
			}
		}
		err := from.h.LinkSetNsFd(l, int(to.ns))
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || try == nameTries { // else: the name was taken meanwhile
			return rollback(fmt.Errorf("move %s from the %s to the %s namespace: %w", l.Attrs().Name, from.what, to.what, err))
		}
	}
	travel := l.Attrs().Name
	moved, err := to.linkByName(travel)
	if err == nil && moved == nil {
		err = fmt.Errorf("%s vanished after the move to the %s namespace", travel, to.what)
	}
	final := name
	if err == nil && home && travel != name {
		if err = to.h.LinkSetName(moved, name); err != nil {
			err = fmt.Errorf("rename %s to %s in the %s namespace: %w", travel, name, to.what, err)
		}
	} else if err == nil && !home {
		final, err = to.renameLike(moved, name)
	}
	if err == nil {
		moved, err = to.linkByName(final)
		if err == nil && moved == nil {
			err = fmt.Errorf("%s vanished from the %s namespace", final, to.what)
		}
	}
	if err != nil {
		if moved != nil {
			if berr := to.h.LinkSetNsFd(moved, int(from.ns)); berr != nil {
				return nil, fmt.Errorf("%w; moving %s back failed too: %w", err, travel, berr)
			}
			if back, lerr := from.linkByName(travel); lerr == nil && back != nil {
				l = back // the index may have changed on the way back
			}
		}
		return rollback(err)
	}
	return moved, nil
}

// podLink is a link of the target found in a pod namespace.
type podLink struct {
	link     netlink.Link
	hostName string
	ours     bool // it carries our alias (a PCI function's netdev may be found by its parent device)
}

// findInPod returns the target's links in the pod namespace: those whose alias names the target,
// and, for a PCI function, links whose parent device is it (kernels since 5.17 report it). A link
// of the function without our alias goes home under its current name.
func findInPod(pod *space, t Target) ([]podLink, error) {
	ls, err := pod.links()
	if err != nil {
		return nil, err
	}
	var found []podLink
	for _, l := range ls {
		a := l.Attrs()
		hostName, pci, ours := ParseAlias(a.Alias)
		switch {
		case t.HostName != "" && ours && hostName == t.HostName:
		case t.PCIAddress != "" && ours && pci == t.PCIAddress:
		case t.PCIAddress != "" && a.ParentDevBus == "pci" && a.ParentDev == t.PCIAddress:
			if !ours {
				hostName = a.Name
			}
		default:
			continue
		}
		found = append(found, podLink{link: l, hostName: hostName, ours: ours})
	}
	return found, nil
}

// findOnHost returns the target's links in the host namespace: the link by name, or every netdev
// sysfs lists for the PCI function (virtio-net keeps it one level down).
func findOnHost(host *space, t Target, sysfsRoot string) ([]netlink.Link, error) {
	names := []string{t.HostName}
	if t.PCIAddress != "" {
		var err error
		if names, err = PCINetdevs(sysfsRoot, t.PCIAddress); err != nil {
			return nil, err
		}
	}
	var ls []netlink.Link
	for _, name := range names {
		l, err := host.linkByName(name)
		if err != nil {
			return nil, err
		}
		if l != nil {
			ls = append(ls, l)
		}
	}
	return ls, nil
}

// PCINetdevs lists the netdevs sysfs shows for a PCI function: <root>/bus/pci/devices/<addr>/net/*,
// and <addr>/virtio*/net/* for virtio-net. sysfs shows only the reader's network namespace, so a
// function whose netdev is in a pod (or bound to vfio-pci) has none. Sorted by name.
func PCINetdevs(sysfsRoot, addr string) ([]string, error) {
	dev := filepath.Join(sysfsRoot, "bus", "pci", "devices", addr)
	if _, err := os.Stat(dev); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("PCI device %s: not on this node (no %s)", addr, dev)
	} else if err != nil {
		return nil, fmt.Errorf("PCI device %s: %w", addr, err)
	}
	var names []string
	for _, pattern := range []string{filepath.Join(dev, "net", "*"), filepath.Join(dev, "virtio*", "net", "*")} {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			return nil, fmt.Errorf("PCI device %s: %w", addr, err)
		}
		for _, p := range paths {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names, nil
}

// refuseProtected fails for the links carrying the host's default route, by the rule discovery
// applies (pkg/defroute), for loopback, and, unless allowUppers, for links other links are bound to
// (a vxlan or macvlan on it, its bridge or bond): the kernel deletes or detaches those when the link
// leaves the namespace.
func refuseProtected(host *space, ls []netlink.Link, allowUppers bool) error {
	if len(ls) == 0 {
		return nil
	}
	v, err := defroute.Read(host.h)
	if err != nil {
		return fmt.Errorf("find the links carrying the host's default route: %w", err)
	}
	for _, l := range ls {
		a := l.Attrs()
		if v.Carriers[a.Index] {
			return fmt.Errorf("refusing to move %s: it carries the host's default route (itself, or beneath the link holding it)", a.Name)
		}
		if a.Flags&net.FlagLoopback != 0 {
			return fmt.Errorf("refusing to move %s: it is the loopback interface", a.Name)
		}
		if ups := v.Uppers[a.Index]; len(ups) > 0 && !allowUppers {
			return fmt.Errorf("refusing to move %s: other links are bound to it (%s), which the kernel deletes or detaches when it leaves; allow upper devices (netdevice-hook --allow-upper-devices) to move it anyway",
				a.Name, upperNames(v.Links, a, ups))
		}
	}
	return nil
}

// upperNames names at most a few of the links in ups, the master as such.
func upperNames(links []netlink.Link, of *netlink.LinkAttrs, ups []int) string {
	const show = 4
	var names []string
	for _, l := range links {
		a := l.Attrs()
		if !slices.Contains(ups, a.Index) || len(names) == show {
			continue
		}
		name := a.Name
		if a.Index == of.MasterIndex {
			name += " (its master)"
		}
		names = append(names, name)
	}
	if more := len(ups) - len(names); more > 0 {
		names = append(names, fmt.Sprintf("%d more", more))
	}
	return strings.Join(names, ", ")
}
