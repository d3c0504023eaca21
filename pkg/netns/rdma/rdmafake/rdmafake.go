// Package rdmafake is a recording fake of rdma.Links for tests, on kernels without RDMA: it models
// which network namespace each RDMA device is in, records every call, can fail any of them, and can
// model an IPoIB device, whose netdev the kernel re-creates in the initial namespace whenever the
// RDMA device changes namespace. Namespaces are real (the netdev side of the tests uses real links);
// the fake knows them by the device and inode numbers of their nsfs files.
//
// A fake made by New lives in memory. One made by Open keeps its state in a file, read before and
// written (atomically) after every call, so that a hook process killed at any step and the next
// process both see the devices where the last completed call left them.
package rdmafake

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma"
)

// Fake is a recording rdma.Links.
type Fake struct {
	mu   sync.Mutex
	path string // "": in memory
	st   State
	// OnCall, if set, sees every call as it is made, before it fails or acts (tests interleave the
	// fake's calls with the steps of pkg/netns). It must not call the fake.
	OnCall func(Call)
	// Fail, if set, is asked about every call: an error fails it, and nothing changes.
	Fail func(Call) error
}

// State is everything the fake knows, as Open's file holds it.
type State struct {
	Devices []Dev             `json:"devices"`
	Labels  map[string]string `json:"labels,omitempty"` // namespace ID -> name in calls ("host", "pod")
	Calls   []Call            `json:"calls,omitempty"`
	FailAt  []int             `json:"failAt,omitempty"` // numbers of the calls that fail (also across processes)
}

// Dev is one RDMA device and where it is.
type Dev struct {
	rdma.Device
	NS  string `json:"ns"` // the namespace it is in (see ID)
	ULP *ULP   `json:"ulp,omitempty"`
}

// ULP is an IPoIB-like netdev of a device: every move of the device deletes it (wherever it is, found
// by Name in InitNS or by Alias anywhere the move touches) and creates it anew in InitNS, an ifb called
// Name with none of the old one's addresses, MTU, alias or admin state. That is what the kernel does
// to an IPoIB netdev: the move unregisters the device's clients and the IPoIB client re-creates its
// netdev in init_net.
type ULP struct {
	Name   string `json:"name"`
	Alias  string `json:"alias,omitempty"`
	InitNS string `json:"initNS"` // path of the namespace standing in for init_net
}

// Call is one call the fake saw.
type Call struct {
	N   int    `json:"n"`            // 1, 2, ...
	Op  string `json:"op"`           // "list", "move", "rename"
	NS  string `json:"ns"`           // the namespace it acted in (move: from), as labelled
	To  string `json:"to,omitempty"` // move: the target namespace; rename: the new name
	Dev string `json:"dev,omitempty"`
	Err string `json:"err,omitempty"`
}

// String is the call as tests compare it: "move mlx5_2 host->pod", "list pod", "rename ibdev0 host mlx5_2".
func (c Call) String() string {
	switch c.Op {
	case "move":
		return fmt.Sprintf("move %s %s->%s", c.Dev, c.NS, c.To)
	case "rename":
		return fmt.Sprintf("rename %s %s %s", c.Dev, c.NS, c.To)
	}
	return c.Op + " " + c.NS
}

// New returns an empty fake in memory.
func New() *Fake { return &Fake{} }

// Create writes st to a new state file at path and returns the fake that keeps its state there.
func Create(path string, st State) (*Fake, error) {
	f := &Fake{path: path, st: st}
	if err := f.save(); err != nil {
		return nil, err
	}
	return f, nil
}

// Open returns the fake whose state is in the file at path (see Create).
func Open(path string) *Fake { return &Fake{path: path} }

