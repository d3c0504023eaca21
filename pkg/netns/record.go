package netns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A device's record is what its links must be given back, written down before anything changes
// them: the kernel flushes a link's addresses when it changes namespace, takes it out of its bridge
// or bond, and sets it down, so a hook killed half way would otherwise lose them for good. It is
// <lock dir>/<key>.json, beside the device's lock file, and only the lock's holder reads or writes
// it. Attach writes it before it touches a link (inFlight "attach") and rewrites it once the links
// are complete in the pod (no inFlight: at rest in the pod); Detach rewrites it before it moves them
// (inFlight "detach") and removes it once they are complete at home. Any later hook on the device,
// and the daemon's reconciler, reads it first and finishes the job in the direction it is asked for.
//
//	{
//	  "version": 1,
//	  "inFlight": "attach",
//	  "hostName": "dummy0",                 // or "pciAddress": "0000:3b:01.0": the target
//	  "links": [{
//	    "hostName": "dummy0",
//	    "alias": "uplink",                  // its alias before ours
//	    "mtu": 1400, "up": true, "master": "br0",
//	    "addrs": [{"local": "10.1.2.3/24", "broadcast": "10.1.2.255", "label": "dummy0:1", "flags": 128,
//	               "validLft": 3600, "preferredLft": 1800}]
//	  }],
//	  "rdma": [{"name": "mlx5_2", "index": 3, "nodeGuid": "0c42:a103:0065:6bd2"}]
//	}
//
// "rdma" (absent when the device has none, so such records are byte for byte what they were) lists
// the RDMA devices that travel with the links: each by its host name, which it gets back, and its
// kernel index and node GUID, by which it is known when it comes back from a destroyed namespace
// under another name ("ibdev0"). Where each is, the kernel says (rdma.Links.List in the host and the
// pod namespace); the record says which are the job's and which way it goes. A hook from before
// RDMA refuses such a record (unknown field) instead of dropping the RDMA devices from it.
//
// A record that cannot be read or does not validate fails the hook loudly and changes nothing: no
// link is touched on its account. A record no link carries our alias for, while the device is on
// the host, is stale (a hook died before its first change, or after its last) and is dropped;
// unless it lists RDMA devices: an RDMA move re-creates an IPoIB netdev on the host without our
// alias, so such a record stays until Detach or ReconcileReturned finds the job done.
type record struct {
	Version    int         `json:"version"`
	InFlight   string      `json:"inFlight,omitempty"`
	PCIAddress string      `json:"pciAddress,omitempty"`
	HostName   string      `json:"hostName,omitempty"`
	Links      []linkFacts `json:"links"`
	RDMA       []rdmaFacts `json:"rdma,omitempty"`
}

// rdmaFacts is one RDMA device of the target: the name it has on the host, and how to know it under
// another name (see matches).
type rdmaFacts struct {
	Name     string `json:"name"`
	Index    uint32 `json:"index"`
	NodeGUID string `json:"nodeGuid,omitempty"`
}

// Directions a record can have in flight.
const (
	inFlightAttach = "attach"
	inFlightDetach = "detach"
)

const recordVersion = 1

// maxRecordBytes bounds what is read of a record: a link's facts are a few hundred bytes.
const maxRecordBytes = 1 << 20

// linkFacts is what one link had on the host and must have again at its destination.
type linkFacts struct {
	HostName string      `json:"hostName"`
	Alias    string      `json:"alias,omitempty"`
	MTU      int         `json:"mtu"`
	Up       bool        `json:"up"`
	Master   string      `json:"master,omitempty"`
	Addrs    []addrFacts `json:"addrs,omitempty"`
}

// addrFacts is one address as the kernel reported it. Lifetimes are absent for a permanent address.
type addrFacts struct {
	Local        string `json:"local"`
	Peer         string `json:"peer,omitempty"`
	Broadcast    string `json:"broadcast,omitempty"`
	Label        string `json:"label,omitempty"`
	Flags        int    `json:"flags,omitempty"`
	ValidLft     *int   `json:"validLft,omitempty"`
	PreferredLft *int   `json:"preferredLft,omitempty"`
}

// lifetimeForever is the kernel's INFINITY_LIFE_TIME as netlink reports it.
const lifetimeForever = 0xFFFFFFFF

func newRecord(t Target, inFlight string, links []linkFacts) *record {
	return &record{Version: recordVersion, InFlight: inFlight, PCIAddress: t.PCIAddress, HostName: t.HostName, Links: links}
}

// facts returns the record's facts for the link with that host name.
func (r *record) facts(hostName string) (linkFacts, bool) {
	if r == nil {
		return linkFacts{}, false
	}
	for _, f := range r.Links {
		if f.HostName == hostName {
			return f, true
		}
	}
	return linkFacts{}, false
}

