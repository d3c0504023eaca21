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
	// InPlace: links of the target attach found in the pod complete, as an earlier attach left them
	// (the pod may have renamed them since: PodName is their name now).
	InPlace []Moved
	// Finished: links an earlier hook left half way (it was killed), or the kernel handed back from a
	// destroyed namespace, that this call completed where they were: in the pod for Attach, on the
	// host for Detach. PodName is the name they had there.
	Finished []Moved
	// RDMA: the RDMA devices this call moved (into the pod for Attach, home for Detach), by their
	// host names.
	RDMA []string
	// NamespaceGone: detach found the pod's namespace gone. The kernel destroys virtual links with
	// it and hands physical ones back to the host, where ReconcileReturned (or this call, when they
	// are back already) completes them.
	NamespaceGone bool
}

// session is one call's hold on a device: its lock (and so its record) and the host namespace.
type session struct {
	t    Target
	o    Options
	lock *deviceLock
	host *space
}

// begin validates a move, takes the device's lock (hooks on one device serialize) and opens the host
// namespace.
func begin(t Target, o Options) (*session, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	lock, err := lockDevice(o.LockDir, t.lockKey())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	host, err := openSpace(o.HostNS, "host")
	if err != nil {
		lock.unlock()
		return nil, err
	}
	return &session{t: t, o: o, lock: lock, host: host}, nil
}

func (s *session) close() {
	s.host.close()
	s.lock.unlock()
}

// Attach moves the target's links from the host namespace into the namespace at podNS. Before it
// changes anything it writes down, in the device's record beside its lock (see record), what each
// link has on the host: addresses, MTU, admin state, master, alias. Per link it then sets our alias
// (see Alias), which keeps the host name, moves the link, renames it (Options.PodIfName), re-adds the
// addresses, restores the MTU and sets it up; then it marks the record at rest. Any failure undoes
// what was done, so the link is back as it was, its old alias included.
//
// It is idempotent and finishes what a killed hook left: a device at rest in podNS (found by our
// alias, or for a PCI function by its parent device) is success with Result.Already; a link of ours
// that an earlier hook left half way, in the pod or on the host (under its host name, a travel name,
// or its pod-side name), is completed from the record: named, given its addresses and MTU, set up
// (Result.Finished), or moved. A link left half way in the pod with no record of its addresses (by a
// hook from before records) without addresses fails: its addresses are lost and success would be a
// lie. A software link found in the pod ends the search: the host is not searched, so a link created
// anew on the host under the same name (systemd-networkd does that) stays there.
//
// It refuses loopback, the links carrying the host's default route, in any routing table, and the
// links beneath them (pkg/defroute), and, unless Options.AllowUpperDevices, links other links are
// bound to.
//
// The target's RDMA devices (Options.RDMADevices, and those the record lists) move into the pod
// first, under their host names, and the netdevs are looked up again after that (an IPoIB netdev is
// re-created on the host by the move); see rdmamove.go. A failure after an RDMA device moved brings it
// home too, after the netdevs; an RDMA device in neither namespace fails the attach before any change.
// The device is never left, nor reported done, with a netdev in the pod and its RDMA device on the
// host: Result.Already needs the RDMA devices in the pod too.
func Attach(podNS string, t Target, o Options) (Result, error) {
	s, err := begin(t, o)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	pod, err := openSpace(podNS, "pod")
	if err != nil {
		return Result{}, err
	}
	defer pod.close()
	if pod.ns.Equal(s.host.ns) {
		return Result{}, fmt.Errorf("pod network namespace %s is the host's own", Clip(podNS))
	}
	res, err := s.attach(pod)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", t, err)
	}
	return res, nil
}