// ID names a namespace: its nsfs device and inode numbers, the same in every process.
func ID(ns vnetns.NsHandle) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return "", fmt.Errorf("stat namespace: %w", err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// IDOf names the namespace at path.
func IDOf(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("stat namespace %s: %w", path, err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// Label names the namespace ID in calls and in Where.
func (f *Fake) Label(id, label string) error {
	return f.update(func(st *State) error {
		if st.Labels == nil {
			st.Labels = map[string]string{}
		}
		st.Labels[id] = label
		return nil
	})
}

// Add puts a device into the namespace ID.
func (f *Fake) Add(d rdma.Device, nsID string, ulp *ULP) error {
	return f.update(func(st *State) error {
		for _, o := range st.Devices {
			if o.Index == d.Index || o.Name == d.Name {
				return fmt.Errorf("device %s or index %d is there already", d.Name, d.Index)
			}
		}
		st.Devices = append(st.Devices, Dev{Device: d, NS: nsID, ULP: ulp})
		return nil
	})
}

// FailCalls makes the calls with these numbers fail (also for other processes on the same file).
func (f *Fake) FailCalls(n ...int) error {
	return f.update(func(st *State) error { st.FailAt = n; return nil })
}

// State returns a copy of what the fake knows now.
func (f *Fake) State() (State, error) {
	var out State
	err := f.update(func(st *State) error {
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &out)
	})
	return out, err
}

// Where returns the label (or ID) of the namespace of the device with that index, and its name.
func (f *Fake) Where(index uint32) (ns, name string, err error) {
	st, err := f.State()
	if err != nil {
		return "", "", err
	}
	for _, d := range st.Devices {
		if d.Index == index {
			return st.label(d.NS), d.Name, nil
		}
	}
	return "", "", fmt.Errorf("no RDMA device with index %d", index)
}

// Calls returns the calls so far as strings (see Call.String).
func (f *Fake) Calls() []string {
	st, err := f.State()
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, c := range st.Calls {
		out = append(out, c.String())
	}
	return out
}

// KernelReturn does what the kernel does for RDMA devices when the namespace gone is destroyed:
// each of its devices moves to the namespace initID (an ID), under its own name if that is free
// there and else the first free "ibdevN" (the fallback recent kernels use), and an IPoIB-like
// netdev is deleted in gone and re-created in its InitNS. gone is a handle the test still holds
// (so the namespace is not quite gone). It is no call: nothing is recorded.
func (f *Fake) KernelReturn(gone vnetns.NsHandle, initID string) error {
	goneID, err := ID(gone)
	if err != nil {
		return err
	}
	return f.update(func(st *State) error {
		for i := range st.Devices {
			d := &st.Devices[i]
			if d.NS != goneID {
				continue
			}
			if st.nameTakenIn(initID, d.Name, d.Index) {
				for n := 0; ; n++ {
					if name := fmt.Sprintf("ibdev%d", n); !st.nameTakenIn(initID, name, d.Index) {
						d.Name = name
						break
					}
				}
			}
			d.NS = initID
			if d.ULP != nil {
				if err := recreate(d.ULP, gone); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// RenameByHand renames a device by hand, as an administrator or a pod with CAP_NET_ADMIN could (no call).
func (f *Fake) RenameByHand(index uint32, name string) error {
	return f.update(func(st *State) error {
		for i := range st.Devices {
			if st.Devices[i].Index == index {
				st.Devices[i].Name = name
				return nil
			}
		}
		return fmt.Errorf("no RDMA device with index %d", index)
	})
}

// List implements rdma.Links.
func (f *Fake) List(ns vnetns.NsHandle) ([]rdma.Device, error) {
	var out []rdma.Device
	err := f.call(Call{Op: "list"}, ns, func(st *State, id string) error {
		for _, d := range st.Devices {
			if d.NS == id {
				out = append(out, d.Device)
			}
		}
		return nil
	})
	return out, err
}

// Move implements rdma.Links.
func (f *Fake) Move(from vnetns.NsHandle, d rdma.Device, to vnetns.NsHandle) error {
	toID, err := ID(to)
	if err != nil {
		return err
	}
	return f.call(Call{Op: "move", Dev: d.Name, To: toID}, from, func(st *State, id string) error {
		dev, err := st.in(id, d.Index)
		if err != nil {
			return err
		}
		if toID == id {
			return nil
		}
		dev.NS = toID
		if dev.ULP != nil {
			return recreate(dev.ULP, from, to)
		}
		return nil
	})
}

// Rename implements rdma.Links. Names are unique system-wide, as the kernel has them today.
func (f *Fake) Rename(ns vnetns.NsHandle, d rdma.Device, name string) error {
	return f.call(Call{Op: "rename", Dev: d.Name, To: name}, ns, func(st *State, id string) error {
		dev, err := st.in(id, d.Index)
		if err != nil {
			return err
		}
		for _, o := range st.Devices {
			if o.Name == name && o.Index != d.Index {
				return fmt.Errorf("rename %s to %s: %w", d.Name, name, unix.EEXIST)
			}
		}
		dev.Name = name
		return nil
	})
}

// call records c, made in ns, asks Fail and FailAt, then applies do. Every call is recorded, failed or not.
func (f *Fake) call(c Call, ns vnetns.NsHandle, do func(st *State, id string) error) error {
	id, err := ID(ns)
	if err != nil {
		return err
	}
	var result error
	err = f.update(func(st *State) error {
		c.N = len(st.Calls) + 1
		c.NS = st.label(id)
		if c.To != "" && c.Op == "move" {
			c.To = st.label(c.To)
		}
		if f.OnCall != nil {
			f.OnCall(c)
		}
		switch {
		case slices.Contains(st.FailAt, c.N):
			result = fmt.Errorf("fake RDMA: call %d (%s) fails: %w", c.N, c, unix.EIO)
		case f.Fail != nil:
			if ferr := f.Fail(c); ferr != nil {
				result = ferr
			}
		}
		if result == nil {
			result = do(st, id)
		}
		if result != nil {
			c.Err = result.Error()
		}
		st.Calls = append(st.Calls, c)
		return nil
	})
	if err != nil {
		return err
	}
	return result
}

// update applies change to the state: loaded from and saved to the file for a fake made by Open.
func (f *Fake) update(change func(st *State) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path != "" {
		if err := f.load(); err != nil {
			return err
		}
	}
	if err := change(&f.st); err != nil {
		return err
	}
	if f.path != "" {
		return f.save()
	}
	return nil
}

func (f *Fake) load() error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("fake RDMA state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("fake RDMA state %s: %w", f.path, err)
	}
	f.st = st
	return nil
}

// save replaces the file in one rename: a process killed before it leaves the last state.
func (f *Fake) save() error {
	data, err := json.Marshal(f.st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("fake RDMA state: %w", err)
	}
	return os.Rename(tmp, f.path)
}

func (st *State) label(id string) string {
	if l, ok := st.Labels[id]; ok {
		return l
	}
	return id
}

// in returns the device with that index if it is in the namespace id (the kernel: ENODEV otherwise).
func (st *State) in(id string, index uint32) (*Dev, error) {
	for i := range st.Devices {
		if d := &st.Devices[i]; d.Index == index {
			if d.NS != id {
				return nil, fmt.Errorf("RDMA device index %d is not in namespace %s: %w", index, st.label(id), unix.ENODEV)
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("no RDMA device index %d: %w", index, unix.ENODEV)
}

func (st *State) nameTakenIn(id, name string, self uint32) bool {
	for _, d := range st.Devices {
		if d.NS == id && d.Name == name && d.Index != self {
			return true
		}
	}
	return false
}

// recreate deletes u's netdev in the given namespaces and in u.InitNS, and creates it anew in
// u.InitNS: a fresh ifb, down, without addresses.
func recreate(u *ULP, spaces ...vnetns.NsHandle) error {
	init, err := vnetns.GetFromPath(u.InitNS)
	if err != nil {
		return fmt.Errorf("fake IPoIB: init namespace: %w", err)
	}
	defer init.Close()
	initID, err := ID(init)
	if err != nil {
		return err
	}
	for _, ns := range append([]vnetns.NsHandle{init}, spaces...) {
		id, err := ID(ns)
		if err != nil {
			return err
		}
		if err := deleteULP(ns, u, id == initID); err != nil {
			return err
		}
	}
	h, err := netlink.NewHandleAt(init, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: u.Name}}); err != nil {
		return fmt.Errorf("fake IPoIB: re-create %s: %w", u.Name, err)
	}
	return nil
}

func deleteULP(ns vnetns.NsHandle, u *ULP, isInit bool) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		return err
	}
	for _, l := range ls {
		a := l.Attrs()
		if isInit && a.Name == u.Name || u.Alias != "" && a.Alias == u.Alias {
			if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("fake IPoIB: delete %s: %w", a.Name, err)
			}
		}
	}
	return nil
}