// clone copies the record (nil stays nil) so that changes to the copy leave r as read.
func (r *record) clone() *record {
	if r == nil {
		return nil
	}
	c := *r
	c.Links = append([]linkFacts(nil), r.Links...)
	c.RDMA = append([]rdmaFacts(nil), r.RDMA...)
	if len(c.RDMA) == 0 {
		c.RDMA = nil
	}
	return &c
}

// with adds f to the record, creating it for t when r is nil.
func (r *record) with(t Target, f linkFacts) *record {
	if r == nil {
		return newRecord(t, "", []linkFacts{f})
	}
	r.Links = append(r.Links, f)
	return r
}

// factsOf notes what a link has now: its global addresses, MTU, admin state, master (named through
// names, index to name) and alias.
func factsOf(s *space, l netlink.Link, hostName string, names map[int]string) (linkFacts, error) {
	a := l.Attrs()
	addrs, err := s.globalAddrs(l)
	if err != nil {
		return linkFacts{}, err
	}
	f := linkFacts{HostName: hostName, MTU: a.MTU, Up: isUp(l)}
	if _, _, ours := ParseAlias(a.Alias); !ours {
		f.Alias = a.Alias
	}
	if a.MasterIndex > 0 {
		if f.Master = names[a.MasterIndex]; f.Master == "" {
			return linkFacts{}, fmt.Errorf("the master (index %d) of %s is not in the %s namespace", a.MasterIndex, a.Name, s.what)
		}
	}
	for _, ad := range addrs {
		f.Addrs = append(f.Addrs, toAddrFacts(ad))
	}
	return f, nil
}

func toAddrFacts(a netlink.Addr) addrFacts {
	f := addrFacts{Local: a.IPNet.String(), Label: a.Label, Flags: a.Flags}
	if a.Peer != nil {
		f.Peer = a.Peer.String()
	}
	if a.Broadcast != nil {
		f.Broadcast = a.Broadcast.String()
	}
	if a.ValidLft != lifetimeForever || a.PreferedLft != lifetimeForever {
		v, p := a.ValidLft, a.PreferedLft
		f.ValidLft, f.PreferredLft = &v, &p
	}
	return f
}

// addr turns the facts back into an address.
func (f addrFacts) addr() (netlink.Addr, error) {
	ip, ipnet, err := net.ParseCIDR(f.Local)
	if err != nil {
		return netlink.Addr{}, fmt.Errorf("address %q: %w", Clip(f.Local), err)
	}
	ipnet.IP = ip
	a := netlink.Addr{IPNet: ipnet, Label: f.Label, Flags: f.Flags, Scope: unix.RT_SCOPE_UNIVERSE,
		ValidLft: lifetimeForever, PreferedLft: lifetimeForever}
	if f.Peer != "" {
		pip, pnet, err := net.ParseCIDR(f.Peer)
		if err != nil {
			return netlink.Addr{}, fmt.Errorf("peer %q: %w", Clip(f.Peer), err)
		}
		pnet.IP = pip
		a.Peer = pnet
	}
	if f.Broadcast != "" {
		if a.Broadcast = net.ParseIP(f.Broadcast); a.Broadcast == nil {
			return netlink.Addr{}, fmt.Errorf("broadcast %q is no IP address", Clip(f.Broadcast))
		}
	}
	if (f.ValidLft == nil) != (f.PreferredLft == nil) {
		return netlink.Addr{}, fmt.Errorf("address %s has one lifetime of two", f.Local)
	}
	if f.ValidLft != nil {
		if *f.ValidLft < 0 || *f.PreferredLft < 0 || *f.ValidLft > lifetimeForever || *f.PreferredLft > *f.ValidLft {
			return netlink.Addr{}, fmt.Errorf("address %s has lifetimes %d/%d", f.Local, *f.PreferredLft, *f.ValidLft)
		}
		a.ValidLft, a.PreferedLft = *f.ValidLft, *f.PreferredLft
	}
	return a, nil
}

