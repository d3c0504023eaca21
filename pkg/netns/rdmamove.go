package netns

import (
	"errors"
	"fmt"
	"slices"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma"
)

// RDMA devices travel with their netdevs (Options.RDMADevices, and the device's record). They move
// through rdma.Links only; this file decides which, when and how a failure is undone.
//
// Order. Attach moves the RDMA devices first, then the netdevs; Detach brings the netdevs home first,
// then the RDMA devices; a failed attach undoes in reverse (netdevs, then RDMA devices). So every
// state that any hook, killed or not, passes through is one of
//
//	H: RDMA devices and netdevs on the host
//	M: RDMA devices in the pod, netdevs on the host
//	P: RDMA devices and netdevs in the pod
//
// attach going H -> M -> P, detach P -> M -> H, and a hook finding any of them knows which way to go
// on. The state the issue forbids, a netdev in the pod with its RDMA device on the host, is none of
// them: no hook of ours makes it (a pod whose RDMA device someone else moved home starts there, and
// attach then moves the RDMA device in again). The order is also the kernel's for IPoIB: moving an
// RDMA device re-creates its IPoIB netdev in the host namespace (the IPoIB client is removed from the
// device and added again), so the netdev can only follow the RDMA device, and is looked up again
// after the move. The re-created netdev has none of its addresses, MTU or admin state: the record has
// them, and every RDMA move is followed by giving the target's netdevs on the host what the record
// says (settleRecreated). For RoCE (an mlx5e netdev is no IB client) the order does not matter to
// the kernel. The moves into the pod, both lookups and the renames happen in the host namespace;
// moves home happen in the pod's (see rdma.Netlink).

// Where an RDMA device of a job is.
const (
	rdmaNowhere = iota // in neither namespace: another one, or on its way home from a destroyed one
	rdmaOnHost
	rdmaInPod
)

// rdmaDev is one RDMA device of a job: what the record says of it (for one only the options name,
// its name, and index and GUID as found), and where it is now.
type rdmaDev struct {
	f     rdmaFacts
	dev   rdma.Device // as found; zero when nowhere
	where int
}

// find returns the device of devs that is the recorded f: the same node GUID, and the same index
// (renamed, say "ibdev0" after a clash) or the same name (re-registered under a new index).
func (f rdmaFacts) find(devs []rdma.Device) (rdma.Device, bool) {
	for _, same := range []func(d rdma.Device) bool{
		func(d rdma.Device) bool { return d.Index == f.Index && d.NodeGUID == f.NodeGUID },
		func(d rdma.Device) bool { return d.Name == f.Name && d.NodeGUID == f.NodeGUID },
	} {
		for _, d := range devs {
			if same(d) {
				return d, true
			}
		}
	}
	return rdma.Device{}, false
}

// rdmaJob reports whether the call has RDMA devices to look after: named by the options, or left in
// the record by an earlier hook.
func (s *session) rdmaJob(rec *record) bool { return len(s.o.RDMADevices) > 0 || rec.hasRDMA() }

// locateRDMA finds the job's RDMA devices: those the record lists, known by index or name and node
// GUID (a device back from a destroyed namespace may be "ibdev0"; a re-registered one has a new
// index), and those only the options name, known by name, in the pod first when inPodFirst. pod is
// nil when the pod's namespace is gone.
func (s *session) locateRDMA(pod *space, rec *record, inPodFirst bool) ([]rdmaDev, error) {
	onHost, err := s.listRDMA(s.host)
	if err != nil {
		return nil, err
	}
	var inPod []rdma.Device
	if pod != nil {
		if inPod, err = s.listRDMA(pod); err != nil {
			return nil, err
		}
	}
	type side struct {
		devs  []rdma.Device
		where int
	}
	sides := []side{{onHost, rdmaOnHost}, {inPod, rdmaInPod}}
	if inPodFirst {
		sides[0], sides[1] = sides[1], sides[0]
	}
	var (
		out  []rdmaDev
		seen = map[uint32]bool{}
	)
	add := func(f rdmaFacts, recorded bool) {
		rd := rdmaDev{f: f, where: rdmaNowhere}
		tests := []func(d rdma.Device) bool{func(d rdma.Device) bool { return d.Name == f.Name }}
		if recorded {
			tests = []func(d rdma.Device) bool{
				func(d rdma.Device) bool { return d.Index == f.Index && d.NodeGUID == f.NodeGUID },
				func(d rdma.Device) bool { return d.Name == f.Name && d.NodeGUID == f.NodeGUID },
			}
		}
	search:
		for _, test := range tests {
			for _, sd := range sides {
				for _, d := range sd.devs {
					if test(d) {
						rd.dev, rd.where = d, sd.where
						break search
					}
				}
			}
		}
		if rd.where != rdmaNowhere {
			if seen[rd.dev.Index] { // the options name, under its present name, a device the record lists
				return
			}
			seen[rd.dev.Index] = true
			if !recorded {
				rd.f.Index, rd.f.NodeGUID = rd.dev.Index, rd.dev.NodeGUID
			}
		}
		out = append(out, rd)
	}
	if rec != nil {
		for _, f := range rec.RDMA {
			add(f, true)
		}
	}
	for _, name := range s.o.RDMADevices {
		if _, ok := rec.rdmaFacts(name); !ok {
			add(rdmaFacts{Name: name}, false)
		}
	}
	return out, nil
}