func (s *session) attach(pod *space) (Result, error) {
	rec, err := s.lock.readRecord(s.t)
	if err != nil {
		return Result{}, err
	}
	var rd []rdmaDev
	if s.rdmaJob(rec) {
		if rd, err = s.locateRDMA(pod, rec, false); err != nil {
			return Result{}, err
		}
		for _, d := range rd {
			if d.where == rdmaNowhere {
				return Result{}, fmt.Errorf("RDMA device %s is in neither the host nor the pod network namespace (another pod's?)", d.f.Name)
			}
		}
	}
	p, err := s.planAttach(pod, rec)
	if err != nil {
		return Result{}, err
	}
	rec = p.rec
	var toPod []rdmaDev
	for _, d := range rd {
		if d.where == rdmaOnHost {
			toPod = append(toPod, d)
		}
	}
	res := Result{Already: len(p.move) == 0 && len(toPod) == 0}
	for _, pl := range p.complete {
		res.InPlace = append(res.InPlace, Moved{HostName: pl.hostName, PodName: pl.link.Attrs().Name, PCIAddress: s.t.PCIAddress})
	}
	if len(p.move) == 0 && len(p.finish) == 0 && len(toPod) == 0 {
		return res, nil
	}

	// Write down what every link must get back, and which RDMA devices travel, before the first change.
	next, _, err := s.withAttachFacts(rec.clone(), pod, p)
	if err != nil {
		return Result{}, err
	}
	next = next.withRDMA(s.t, rd)
	next.InFlight = inFlightAttach
	if err := s.lock.writeRecord(next); err != nil {
		return Result{}, err
	}

	// undo brings back what this call moved, after err: its netdevs (backs) in reverse, then its RDMA
	// devices in reverse (but not while a netdev of the target is still in the pod: an RDMA device
	// stays with its netdev), then the netdevs the kernel re-created on the host get their facts. The
	// record goes back to what it was only when everything is back (netdevsBack: the failing link
	// itself is); else it stays in flight, for the next hook to finish.
	var rdmaBacks []func() error
	undo := func(err error, backs []func() error, netdevsBack bool) (Result, error) {
		rolledBack := netdevsBack
		for i := len(backs) - 1; i >= 0; i-- {
			if rerr := backs[i](); rerr != nil {
				err = fmt.Errorf("%w; rolling back failed too: %w", err, rerr)
				rolledBack = false
			}
		}
		if len(rdmaBacks) > 0 {
			left, ferr := findInPod(pod, s.t)
			switch {
			case ferr != nil:
				err = fmt.Errorf("%w; RDMA devices %s stay in the pod: %w", err, strings.Join(res.RDMA, ", "), ferr)
				rolledBack = false
			case countOurs(left, nil) > 0:
				err = fmt.Errorf("%w; RDMA devices %s stay in the pod with the netdevs left there", err, strings.Join(res.RDMA, ", "))
				rolledBack = false
			default:
				for i := len(rdmaBacks) - 1; i >= 0; i-- {
					if rerr := rdmaBacks[i](); rerr != nil {
						err = fmt.Errorf("%w; rolling back failed too: %w", err, rerr)
						rolledBack = false
					}
				}
				if _, rerr := settleRecreated(s.host, s.t, s.o.SysfsRoot, next); rerr != nil && !errors.Is(rerr, errMasterGone) {
					err = fmt.Errorf("%w; restoring the netdevs re-created on the host failed too: %w", err, rerr)
					rolledBack = false
				}
			}
		}
		if rolledBack { // every link and RDMA device is where it was: so is the record
			if rerr := s.lock.writeOrRemove(rec); rerr != nil {
				err = fmt.Errorf("%w; restoring the device record failed too: %w", err, rerr)
			}
		}
		return Result{}, err
	}

	// RDMA devices first, under their host names (see rdmamove.go for why).
	for _, d := range toPod {
		if err := nameRDMA(s.o.RDMA, s.host, d.dev, d.f.Name); err != nil {
			return undo(err, nil, true)
		}
		d.dev.Name = d.f.Name
		if err := s.moveRDMA(d, s.host, pod); err != nil {
			return undo(err, nil, true)
		}
		rdmaBacks = append(rdmaBacks, func() error { return s.moveRDMA(d, pod, s.host) })
		res.RDMA = append(res.RDMA, d.f.Name)
	}
	if len(toPod) > 0 { // the move re-creates an IPoIB netdev on the host: look again
		if p, err = s.planAttach(pod, next); err != nil {
			return undo(err, nil, true)
		}
		grown, added, err := s.withAttachFacts(next.clone(), pod, p)
		if err != nil {
			return undo(err, nil, true)
		}
		if added {
			grown.InFlight = inFlightAttach
			if err := s.lock.writeRecord(grown); err != nil {
				return undo(err, nil, true)
			}
			next = grown
		}
	}

	// Links already in the pod are finished first, so they keep the lower pod-side names.
	for _, j := range p.finish {
		name, err := finishInPod(pod, j.pl.link, s.inPod(j.facts), s.podName(j.pl.hostName))
		if err != nil {
			err = fmt.Errorf("finish the earlier attach of %s, found in the pod as %s: %w", j.pl.hostName, j.pl.link.Attrs().Name, err)
			if len(rdmaBacks) == 0 {
				return Result{}, err
			}
			return undo(err, nil, true)
		}
		res.Finished = append(res.Finished, Moved{HostName: j.pl.hostName, PodName: name, PCIAddress: s.t.PCIAddress})
	}
	var backs []func() error
	for _, hl := range p.move {
		f, _ := next.facts(hl.hostName)
		m, back, err := s.attachOne(pod, hl, f)
		if err != nil {
			return undo(err, backs, back != nil)
		}
		backs = append(backs, back)
		res.Moved = append(res.Moved, m)
	}
	next.InFlight = ""
	step("attach: record at rest")
	if err := s.lock.writeRecord(next); err != nil {
		return res, err
	}
	return res, nil
}