// validate checks a record read from disk for the target t.
func (r *record) validate(t Target) error {
	switch {
	case r.Version != recordVersion:
		return fmt.Errorf("version %d, want %d", r.Version, recordVersion)
	case r.InFlight != "" && r.InFlight != inFlightAttach && r.InFlight != inFlightDetach:
		return fmt.Errorf("inFlight %q is neither %q nor %q", Clip(r.InFlight), inFlightAttach, inFlightDetach)
	case r.PCIAddress != t.PCIAddress || r.HostName != t.HostName:
		return fmt.Errorf("it is the record of %s", Target{PCIAddress: Clip(r.PCIAddress), HostName: Clip(r.HostName)})
	case len(r.Links) == 0 && len(r.RDMA) == 0:
		return errors.New("it lists no link")
	}
	seen := map[string]bool{}
	for _, f := range r.Links {
		if err := validIfName(f.HostName); err != nil {
			return fmt.Errorf("host name: %w", err)
		}
		if seen[f.HostName] {
			return fmt.Errorf("link %s is listed twice", f.HostName)
		}
		seen[f.HostName] = true
		if t.HostName != "" && f.HostName != t.HostName {
			return fmt.Errorf("link %s is not %s", f.HostName, t.HostName)
		}
		if f.Master != "" {
			if err := validIfName(f.Master); err != nil {
				return fmt.Errorf("master of %s: %w", f.HostName, err)
			}
		}
		if f.MTU < 0 || f.MTU > 1<<24 {
			return fmt.Errorf("MTU %d of %s", f.MTU, f.HostName)
		}
		if len(f.Alias) > 255 { // IFALIASZ - 1
			return fmt.Errorf("alias of %s is %d bytes", f.HostName, len(f.Alias))
		}
		for _, a := range f.Addrs {
			if _, err := a.addr(); err != nil {
				return fmt.Errorf("link %s: %w", f.HostName, err)
			}
		}
	}
	seenRDMA := map[string]bool{}
	seenIndex := map[uint32]bool{}
	for _, f := range r.RDMA {
		if err := validRDMAName(f.Name); err != nil {
			return err
		}
		if seenRDMA[f.Name] || seenIndex[f.Index] {
			return fmt.Errorf("RDMA device %s (index %d) is listed twice", f.Name, f.Index)
		}
		seenRDMA[f.Name], seenIndex[f.Index] = true, true
		if len(f.NodeGUID) > 64 {
			return fmt.Errorf("node GUID of RDMA device %s is %d bytes", f.Name, len(f.NodeGUID))
		}
	}
	return nil
}

// rdmaFacts returns the record's entry for the RDMA device with that host name.
func (r *record) rdmaFacts(name string) (rdmaFacts, bool) {
	if r == nil {
		return rdmaFacts{}, false
	}
	for _, f := range r.RDMA {
		if f.Name == name {
			return f, true
		}
	}
	return rdmaFacts{}, false
}

// hasRDMA reports whether the record lists RDMA devices.
func (r *record) hasRDMA() bool { return r != nil && len(r.RDMA) > 0 }

// recordName is the record's file name in the lock directory.
func (l *deviceLock) recordName() string { return l.key + ".json" }

// tmpName is the file a record is written to before it is renamed into place.
func (l *deviceLock) tmpName() string { return "." + l.recordName() + ".tmp" }

// errCorruptRecord wraps every failure to read a record that exists.
var errCorruptRecord = errors.New("unreadable device record")

// readRecord returns the device's record, or nil when there is none. A record that exists but cannot
// be read, is not a regular file, or does not validate is an error wrapping errCorruptRecord.
func (l *deviceLock) readRecord(t Target) (*record, error) {
	// A temporary record is a writer's that was killed before its rename: garbage (only the lock's
	// holder writes one, and that is us now).
	if err := unix.Unlinkat(int(l.dir.Fd()), l.tmpName(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("remove the temporary device record %s: %w", l.tmpName(), err)
	}
	name := l.recordName()
	f, err := openAt(l.dir, name, unix.O_RDONLY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	corrupt := func(err error) error {
		return fmt.Errorf("%w %s in %s: %w; check the device's links by hand, then remove it", errCorruptRecord, name, Clip(l.dir.Name()), err)
	}
	if err != nil {
		return nil, corrupt(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordBytes+1))
	if err != nil {
		return nil, corrupt(err)
	}
	if len(data) > maxRecordBytes {
		return nil, corrupt(fmt.Errorf("larger than %d bytes", maxRecordBytes))
	}
	var r record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, corrupt(err)
	}
	if dec.More() {
		return nil, corrupt(errors.New("data after the record"))
	}
	if err := r.validate(t); err != nil {
		return nil, corrupt(err)
	}
	return &r, nil
}

// writeRecord replaces the device's record atomically and durably: written beside it, synced,
// renamed over it, the directory synced.
func (l *deviceLock) writeRecord(r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode the device record: %w", err)
	}
	name, tmp := l.recordName(), l.tmpName() // only the lock's holder writes them
	f, err := openAt(l.dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write the device record: %w", err)
	}
	step("record: write")
	_, err = f.Write(data)
	if err == nil {
		step("record: sync")
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the device record %s: %w", tmp, err)
	}
	step("record: rename")
	if err := unix.Renameat(int(l.dir.Fd()), tmp, int(l.dir.Fd()), name); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, name, err)
	}
	if err := l.dir.Sync(); err != nil {
		return fmt.Errorf("sync the lock directory: %w", err)
	}
	return nil
}

// removeRecord removes the device's record (none is fine) and syncs the directory.
func (l *deviceLock) removeRecord() error {
	step("record: remove")
	err := unix.Unlinkat(int(l.dir.Fd()), l.recordName(), 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove the device record %s: %w", l.recordName(), err)
	}
	if err := l.dir.Sync(); err != nil {
		return fmt.Errorf("sync the lock directory: %w", err)
	}
	return nil
}

// writeOrRemove writes r, or removes the record when r is nil.
func (l *deviceLock) writeOrRemove(r *record) error {
	if r == nil {
		return l.removeRecord()
	}
	return l.writeRecord(r)
}
