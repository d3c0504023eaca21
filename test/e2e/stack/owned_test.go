package stack

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestExistedBefore(t *testing.T) {
	roots := []string{"/r/a", "/r/b"}
	s := Snapshot{Paths: map[string][]string{"/r/a": {"", "x", "x/y"}}}
	for path, want := range map[string]bool{
		"/r/a":     true,
		"/r/a/x":   true,
		"/r/a/x/y": true,
		"/r/a/x/z": false, // new below a watched root
		"/r/b":     false, // the root itself did not exist
		"/r/b/c":   false,
		"/r/ab":    true, // below no root: not provably new
		"/else":    true,
	} {
		if got := s.existedBefore(roots, path); got != want {
			t.Errorf("existedBefore(%s) = %v, want %v", path, got, want)
		}
	}
}

// TestShimSocket checks the name against a socket containerd v2.2.1's shim really created in a run
// of this stack: /run/containerd/s/<sha256 of "<containerd socket>/k8s.io/<sandbox ID>">.
func TestShimSocket(t *testing.T) {
	got := shimSocket("/run/containerd/s", "/var/tmp/ndp-e2e/GzG6NT/smoke/containerd/containerd.sock",
		"8677462f3b54bfdcd51cd1b620b578f743528940bbc89c5eb8e67482d71a3277", false)
	if want := "/run/containerd/s/cb441a2714b382b269280011dac33448cc7e0cd5fad882a9e1b93802bb328bae"; got != want {
		t.Errorf("shimSocket = %s, want %s", got, want)
	}
}

func TestBundleNetns(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, config, want string }{
		{"pinned", `{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/w/netns/cni-1"}]}}`, "/w/netns/cni-1"},
		{"joins another container", `{"linux":{"namespaces":[{"type":"network","path":"/proc/42/ns/net"}]}}`, ""},
		{"new namespace", `{"linux":{"namespaces":[{"type":"network"}]}}`, ""},
		{"garbage", `{`, ""},
	}
	for _, tt := range tests {
		f := filepath.Join(dir, tt.name+".json")
		mustWrite(t, f, tt.config)
		if got := bundleNetns(f); got != tt.want {
			t.Errorf("%s: bundleNetns = %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := bundleNetns(filepath.Join(dir, "missing.json")); got != "" {
		t.Errorf("bundleNetns of a missing file = %q", got)
	}
}

func TestOwnedMerge(t *testing.T) {
	o := Owned{IDs: []string{"b"}, Sysctls: map[string]string{"kernel.panic": "10"}}
	if !o.merge(Owned{IDs: []string{"a", "b"}, Paths: []string{"/p"}}) {
		t.Error("merge of new entries reported no change")
	}
	if o.merge(Owned{IDs: []string{"a"}, Sysctls: map[string]string{"kernel.panic": "11"}}) {
		t.Error("merge of known entries reported a change")
	}
	want := Owned{IDs: []string{"a", "b"}, Paths: []string{"/p"}, Sysctls: map[string]string{"kernel.panic": "10"}}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("merged = %+v, want %+v (the first recorded sysctl value stays)", o, want)
	}
}

// fixtureHost is a hostLayout below a temporary folder, with a work folder next to it.
type fixtureHost struct {
	l    hostLayout
	work string
	root string
}

func newFixtureHost(t *testing.T) fixtureHost {
	root := t.TempDir()
	j := func(p string) string { return filepath.Join(root, p) }
	return fixtureHost{
		root: root,
		work: j("work"),
		l: hostLayout{
			Roots: []string{j("run"), j("lib"), j("log"), j("opt")},
			Created: []string{j("log/containers"), j("lib/cni"), j("lib/cni/results"), j("run/containerd"), j("run/containerd/s"),
				j("run/cdi")},
			Trees:         []string{j("lib/kubelet"), j("opt/netdevice-plugin"), j("run/netdevice-plugin")},
			CDIDir:        j("run/cdi"),
			CDIPrefixes:   []string{"networking.k8s.io-", ".netdevice-plugin-staging"},
			ShimSockets:   j("run/containerd/s"),
			CNIResults:    j("lib/cni/results"),
			ContainerLogs: j("log/containers"),
			HookLocks:     j("run/netdevice-plugin/locks"),
		},
	}
}

func (f fixtureHost) snapshot(t *testing.T) Snapshot {
	t.Helper()
	s := Snapshot{Paths: map[string][]string{}, Cgroups: kubepodsCgroups()}
	for _, r := range f.l.Roots {
		entries, err := listTree(r)
		if err != nil {
			t.Fatal(err)
		}
		if entries != nil {
			s.Paths[r] = entries
		}
	}
	return s
}