// finishing is a link of ours that an attach or a detach left half way in the pod.
type finishing struct {
	pl    podLink
	facts *linkFacts // nil: no record of it (a hook from before records)
}

// attachPlan is what attach found of the target's netdevs and will do with them.
type attachPlan struct {
	rec      *record // the record as read, nil when there is none or it was stale
	view     *defroute.View
	move     []hostLink  // to move from the host into the pod
	finish   []finishing // to finish in the pod
	complete []podLink   // in the pod complete: left as they are
}

// planAttach looks for the target's netdevs in the pod and on the host and decides what attach does
// with them. It refuses what must not move.
func (s *session) planAttach(pod *space, rec *record) (attachPlan, error) {
	inPod, err := findInPod(pod, s.t)
	if err != nil {
		return attachPlan{}, err
	}
	view, err := defroute.Read(s.host.h)
	if err != nil {
		return attachPlan{}, fmt.Errorf("find the links carrying the host's default route: %w", err)
	}
	onHost, err := findOnHost(view.Links, s.t, s.o.SysfsRoot, true)
	if err != nil {
		return attachPlan{}, err
	}
	if rec, err = s.dropStale(rec, inPod, onHost); err != nil {
		return attachPlan{}, err
	}

	// What moves: our links on the host (a hook left them half way, or the kernel returned them),
	// and the device's plain links: for a PCI function its netdevs; for a software link its name,
	// unless a link of ours is found (then one called like it on the host is a newcomer).
	oursSeen := countOurs(inPod, onHost) > 0
	var move []hostLink
	for _, hl := range onHost {
		if hl.ours || s.t.PCIAddress != "" || !oursSeen {
			move = append(move, hl)
		}
	}
	if len(move) == 0 && len(inPod) == 0 {
		return attachPlan{}, errors.New("no link in the host namespace nor in the pod namespace")
	}
	if err := refuseProtected(view, move, s.o.AllowUpperDevices); err != nil {
		return attachPlan{}, err
	}

	// What is finished in the pod: links of ours an attach or a detach left half way there. A record
	// at rest says the attach completed: what the pod did with the link since is its business.
	var (
		finish   []finishing
		complete []podLink
	)
	for _, pl := range inPod {
		if !pl.ours {
			continue // put there by something else
		}
		want := s.podName(pl.hostName)
		if f, ok := rec.facts(pl.hostName); ok {
			if rec.InFlight != "" {
				finish = append(finish, finishing{pl, &f})
			} else {
				complete = append(complete, pl)
			}
			continue
		}
		if isNameLike(pl.link.Attrs().Name, want) && isUp(pl.link) {
			complete = append(complete, pl)
			continue
		}
		addrs, err := pod.globalAddrs(pl.link)
		if err != nil {
			return attachPlan{}, err
		}
		if len(addrs) == 0 {
			return attachPlan{}, fmt.Errorf("%s is in the pod half attached (as %s, down or not renamed) and no record says what addresses it had: they are lost; detach it, then attach again",
				pl.hostName, pl.link.Attrs().Name)
		}
		finish = append(finish, finishing{pl, nil})
	}
	return attachPlan{rec: rec, view: view, move: move, finish: finish, complete: complete}, nil
}

