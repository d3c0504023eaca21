package netns

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// returnAsKernelWould stages what the kernel does when a pod's namespace is destroyed with a
// physical link inside: the link (which Attach gave our alias and a pod-side name) comes back to the
// host under its pod-side name. A virtual link would be destroyed instead, so an ifb link is moved
// by hand: into the pod, renamed there, and back under the pod-side name.
func returnAsKernelWould(t *testing.T, host, pod *netnstest.NS, hostName, pci, podName string) {
	t.Helper()
	l := host.Link(t, hostName)
	if err := host.H.LinkSetAlias(l, Alias(hostName, pci)); err != nil {
		t.Fatal(err)
	}
	if err := host.H.LinkSetNsFd(l, pod.FD()); err != nil {
		t.Fatal(err)
	}
	if err := pod.H.LinkSetName(pod.Link(t, hostName), podName); err != nil {
		t.Fatal(err)
	}
	if err := pod.H.LinkSetNsFd(pod.Link(t, podName), host.FD()); err != nil {
		t.Fatal(err)
	}
}

func TestReconcileReturned(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	lockDir := t.TempDir()

	soft := host.Ifb(t)     // came back as net1
	vf := host.Ifb(t)       // a "VF" that came back as dev7
	sameName := host.Ifb(t) // came back under its host name (the pod kept it)
	busy := host.Ifb(t)     // came back, but a hook holds its lock right now
	clash := host.Ifb(t)    // came back, but another link took its host name meanwhile
	returnAsKernelWould(t, host, pod, soft, "", "net1")
	returnAsKernelWould(t, host, pod, vf, "0000:3b:01.7", "dev7")
	returnAsKernelWould(t, host, pod, sameName, "", sameName)
	returnAsKernelWould(t, host, pod, busy, "", "net3")
	returnAsKernelWould(t, host, pod, clash, "", "net4")
	if err := host.H.LinkAdd(ifb(clash)); err != nil {
		t.Fatal(err)
	}

	// Links without our alias are never touched, whatever their names.
	plain := host.Ifb(t)
	foreign := host.Ifb(t)
	if err := host.H.LinkSetName(host.Link(t, plain), "net2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := host.H.LinkByName("net2"); err == nil {
			_ = host.H.LinkDel(l)
		}
	})
	if err := host.H.LinkSetAlias(host.Link(t, foreign), "netdevice-plugin-ish uplink"); err != nil {
		t.Fatal(err)
	}
	host.Exec(t, "ip", "link", "set", "net2", "up")

	lock, err := tryLockDevice(lockDir, Target{HostName: busy}.lockKey())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReconcileReturned(Options{HostNS: host.Path, LockDir: lockDir})
	if err == nil || !strings.Contains(err.Error(), "net4") || !strings.Contains(err.Error(), clash) {
		t.Errorf("error = %v, want one naming net4 and its taken host name %s", err, clash)
	}
	want := []Returned{
		{From: "net1", To: soft},
		{From: "dev7", To: vf, PCIAddress: "0000:3b:01.7"},
		{From: sameName, To: sameName},
	}
	sortReturned(got)
	sortReturned(want)
	if !slices.Equal(got, want) {
		t.Errorf("ReconcileReturned = %+v, want %+v", got, want)
	}
	for _, name := range []string{soft, vf, sameName} {
		if a := host.Link(t, name).Attrs().Alias; a != "" {
			t.Errorf("%s keeps alias %q", name, a)
		}
	}
	if a := host.Link(t, "net3").Attrs().Alias; a != Alias(busy, "") {
		t.Errorf("locked link net3 was touched: alias %q", a)
	}
	if a := host.Link(t, "net4").Attrs().Alias; a != Alias(clash, "") {
		t.Errorf("clashing link net4 was touched: alias %q", a)
	}
	if !host.Has("net2") || !netnstest.IsUp(host.Link(t, "net2")) {
		t.Errorf("link net2 without alias was touched")
	}
	if a := host.Link(t, foreign).Attrs().Alias; a != "netdevice-plugin-ish uplink" {
		t.Errorf("foreign alias changed to %q", a)
	}

	// Once the hook is done, the next call picks the busy link up; nothing else changes.
	lock.unlock()
	got, _ = ReconcileReturned(Options{HostNS: host.Path, LockDir: lockDir})
	if !slices.Equal(got, []Returned{{From: "net3", To: busy}}) {
		t.Errorf("second ReconcileReturned = %+v, want net3 -> %s only", got, busy)
	}
}

func sortReturned(r []Returned) {
	slices.SortFunc(r, func(a, b Returned) int { return strings.Compare(a.To, b.To) })
}

// TestReconcileRestoresFromRecord: a link the kernel hands back from a destroyed pod namespace comes
// back under its pod-side name, down, without addresses, outside its bridge. The reconciler gives it
// back what the record says it had, and removes the record.
func TestReconcileRestoresFromRecord(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	dev, _ := host.Veth(t)
	br := host.Bridge(t)
	host.Exec(t, "ip", "link", "set", dev, "master", br, "alias", "rack 3 uplink")
	before := prepare(t, host, dev, "198.18.46.1/24")
	opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: t.TempDir(), AllowUpperDevices: true}
	if _, err := Attach(pod.Path, Target{HostName: dev}, opts); err != nil {
		t.Fatal(err)
	}
	// What the kernel does when the namespace dies, to a physical link.
	pod.Exec(t, "ip", "link", "set", "net1", "down")
	if err := pod.H.LinkSetNsFd(pod.Link(t, "net1"), host.FD()); err != nil {
		t.Fatal(err)
	}

	got, err := ReconcileReturned(Options{HostNS: host.Path, LockDir: opts.LockDir})
	if err != nil || !slices.Equal(got, []Returned{{From: "net1", To: dev}}) {
		t.Fatalf("ReconcileReturned = %+v, %v", got, err)
	}
	if st := host.State(t, dev); !st.Equal(before) {
		t.Errorf("%s is %+v, want %+v", dev, st, before)
	}
	if m := host.Link(t, dev).Attrs().MasterIndex; m != host.Link(t, br).Attrs().Index {
		t.Errorf("%s is outside its bridge (master %d)", dev, m)
	}
	if files := netnstest.RecordFiles(t, opts.LockDir); len(files) != 0 {
		t.Errorf("the lock directory keeps %v", files)
	}
	// The pod's poststop hook runs after: the namespace is gone, the link home; nothing to do.
	if res, err := Detach(pod.Path, Target{HostName: dev}, opts); err != nil || !res.Already {
		t.Errorf("Detach after the reconcile = %+v, %v; want Already", res, err)
	}
}

// TestReconcileCorruptRecord: a returned link whose record cannot be read is reported and left alone.
func TestReconcileCorruptRecord(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	dev := host.Ifb(t)
	lockDir := t.TempDir()
	returnAsKernelWould(t, host, pod, dev, "", "net1")
	if err := os.WriteFile(filepath.Join(lockDir, Target{HostName: dev}.lockKey()+".json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReconcileReturned(Options{HostNS: host.Path, LockDir: lockDir})
	if err == nil || !strings.Contains(err.Error(), "returned link net1") || !strings.Contains(err.Error(), "unreadable device record") || len(got) != 0 {
		t.Errorf("ReconcileReturned = %+v, %v; want the unreadable record reported", got, err)
	}
	if a := host.Link(t, "net1").Attrs().Alias; a != Alias(dev, "") {
		t.Errorf("net1 was touched: alias %q", a)
	}
}