func (s *session) listRDMA(sp *space) ([]rdma.Device, error) {
	devs, err := s.o.RDMA.List(sp.ns)
	if err != nil {
		return nil, fmt.Errorf("list the RDMA devices in the %s namespace: %w", sp.what, err)
	}
	return devs, nil
}

// withRDMA adds to the record the entries of the job's devices it lacks.
func (r *record) withRDMA(t Target, rd []rdmaDev) *record {
	for _, d := range rd {
		if _, ok := r.rdmaFacts(d.f.Name); ok {
			continue
		}
		if r == nil {
			r = newRecord(t, "", nil)
		}
		r.RDMA = append(r.RDMA, d.f)
	}
	return r
}

// moveRDMA moves an RDMA device of the job from one namespace to the other.
func (s *session) moveRDMA(d rdmaDev, from, to *space) error {
	step("rdma: move")
	if err := s.o.RDMA.Move(from.ns, d.dev, to.ns); err != nil {
		return fmt.Errorf("move RDMA device %s from the %s to the %s namespace: %w", d.dev.Name, from.what, to.what, err)
	}
	return nil
}

// nameRDMA gives an RDMA device on the host its recorded name when it has another (the kernel's
// "ibdevN" after a clash on its way back from a destroyed namespace, or a rename in the pod).
func nameRDMA(links rdma.Links, host *space, d rdma.Device, name string) error {
	if d.Name == name {
		return nil
	}
	step("rdma: rename")
	if err := links.Rename(host.ns, d, name); err != nil {
		return fmt.Errorf("give RDMA device %s its host name %s back: %w", d.Name, name, err)
	}
	return nil
}

// rdmaNames lists the devices' host names, for messages.
func rdmaNames(rd []rdmaDev) []string {
	var names []string
	for _, d := range rd {
		names = append(names, d.f.Name)
	}
	return names
}

// settleRecreated gives the target's netdevs on the host that do not carry our alias what the record
// says they had on the host. It runs once an RDMA device of the target has come home, or after a hook
// that moved one was killed: the kernel re-creates an IPoIB netdev in the host namespace at every move
// of its RDMA device, without addresses, at the default MTU, down, and only the record knows what it
// had. Everything is set only where it differs (addresses are replaced), so a netdev that is complete
// stays as it is. Links carrying our alias are the caller's. Only a PCI function's netdevs that sysfs
// lists are touched: a software link is no IPoIB netdev, and one called like it may be a newcomer.
func settleRecreated(host *space, t Target, sysfsRoot string, rec *record) ([]string, error) {
	if t.PCIAddress == "" || rec == nil {
		return nil, nil
	}
	names, err := PCINetdevs(sysfsRoot, t.PCIAddress)
	if err != nil { // the function is gone, and its netdevs with it
		return nil, nil
	}
	var (
		settled []string
		errs    []error
	)
	for _, f := range rec.Links {
		if !slices.Contains(names, f.HostName) {
			continue
		}
		l, err := host.linkByName(f.HostName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l == nil {
			continue
		}
		if _, _, ours := ParseAlias(l.Attrs().Alias); ours {
			continue
		}
		if err := settleHome(host, f.HostName, f); err != nil {
			errs = append(errs, err)
			if !errors.Is(err, errMasterGone) {
				continue
			}
		}
		settled = append(settled, f.HostName)
	}
	return settled, errors.Join(errs...)
}