// withAttachFacts adds to next what the plan's links lack in it: the facts of the links that move
// (as they are on the host) and of those finished in the pod without a record (as they are there).
// added says whether anything was.
func (s *session) withAttachFacts(next *record, pod *space, p attachPlan) (*record, bool, error) {
	names := linkNames(p.view.Links)
	added := false
	for _, hl := range p.move {
		if _, ok := next.facts(hl.hostName); ok {
			continue
		}
		f, err := factsOf(s.host, hl.link, hl.hostName, names)
		if err != nil {
			return nil, false, err
		}
		next, added = next.with(s.t, f), true
	}
	for _, j := range p.finish {
		if _, ok := next.facts(j.pl.hostName); !ok && j.facts == nil {
			f, err := podFactsOf(pod, j.pl)
			if err != nil {
				return nil, false, err
			}
			next, added = next.with(s.t, f), true
		}
	}
	return next, added, nil
}

// podName is the name a link of the target wants in the pod.
func (s *session) podName(hostName string) string {
	if s.o.PodIfName != "" {
		return s.o.PodIfName
	}
	return hostName
}

// dropStale removes a record that no link carries our alias for while the device is on the host:
// the hook that wrote it died before its first change of a link, or after its last. The record
// stays when the device is nowhere to be seen (in another namespace, or on its way back from a
// destroyed one).
//
// A record that lists RDMA devices is never stale on that account: moving an RDMA device re-creates
// an IPoIB netdev on the host without our alias and without what it had, which only the record
// knows. Such a record goes once the job is done: Detach and ReconcileReturned remove it when the
// RDMA devices are home and the netdevs complete.
func (s *session) dropStale(rec *record, inPod []podLink, onHost []hostLink) (*record, error) {
	if rec == nil || rec.hasRDMA() || countOurs(inPod, onHost) > 0 || len(onHost) == 0 {
		return rec, nil
	}
	if err := s.lock.removeRecord(); err != nil {
		return rec, err
	}
	return nil, nil
}

func countOurs(inPod []podLink, onHost []hostLink) int {
	n := 0
	for _, pl := range inPod {
		if pl.ours {
			n++
		}
	}
	for _, hl := range onHost {
		if hl.ours {
			n++
		}
	}
	return n
}

// finishInPod makes a link of ours in the pod what a complete attach leaves: named like want (want,
// or want+1, ... when taken, as attach names it), with the recorded MTU and addresses when there
// is a record (f), and up. It returns the link's name.
func finishInPod(pod *space, l netlink.Link, f *linkFacts, want string) (string, error) {
	name := l.Attrs().Name
	if !isNameLike(name, want) {
		if isUp(l) { // the kernel renames only a link that is down
			step("finish: down")
			if err := pod.h.LinkSetDown(l); err != nil {
				return "", fmt.Errorf("set %s down in the pod to rename it: %w", name, err)
			}
			l.Attrs().Flags &^= net.FlagUp
		}
		step("finish: rename")
		var err error
		if name, err = pod.renameLike(l, want); err != nil {
			return "", err
		}
	}
	if f != nil {
		if err := applyPod(pod, l, name, *f); err != nil {
			return "", err
		}
		return name, nil
	}
	if !isUp(l) {
		step("finish: up")
		if err := pod.h.LinkSetUp(l); err != nil {
			return "", fmt.Errorf("set %s up in the pod: %w", name, err)
		}
	}
	return name, nil
}

