// Package netnstest gives tests real network namespaces and links, each uniquely named and removed
// when the test ends, so tests can run beside other tests on one machine. It needs root.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RequireRoot skips the test when it cannot create namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
}

// Name returns prefix plus random hex, at most 15 bytes (an interface name's limit).
func Name(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}

// NS is an open network namespace with a netlink handle in it.
type NS struct {
	Name string // the `ip netns` name; "" for the test process's own namespace
	Path string // bind mount or /proc path; "" for the test process's own namespace
	H    *netlink.Handle
	ns   vnetns.NsHandle
}

// Own returns the test process's own namespace (the real host's).
func Own(t testing.TB) *NS {
	t.Helper()
	ns, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	return open(t, ns, "", "")
}

// New creates a named namespace (`ip netns add`), deleted when the test ends.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	name := Name("ndt")
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	path := "/run/netns/" + name
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return open(t, ns, name, path)
}

// Unshared starts `unshare -n sleep` and returns its namespace as /proc/<pid>/ns/net: a namespace
// that lives only as long as a process, like a pod sandbox's. kill ends the process (and with it the
// namespace); it also runs when the test ends.
func Unshared(t testing.TB) (ns *NS, kill func()) {
	t.Helper()
	RequireRoot(t)
	cmd := exec.Command("unshare", "-n", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	kill = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	t.Cleanup(kill)

	own, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	path := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		h, err := vnetns.GetFromPath(path)
		if err == nil && !h.Equal(own) { // unshare has run
			return open(t, h, "", path), kill
		}
		if err == nil {
			_ = h.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare -n did not leave the namespace: %v", err)
		}
	}
}

func open(t testing.TB, ns vnetns.NsHandle, name, path string) *NS {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); _ = ns.Close() })
	return &NS{Name: name, Path: path, H: h, ns: ns}
}

// Within runs fn on a locked OS thread inside ns (as the daemon runs in the host's) and brings the
// thread back. A thread that cannot get back panics: left in a test namespace, it would poison
// later tests.
func Within(ns vnetns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := vnetns.Set(ns); err != nil {
		return err
	}
	defer func() {
		if err := vnetns.Set(orig); err != nil {
			panic(err)
		}
	}()
	return fn()
}

// FD is the namespace's file descriptor, for netlink's LinkSetNsFd.
func (n *NS) FD() int { return int(n.ns) }

// Veth creates a veth pair in the namespace, both ends up, and returns their names. Use dev as the
// device under test; peer keeps it company. Deleted when the test ends (if still there).
func (n *NS) Veth(t testing.TB) (dev, peer string) {
	t.Helper()
	dev, peer = Name("ndd"), Name("ndp")
	if err := n.H.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", dev, err)
	}
	t.Cleanup(func() { // deleting either end deletes both, wherever the other end is
		for _, name := range []string{peer, dev} {
			if l, err := n.H.LinkByName(name); err == nil {
				_ = n.H.LinkDel(l)
				return
			}
		}
	})
	for _, name := range []string{dev, peer} {
		if err := n.H.LinkSetUp(n.Link(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dev, peer
}

// Ifb creates an ifb link (a link that is no veth: it has no peer) and returns its name.
func (n *NS) Ifb(t testing.TB) string {
	t.Helper()
	name := Name("ndi")
	if err := n.H.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("add ifb %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := n.H.LinkByName(name); err == nil {
			_ = n.H.LinkDel(l)
		}
	})
	return name
}

// Bridge creates a bridge, admin up, and returns its name. Deleted when the test ends (if still there).
func (n *NS) Bridge(t testing.TB) string {
	t.Helper()
	name := Name("ndb")
	n.add(t, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}})
	return name
}

// Macvlan creates a bridge-mode macvlan over parent, admin up, and returns its name. Deleted when the
// test ends (if still there).
func (n *NS) Macvlan(t testing.TB, parent string) string {
	t.Helper()
	name := Name("ndm")
	n.add(t, &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: n.Link(t, parent).Attrs().Index},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	})
	return name
}