func (f fixtureHost) tree(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range f.l.Roots {
		entries, _ := listTree(r)
		for _, e := range entries {
			out = append(out, strings.TrimPrefix(filepath.Join(r, e), f.root+"/"))
		}
	}
	slices.Sort(out)
	return out
}

// TestOwnedHostPaths runs the ownership rules over a host folder tree where a system runtime and
// kubelet left entries before the run, the stack's processes created theirs during it, and others
// appeared that are not the stack's: only the stack's go, and a folder goes only when it is the
// stack's and empty.
func TestOwnedHostPaths(t *testing.T) {
	f := newFixtureHost(t)
	j := func(p string) string { return filepath.Join(f.root, p) }
	const ourID = "1111111111111111111111111111111111111111111111111111111111111111"
	const otherID = "2222222222222222222222222222222222222222222222222222222222222222"
	p := NewPaths(f.work)
	foreignSock := shimSocket(f.l.ShimSockets, "/run/containerd/containerd.sock", otherID, false)

	// before the run: a system containerd's shim socket and a hook lock of a link that is not the
	// test's; no CNI cache, no kubelet folders
	mustWrite(t, foreignSock, "")
	mustWrite(t, j("run/netdevice-plugin/locks/link-eth9.lock"), "")
	for _, d := range []string{"log", "opt"} {
		if err := os.MkdirAll(j(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := f.snapshot(t)

	// the run: the stack's containerd has one sandbox with a pinned netns
	mustWrite(t, filepath.Join(p.ContainerdState, "io.containerd.runtime.v2.task", "k8s.io", ourID, "config.json"),
		`{"linux":{"namespaces":[{"type":"network","path":"`+p.ContainerdState+`/netns/cni-1"}]}}`)
	mustWrite(t, filepath.Join(p.ContainerdRoot, "io.containerd.grpc.v1.cri", "sandboxes", ourID, "x"), "")
	mustWrite(t, filepath.Join(p.ContainerdRoot, "io.containerd.grpc.v1.cri", "containers", "not-an-id", "x"), "")
	// what its processes create on the host
	ours := []string{
		shimSocket(f.l.ShimSockets, p.ContainerdSocket, ourID, false),
		j("lib/cni/results/netdevice-e2e-" + ourID + "-eth0"),
		j("lib/cni/results/cni-loopback-" + ourID + "-lo"),
		j("lib/kubelet/device-plugins/kubelet.sock"),
		j("lib/kubelet/pods/uid1/volumes/token"), // a cluster's kubelet uses the root whole
		j("run/netdevice-plugin/locks/link-nd1a0.lock"),
		j("run/netdevice-plugin/daemon-state.gob"),
		j("opt/netdevice-plugin/bin/netdevice-hook"),
		j("run/cdi/networking.k8s.io-netdevice.json"),
	}
	for _, o := range ours {
		mustWrite(t, o, "")
	}
	mustWrite(t, j("run/cdi/vendor.example-gpu.json"), "") // another program's spec, written meanwhile
	if err := os.MkdirAll(j("log/containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(p.KubeletPodLogs, "default_test/app/0.log"), j("log/containers/test_default_app-"+ourID+".log")); err != nil {
		t.Fatal(err)
	}
	st := State{Work: f.work, Before: before, Owned: Owned{Links: []string{"nd1a0", "eth9"}}}
	st.Owned.merge(collect(st, f.l, true))
	wantPaths := []string{j("lib/cni"), j("lib/cni/results"), j("lib/kubelet"), j("lib/kubelet/device-plugins"),
		j("lib/kubelet/device-plugins/kubelet.sock"), j("lib/kubelet/pods"), j("lib/kubelet/pods/uid1"),
		j("lib/kubelet/pods/uid1/volumes"), j("lib/kubelet/pods/uid1/volumes/token"), j("log/containers"),
		j("opt/netdevice-plugin"), j("opt/netdevice-plugin/bin"), j("opt/netdevice-plugin/bin/netdevice-hook"),
		j("run/cdi"), j("run/cdi/networking.k8s.io-netdevice.json"),
		j("run/netdevice-plugin/daemon-state.gob"), j("run/netdevice-plugin/locks/link-nd1a0.lock")}
	slices.Sort(wantPaths)
	if !reflect.DeepEqual(st.Owned.Paths, wantPaths) {
		t.Errorf("recorded paths\n  %v\nwant (created during the run, at the names the stack's processes use)\n  %v", st.Owned.Paths, wantPaths)
	}
	if !reflect.DeepEqual(st.Owned.IDs, []string{ourID}) || !reflect.DeepEqual(st.Owned.Netns, []string{p.ContainerdState + "/netns/cni-1"}) {
		t.Errorf("recorded IDs %v and netns %v, want the stack's sandbox and its pin", st.Owned.IDs, st.Owned.Netns)
	}

	// after the run was killed, others write: a system containerd's sandbox with its CNI result and
	// log link, a lock on a link of theirs; a later teardown records nothing of that
	later := []string{
		shimSocket(f.l.ShimSockets, "/run/containerd/containerd.sock", ourID, false), // same ID, other containerd
		j("lib/cni/results/cbr0-" + otherID + "-eth1"),
		j("run/netdevice-plugin/locks/link-eth7.lock"),
		j("run/netdevice-plugin/other"),
		j("lib/kubelet/pods/uid2/x"),
		j("run/cdi/networking.k8s.io-other.json"),
	}
	for _, o := range later {
		mustWrite(t, o, "")
	}
	if err := os.Symlink("/var/log/pods/x/0.log", j("log/containers/other_default_x-"+otherID+".log")); err != nil {
		t.Fatal(err)
	}
	if found := collect(st, f.l, false); len(found.Paths) != 0 {
		t.Errorf("a teardown from outside recorded %v as the stack's", found.Paths)
	}

	got := ownedHostFiles(st, f.l)
	want := append([]string{j("log/containers/test_default_app-" + ourID + ".log")}, ours...)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ownedHostFiles\n  %v\nwant\n  %v", got, want)
	}
	if err := removeOwnedHostPaths(st, f.l); err != nil {
		t.Fatalf("removeOwnedHostPaths: %v", err)
	}
	// left: all that was there before or is someone else's, and the folders holding it
	wantLeft := []string{
		"lib", "lib/cni", "lib/cni/results", "lib/cni/results/cbr0-" + otherID + "-eth1",
		"lib/kubelet", "lib/kubelet/pods", "lib/kubelet/pods/uid2", "lib/kubelet/pods/uid2/x",
		"opt", "run/cdi", "run/cdi/networking.k8s.io-other.json", "run/cdi/vendor.example-gpu.json",
		"log", "log/containers", "log/containers/other_default_x-" + otherID + ".log",
		"run", "run/containerd", "run/containerd/s",
		strings.TrimPrefix(foreignSock, f.root+"/"),
		strings.TrimPrefix(later[0], f.root+"/"),
		"run/netdevice-plugin", "run/netdevice-plugin/locks", "run/netdevice-plugin/locks/link-eth7.lock",
		"run/netdevice-plugin/locks/link-eth9.lock", "run/netdevice-plugin/other",
	}
	slices.Sort(wantLeft)
	if left := f.tree(t); !reflect.DeepEqual(left, wantLeft) {
		t.Errorf("left\n  %s\nwant\n  %s", strings.Join(left, "\n  "), strings.Join(wantLeft, "\n  "))
	}

	// once the others' entries are gone, the stack's empty folders go too; the ones that existed
	// before stay, empty or not
	for _, o := range []string{later[0], foreignSock, j("lib/cni/results/cbr0-" + otherID + "-eth1"),
		j("log/containers/other_default_x-" + otherID + ".log"), j("lib/kubelet/pods/uid2/x"), j("lib/kubelet/pods/uid2"),
		j("run/cdi/networking.k8s.io-other.json"), j("run/cdi/vendor.example-gpu.json")} {
		if err := os.Remove(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeOwnedHostPaths(st, f.l); err != nil {
		t.Fatalf("removeOwnedHostPaths: %v", err)
	}
	wantLeft = []string{"lib", "log", "opt", "run", "run/containerd", "run/containerd/s", "run/netdevice-plugin", "run/netdevice-plugin/locks",
		"run/netdevice-plugin/locks/link-eth7.lock", "run/netdevice-plugin/locks/link-eth9.lock", "run/netdevice-plugin/other"}
	if left := f.tree(t); !reflect.DeepEqual(left, wantLeft) {
		t.Errorf("left\n  %s\nwant\n  %s", strings.Join(left, "\n  "), strings.Join(wantLeft, "\n  "))
	}
}

// TestOwnedLinks: the veths enslaved to the stack's bridge are recorded and deleted with the bridge
// and the tests' links; a veth elsewhere, and a link that was there before, stay.
func TestOwnedLinks(t *testing.T) {
	br, ours, peer := randomName(t, "ndtb"), randomName(t, "ndtv"), randomName(t, "ndtp")
	other, otherPeer, test, old := randomName(t, "ndto"), randomName(t, "ndtq"), randomName(t, "ndtt"), randomName(t, "ndtx")
	t.Cleanup(func() {
		for _, n := range []string{br, ours, other, test, old} {
			if l, err := netlink.LinkByName(n); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
	})
	add := func(l netlink.Link) {
		t.Helper()
		if err := netlink.LinkAdd(l); err != nil {
			t.Fatalf("add link %s: %v", l.Attrs().Name, err)
		}
	}
	add(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: old}})
	before := Snapshot{Links: []string{old}}
	add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br}})
	bridge, err := netlink.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	add(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ours, MasterIndex: bridge.Attrs().Index}, PeerName: peer})
	add(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: other}, PeerName: otherPeer})
	add(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: test}})

	if got := enslavedVeths(br); !reflect.DeepEqual(got, []string{ours}) {
		t.Errorf("enslavedVeths(%s) = %v, want [%s]", br, got, ours)
	}
	st := State{Before: before, Owned: Owned{Bridge: br, Links: []string{test, old}}}
	if err := deleteLinks(st); err != nil {
		t.Fatalf("deleteLinks: %v", err)
	}
	for _, c := range []struct {
		name string
		want bool
	}{{br, false}, {ours, false}, {peer, false}, {test, false}, {other, true}, {otherPeer, true}, {old, true}} {
		_, err := netlink.LinkByName(c.name)
		if got := err == nil; got != c.want {
			t.Errorf("link %s exists: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTrackLinkRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	s := &Stack{Paths: NewPaths(dir), state: State{Work: dir}}
	if err := s.TrackLink("lo"); err == nil || !strings.Contains(err.Error(), "lo already exists") {
		t.Errorf("TrackLink(lo) = %v, want a refusal", err)
	}
	name := randomName(t, "ndtk")
	if err := s.TrackLink(name); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, StateFile)); err != nil || !strings.Contains(string(data), name) {
		t.Errorf("state file does not record %s: %v", name, err)
	}
	if !slices.Contains(s.state.Owned.Links, name) || slices.Contains(s.state.Owned.Links, "lo") {
		t.Errorf("owned links = %v, want %s only", s.state.Owned.Links, name)
	}
}