// inPod is what of a link's host facts it takes into the pod: all of them, or all but its addresses
// when the pool gives the pod its own (Options.DropHostAddresses). The record keeps them all.
func (s *session) inPod(f *linkFacts) *linkFacts {
	if f == nil || !s.o.DropHostAddresses || len(f.Addrs) == 0 {
		return f
	}
	g := *f
	g.Addrs = nil
	return &g
}

// applyPod gives a link in the pod, now called name, the recorded MTU and addresses, and sets it up.
func applyPod(pod *space, l netlink.Link, name string, f linkFacts) error {
	if f.MTU > 0 && l.Attrs().MTU != f.MTU {
		step("pod: mtu")
		if err := pod.h.LinkSetMTU(l, f.MTU); err != nil {
			return fmt.Errorf("set MTU %d on %s in the pod: %w", f.MTU, name, err)
		}
	}
	if err := pod.addAddrs(l, name, f.Addrs); err != nil {
		return err
	}
	step("pod: up")
	if err := pod.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in the pod: %w", name, err)
	}
	return nil
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

// attachOne moves one host link into the pod under the first free name like want, and gives it its
// facts there. It returns how to bring the link back exactly as it was, its alias included; on
// failure it has brought it back (back is nil when that failed too).
func (s *session) attachOne(pod *space, hl hostLink, f linkFacts) (Moved, func() error, error) {
	host, l := s.host, hl.link
	name := l.Attrs().Name
	alias := Alias(hl.hostName, s.t.PCIAddress)
	if l.Attrs().Alias != alias {
		step("attach: alias")
		if err := host.h.LinkSetAlias(l, alias); err != nil {
			return Moved{}, nil, fmt.Errorf("set alias of %s: %w", name, err)
		}
	}
	pl, err := transfer(l, host, pod, s.podName(hl.hostName), false)
	if err != nil { // still on the host, as it was but for our alias
		if rerr := settleHome(host, name, f); rerr != nil {
			return Moved{}, nil, fmt.Errorf("%w; putting %s back as it was failed too: %w", err, name, rerr)
		}
		return Moved{}, func() error { return nil }, err
	}
	podName := pl.Attrs().Name
	back := func() error {
		_, err := bringHome(pod, host, pl, f)
		return err
	}
	if err := applyPod(pod, pl, podName, *s.inPod(&f)); err != nil {
		if rerr := back(); rerr != nil {
			return Moved{}, nil, fmt.Errorf("%w; moving %s back failed too: %w", err, hl.hostName, rerr)
		}
		return Moved{}, func() error { return nil }, err
	}
	return Moved{HostName: hl.hostName, PodName: podName, PCIAddress: s.t.PCIAddress}, back, nil
}

// Detach brings the target's links home from the namespace at podNS: found there by our alias (or a
// PCI function's parent device), moved back under the host name and given what the device's record
// says they had on the host: addresses, MTU, admin state, bridge or bond, alias. Without a record
// (an attach from before records), they get the addresses and MTU they had in the pod, no alias, and
// are set up. The record is marked before the move and removed once every link is complete at home.
//
// A device already home, or a pod namespace that is gone, is success. Links of ours an earlier hook
// left on the host half way (under a travel or pod-side name, without their addresses), or that the
// kernel handed back from a destroyed namespace, are completed too (Result.Finished). Once a link is
// home, later failures (an address that cannot be added) are reported and leave it home, with our
// alias and the record, so that the next hook or the daemon's reconciler tries again. A bridge or
// bond that is gone is reported once: the link is complete without it.
//
// RDMA devices (Options.RDMADevices, and those the record lists) come home after the netdevs, from
// inside the pod's namespace, get their host names back, and then the target's netdevs on the host
// are given their recorded facts (an IPoIB netdev is re-created bare on the host by the move). An
// RDMA device stays in the pod while a netdev of the target does. With the pod's namespace gone the
// kernel returns the RDMA devices by itself: detach succeeds, finishing them if they are back and
// leaving the record to ReconcileReturned if not yet.
func Detach(podNS string, t Target, o Options) (Result, error) {
	s, err := begin(t, o)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	pod, err := openSpace(podNS, "pod")
	gone := errors.Is(err, ErrNamespaceGone)
	if err != nil && !gone {
		return Result{}, err
	}
	if pod != nil {
		defer pod.close()
		if pod.ns.Equal(s.host.ns) { // the pod's process is gone and its pid now names a host process
			pod = nil
		}
	}
	res, err := s.detach(pod)
	res.NamespaceGone = gone
	if err != nil {
		return res, fmt.Errorf("%s: %w", t, err)
	}
	return res, nil
}