// add creates l, removes it when the test ends, and sets it up.
func (n *NS) add(t testing.TB, l netlink.Link) {
	t.Helper()
	name := l.Attrs().Name
	if err := n.H.LinkAdd(l); err != nil {
		t.Fatalf("add %s %s: %v", l.Type(), name, err)
	}
	t.Cleanup(func() {
		if l, err := n.H.LinkByName(name); err == nil {
			_ = n.H.LinkDel(l)
		}
	})
	if err := n.H.LinkSetUp(n.Link(t, name)); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// Move sets the link called name down, renames it to as and moves it into to by hand: a link that a
// hook killed mid-way would leave there (the move drops its addresses).
func (n *NS) Move(t testing.TB, name string, to *NS, as string) {
	t.Helper()
	l := n.Link(t, name)
	if err := n.H.LinkSetDown(l); err != nil {
		t.Fatalf("set %s down: %v", name, err)
	}
	if as != name {
		if err := n.H.LinkSetName(l, as); err != nil {
			t.Fatalf("rename %s to %s: %v", name, as, err)
		}
	}
	if err := n.H.LinkSetNsFd(l, to.FD()); err != nil {
		t.Fatalf("move %s: %v", as, err)
	}
}

// Link returns the link called name, failing the test when there is none.
func (n *NS) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.H.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in namespace %q: %v", name, n.Name+n.Path, err)
	}
	return l
}

// Has reports whether a link called name exists.
func (n *NS) Has(name string) bool {
	_, err := n.H.LinkByName(name)
	return err == nil
}

// LinkNames lists the namespace's link names.
func (n *NS) LinkNames(t testing.TB) []string {
	t.Helper()
	ls, err := n.H.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range ls {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// AddAddr adds an address ("10.1.2.3/24", "fd00::1/64") to the link; IPv6 ones skip duplicate
// address detection so they are usable at once.
func (n *NS) AddAddr(t testing.TB, link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if a.IP.To4() == nil {
		a.Flags |= unix.IFA_F_NODAD
	}
	if err := n.H.AddrAdd(n.Link(t, link), a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, link, err)
	}
}

// GlobalAddrs returns the link's global addresses as CIDR strings, sorted by the kernel's order.
func (n *NS) GlobalAddrs(t testing.TB, link string) []string {
	t.Helper()
	all, err := n.H.AddrList(n.Link(t, link), netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range all {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

// Exec runs a command inside the namespace (`ip netns exec`; named namespaces only).
func (n *NS) Exec(t testing.TB, args ...string) {
	t.Helper()
	Run(t, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// IsUp reports whether the link is administratively up.
func IsUp(l netlink.Link) bool { return l.Attrs().Flags&net.FlagUp != 0 }

// LinkState is what tests compare of a link before and after a trip: its alias, global addresses,
// MTU and whether it is up.
type LinkState struct {
	Alias string
	Addrs []string
	MTU   int
	Up    bool
}

// State reads the LinkState of the link called name.
func (n *NS) State(t testing.TB, name string) LinkState {
	t.Helper()
	l := n.Link(t, name)
	return LinkState{Alias: l.Attrs().Alias, Addrs: n.GlobalAddrs(t, name), MTU: l.Attrs().MTU, Up: IsUp(l)}
}

// Equal compares two states field by field (addresses in order).
func (s LinkState) Equal(o LinkState) bool {
	return s.Alias == o.Alias && slices.Equal(s.Addrs, o.Addrs) && s.MTU == o.MTU && s.Up == o.Up
}

// RecordFiles lists a hook lock folder's files other than lock files: records, and temporary files
// a writer left.
func RecordFiles(t testing.TB, lockDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(lockDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".lock") {
			names = append(names, e.Name())
		}
	}
	return names
}