// TestTrackPath: a path a test is about to create below a watched folder is recorded, and the
// teardown removes it (its folders once empty); an existing path, one that was there at the start
// and one below no watched folder are refused.
func TestTrackPath(t *testing.T) {
	f := newFixtureHost(t)
	j := func(p string) string { return filepath.Join(f.root, p) }
	mustWrite(t, j("opt/cni/bin/host-local"), "") // there before: the host's
	mustWrite(t, j("opt/old"), "")                // there before, removed since
	before := f.snapshot(t)
	if err := os.Remove(j("opt/old")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		j("opt/cni/bin/host-local"): "already exists",
		j("opt/cni"):                "already exists",
		f.root + "/opt/cni/../x":    "clean absolute path",
		"opt/x":                     "clean absolute path",
		j("etc/x"):                  "below none of the watched folders",
		j("opt/old"):                "was there when the stack started",
	} {
		if err := trackable(before, f.l.Roots, path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("trackable(%s) = %v, want a refusal saying %q", path, err, want)
		}
	}

	st := State{Work: f.work, Before: before}
	tracked := []string{j("opt/cni/bin/whereabouts"), j("opt/cni/wb.d"), j("opt/cni/wb.d/wb.conf")}
	for _, p := range tracked {
		if err := trackable(st.Before, f.l.Roots, p); err != nil {
			t.Fatalf("trackable(%s): %v", p, err)
		}
	}
	st.Owned.Paths = union(nil, tracked)
	mustWrite(t, j("opt/cni/bin/whereabouts"), "")
	mustWrite(t, j("opt/cni/wb.d/wb.conf"), "")
	if got, want := ownedHostFiles(st, f.l), []string{j("opt/cni/bin/whereabouts"), j("opt/cni/wb.d/wb.conf")}; !reflect.DeepEqual(got, want) {
		t.Errorf("ownedHostFiles = %v, want %v", got, want)
	}
	if err := removeOwnedHostPaths(st, f.l); err != nil {
		t.Fatal(err)
	}
	if left, want := f.tree(t), []string{"opt", "opt/cni", "opt/cni/bin", "opt/cni/bin/host-local"}; !reflect.DeepEqual(left, want) {
		t.Errorf("left %v, want %v (the tracked paths gone, the host's kept)", left, want)
	}
}

func TestStackTrackPath(t *testing.T) {
	dir := t.TempDir()
	s := &Stack{Paths: NewPaths(dir), state: State{Work: dir}}
	name := "/etc/cni/net.d/" + randomName(t, "ndtp")
	if err := s.TrackPath(name); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, StateFile)); err != nil || !strings.Contains(string(data), name) {
		t.Errorf("state file does not record %s: %v", name, err)
	}
	if err := s.TrackPath("/"); err == nil || slices.Contains(s.state.Owned.Paths, "/") {
		t.Errorf("TrackPath(/) = %v, owned %v: want a refusal", err, s.state.Owned.Paths)
	}
}