// detach is Detach once the namespaces are open; pod is nil when the pod's namespace is gone.
func (s *session) detach(pod *space) (Result, error) {
	rec, err := s.lock.readRecord(s.t)
	if err != nil {
		return Result{}, err
	}
	var rd []rdmaDev
	if s.rdmaJob(rec) {
		if rd, err = s.locateRDMA(pod, rec, true); err != nil {
			return Result{}, err
		}
		for _, d := range rd {
			if d.where == rdmaNowhere && pod != nil {
				return Result{}, fmt.Errorf("RDMA device %s is in neither the host nor the pod network namespace (another pod's?)", d.f.Name)
			}
		}
	}
	var inPod []podLink
	if pod != nil {
		if inPod, err = findInPod(pod, s.t); err != nil {
			return Result{}, err
		}
	}
	hostLinks, err := s.host.links()
	if err != nil {
		return Result{}, err
	}
	onHost, err := findOnHost(hostLinks, s.t, s.o.SysfsRoot, false)
	if err != nil {
		return Result{}, err
	}
	if rec, err = s.dropStale(rec, inPod, onHost); err != nil {
		return Result{}, err
	}
	var back []hostLink
	for _, hl := range onHost {
		if hl.ours {
			back = append(back, hl)
		}
	}
	var (
		away    []rdmaDev // in the pod
		pending bool      // on their way home from a destroyed namespace: the kernel brings them
	)
	for _, d := range rd {
		switch d.where {
		case rdmaInPod:
			away = append(away, d)
		case rdmaNowhere:
			pending = true
		}
	}
	if len(inPod) == 0 && len(back) == 0 && len(away) == 0 && !rec.hasRDMA() {
		return Result{Already: true}, nil
	}

	next := rec.clone()
	for _, pl := range inPod {
		if _, ok := next.facts(pl.hostName); !ok {
			f, err := podFactsOf(pod, pl)
			if err != nil {
				return Result{}, err
			}
			next = next.with(s.t, f)
		}
	}
	names := linkNames(hostLinks)
	for _, hl := range back {
		if _, ok := next.facts(hl.hostName); !ok {
			f, err := factsOf(s.host, hl.link, hl.hostName, names)
			if err != nil {
				return Result{}, err
			}
			next = next.with(s.t, f)
		}
	}
	next = next.withRDMA(s.t, rd)
	next.InFlight = inFlightDetach
	if err := s.lock.writeRecord(next); err != nil {
		return Result{}, err
	}

	// The netdevs first, then the RDMA devices (see rdmamove.go).
	var (
		res   Result
		errs  []error
		stuck bool // a netdev is still in the pod: its RDMA devices stay with it
	)
	for _, hl := range back {
		f, _ := next.facts(hl.hostName)
		from := hl.link.Attrs().Name
		if err := settleHome(s.host, from, f); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Finished = append(res.Finished, Moved{HostName: hl.hostName, PodName: from, PCIAddress: s.t.PCIAddress})
	}
	for _, pl := range inPod {
		f, _ := next.facts(pl.hostName)
		podName := pl.link.Attrs().Name
		home, err := bringHome(pod, s.host, pl.link, f)
		if err != nil {
			errs = append(errs, err)
		}
		if home {
			res.Moved = append(res.Moved, Moved{HostName: pl.hostName, PodName: podName, PCIAddress: s.t.PCIAddress})
		} else {
			stuck = true
		}
	}
	home := !pending && !stuck // every RDMA device is, or is about to be, on the host
	if stuck && len(away) > 0 {
		errs = append(errs, fmt.Errorf("RDMA devices %s stay in the pod with the netdevs left there", strings.Join(rdmaNames(away), ", ")))
	}
	if home {
		for i := range rd {
			d := &rd[i]
			if d.where == rdmaInPod {
				if err := s.moveRDMA(*d, pod, s.host); err != nil {
					errs = append(errs, err)
					home = false
					continue
				}
				d.where = rdmaOnHost
				res.RDMA = append(res.RDMA, d.f.Name)
			}
			if err := nameRDMA(s.o.RDMA, s.host, d.dev, d.f.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if home && len(rd) > 0 { // netdevs the moves re-created on the host (IPoIB) get their facts
		if _, err := settleRecreated(s.host, s.t, s.o.SysfsRoot, next); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		if home && onlyMasterGone(errs) { // home and complete: said once, not again on every retry
			if rerr := s.lock.removeRecord(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return res, err
	}
	if !home { // the pod's namespace is gone and the kernel is still handing RDMA devices back
		return res, nil
	}
	return res, s.lock.removeRecord()
}

// podFactsOf is what a link found in the pod without a record of it goes home with: the addresses
// and MTU it has there, up, no alias, no master (what a detach did before records).
func podFactsOf(pod *space, pl podLink) (linkFacts, error) {
	f, err := factsOf(pod, pl.link, pl.hostName, nil)
	if err != nil {
		return linkFacts{}, err
	}
	f.Alias, f.Up, f.Master = "", true, ""
	return f, nil
}

// bringHome moves pl from the pod back to the host under its host name, then gives it its facts
// (see applyHome). The move itself is all or nothing; home says whether it happened.
func bringHome(pod, host *space, pl netlink.Link, f linkFacts) (home bool, err error) {
	hl, err := transfer(pl, pod, host, f.HostName, true)
	if err != nil {
		return false, err
	}
	return true, applyHome(host, hl, f)
}

// settleHome completes a link of ours that is on the host under the name from: renamed to its host
// name if it is not called so, given its facts.
func settleHome(host *space, from string, f linkFacts) error {
	l, err := host.linkByName(from)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("%s vanished from the host namespace", from)
	}
	if from != f.HostName {
		if taken, err := host.taken(f.HostName, l.Attrs().Index); err != nil {
			return err
		} else if taken {
			return fmt.Errorf("%s (on the host as %s): its host name is taken by another link", f.HostName, from)
		}
		if isUp(l) { // the kernel renames only a link that is down
			step("home: down")
			if err := host.h.LinkSetDown(l); err != nil {
				return fmt.Errorf("set %s down to rename it: %w", from, err)
			}
			l.Attrs().Flags &^= net.FlagUp
		}
		step("home: rename")
		if err := host.h.LinkSetName(l, f.HostName); err != nil {
			return fmt.Errorf("rename %s to %s: %w", from, f.HostName, err)
		}
		l.Attrs().Name = f.HostName
	}
	return applyHome(host, l, f)
}

// applyHome gives a link on the host, called by its host name, its facts: MTU, master, addresses,
// admin state, and last its old alias, which marks it complete. When anything fails it keeps our
// alias, so that it is still known as ours and the next hook or reconcile tries again.
func applyHome(host *space, l netlink.Link, f linkFacts) error {
	name := f.HostName
	var (
		errs []error
		gone error // the master is gone: the link is complete without it
	)
	if f.MTU > 0 && l.Attrs().MTU != f.MTU {
		step("home: mtu")
		if err := host.h.LinkSetMTU(l, f.MTU); err != nil {
			errs = append(errs, fmt.Errorf("set MTU %d on %s: %w", f.MTU, name, err))
		}
	}
	if f.Master != "" {
		m, err := host.linkByName(f.Master)
		switch {
		case err != nil:
			errs = append(errs, err)
		case m == nil: // nothing to put it back into: it comes home without, and that is said
			gone = fmt.Errorf("%w: %s came home outside any bridge or bond: its master %s is gone", errMasterGone, name, f.Master)
		case l.Attrs().MasterIndex != m.Attrs().Index:
			step("home: master")
			if err := host.h.LinkSetMaster(l, m); err != nil {
				errs = append(errs, fmt.Errorf("put %s back into %s: %w", name, f.Master, err))
			}
		}
	}
	if err := host.addAddrs(l, name, f.Addrs); err != nil {
		errs = append(errs, err)
	}
	if f.Up != isUp(l) {
		step("home: admin state")
		set, how := host.h.LinkSetUp, "up"
		if !f.Up {
			set, how = host.h.LinkSetDown, "down"
		}
		if err := set(l); err != nil {
			errs = append(errs, fmt.Errorf("set %s %s: %w", name, how, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if l.Attrs().Alias != f.Alias {
		step("home: alias")
		if err := host.h.LinkSetAlias(l, f.Alias); err != nil {
			return fmt.Errorf("set alias of %s: %w", name, err)
		}
	}
	return gone
}

// errMasterGone: a link came home complete but for its bridge or bond, which no longer exists.
var errMasterGone = errors.New("master gone")

// onlyMasterGone reports whether every error is errMasterGone: the links are home and complete.
func onlyMasterGone(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, errMasterGone) {
			return false
		}
	}
	return true
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
		step("transfer: rename")
		if err := from.h.LinkSetName(l, newName); err != nil {
			return fmt.Errorf("rename %s to %s in the %s namespace: %w", cur, newName, from.what, err)
		}
		l.Attrs().Name = newName
		undo = append(undo, func() error { step("transfer: undo rename"); return from.h.LinkSetName(l, cur) })
		return nil
	}
	if isUp(l) {
		step("transfer: down")
		if err := from.h.LinkSetDown(l); err != nil {
			return nil, fmt.Errorf("set %s down in the %s namespace: %w", a.Name, from.what, err)
		}
		undo = append(undo, func() error { step("transfer: undo down"); return from.h.LinkSetUp(l) })
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
		step("transfer: move")
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
		step("transfer: rename there")
		if err = to.h.LinkSetName(moved, name); err != nil {
			err = fmt.Errorf("rename %s to %s in the %s namespace: %w", travel, name, to.what, err)
		}
	} else if err == nil && !home {
		step("transfer: rename there")
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
			step("transfer: move back")
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

// hostLink is a link of the target in the host namespace.
type hostLink struct {
	link     netlink.Link
	hostName string // from our alias; else its name
	ours     bool   // it carries our alias: a hook left it half way, or the kernel returned it
}

// findOnHost returns the target's links in the host namespace, from a dump of its links: those whose
// alias names the target, whatever they are called now, and the link by its name or every netdev
// sysfs lists for the PCI function. A PCI function sysfs does not show fails only if strict.
func findOnHost(links []netlink.Link, t Target, sysfsRoot string, strict bool) ([]hostLink, error) {
	var found []hostLink
	seen := map[int]bool{}
	for _, l := range links {
		a := l.Attrs()
		hostName, pci, ours := ParseAlias(a.Alias)
		if ours && (t.HostName != "" && hostName == t.HostName && pci == "" || t.PCIAddress != "" && pci == t.PCIAddress) {
			found = append(found, hostLink{link: l, hostName: hostName, ours: true})
			seen[a.Index] = true
		}
	}
	names := []string{t.HostName}
	if t.PCIAddress != "" {
		var err error
		if names, err = PCINetdevs(sysfsRoot, t.PCIAddress); err != nil && strict {
			return nil, err
		}
	}
	for _, name := range names {
		for _, l := range links {
			a := l.Attrs()
			if a.Name != name || seen[a.Index] {
				continue
			}
			if _, _, ours := ParseAlias(a.Alias); ours && t.PCIAddress == "" {
				continue // the alias of another device: not this one
			}
			found = append(found, hostLink{link: l, hostName: name})
			seen[a.Index] = true
		}
	}
	return found, nil
}

// linkNames maps indexes to names.
func linkNames(links []netlink.Link) map[int]string {
	m := make(map[int]string, len(links))
	for _, l := range links {
		m[l.Attrs().Index] = l.Attrs().Name
	}
	return m
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
func refuseProtected(v *defroute.View, ls []hostLink, allowUppers bool) error {
	for _, hl := range ls {
		a := hl.link.Attrs()
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
