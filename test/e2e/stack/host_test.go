package stack

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func randomName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func TestDiff(t *testing.T) {
	base := func() Snapshot {
		return Snapshot{
			Sysctls: map[string]string{"kernel.panic": "1", "vm.overcommit_memory": "0"},
			Paths:   map[string][]string{"/var/run/cdi": {"", "vendor.json"}},
			Mounts:  []string{"/", "/proc"},
			Links:   []string{"eth0", "lo"},
		}
	}
	owned := Owned{Bridge: "ndpe2e0", Links: []string{"dummy0"}, Veths: []string{"veth0123abcd"}}
	tests := []struct {
		name   string
		change func(s *Snapshot)
		want   []string
	}{
		{"same", func(*Snapshot) {}, nil},
		{"sysctl changed", func(s *Snapshot) { s.Sysctls["kernel.panic"] = "10" }, []string{`sysctl kernel.panic: "10", was "1"`}},
		{"path created", func(s *Snapshot) { s.Paths["/var/lib/kubelet"] = []string{"", "device-plugins"} }, []string{"path /var/lib/kubelet: created (2 entries)"}},
		{"entry added", func(s *Snapshot) {
			s.Paths["/var/run/cdi"] = []string{"", "networking.k8s.io-netdevice.json", "vendor.json"}
		},
			[]string{"path /var/run/cdi: new entry networking.k8s.io-netdevice.json"}},
		{"entry removed", func(s *Snapshot) { s.Paths["/var/run/cdi"] = []string{""} }, []string{"path /var/run/cdi: entry vendor.json removed"}},
		{"path removed", func(s *Snapshot) { delete(s.Paths, "/var/run/cdi") }, []string{"path /var/run/cdi: removed"}},
		// other programs (other tests among them) pin namespaces in /run/netns and mount elsewhere
		{"mounts where the stack writes only", func(s *Snapshot) {
			s.Mounts = append(s.Mounts, "/w/containerd/state/rootfs", "/run/netns/cni-1234", "/run/netns/othertest",
				"/var/lib/kubeletx", "/var/lib/kubelet", "/mnt/other", "/wx")
		}, []string{"mount left: /w/containerd/state/rootfs", "mount left: /run/netns/cni-1234", "mount left: /var/lib/kubelet"}},
		// links come and go on a shared machine: only the stack's count
		{"owned links only", func(s *Snapshot) {
			s.Links = append(s.Links, "ndpe2e0", "veth0123abcd", "vethother", "ndt1234", "dummy0")
		}, []string{"link left: ndpe2e0", "link left: veth0123abcd", "link left: dummy0"}},
		{"cgroup and netns", func(s *Snapshot) {
			s.Cgroups = []string{"/sys/fs/cgroup/pids/kubepods"}
			s.NetnsCNI = []string{"/run/netns/cni-1"}
		}, []string{"cgroup left: /sys/fs/cgroup/pids/kubepods", "netns left: /run/netns/cni-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := base()
			tt.change(&after)
			if got := Diff(base(), after, "/w", owned); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":           "/plain",
		`/with\040space`:   "/with space",
		`/tab\011and\134x`: "/tab\tand\\x",
		`/short\04`:        `/short\04`,
		`/not\0octal9`:     `/not\0octal9`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTakeSnapshot(t *testing.T) {
	s, err := TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range WatchedSysctls {
		want, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if s.Sysctls[name] != strings.TrimSpace(string(want)) {
			t.Errorf("sysctl %s = %q, /proc/sys says %q", name, s.Sysctls[name], want)
		}
	}
	if !slices.Contains(s.Mounts, "/") || !slices.Contains(s.Mounts, "/proc") {
		t.Errorf("mounts lack / or /proc: %v", s.Mounts)
	}
	if !slices.Contains(s.Links, "lo") {
		t.Errorf("links lack lo: %v", s.Links)
	}
	if d := Diff(s, s, "/w", Owned{}); len(d) != 0 {
		t.Errorf("a snapshot differs from itself: %v", d)
	}
}

func TestRemoveTreeRefusesMounted(t *testing.T) {
	root := t.TempDir()
	mnt := filepath.Join(root, "pods", "vol")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	keep := filepath.Join(mnt, "data")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = removeTree(root)
	if err == nil || !strings.Contains(err.Error(), mnt+" is still mounted") {
		t.Fatalf("removeTree over a mount = %v, want a refusal naming %s", err, mnt)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("file on the mount was removed: %v", err)
	}

	// a mount outside the work folder is not the stack's, even when it is new
	other := t.TempDir()
	if err := unix.Mount("tmpfs", other, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(other, unix.MNT_DETACH) })
	if err := unmountOwned(State{Work: root, Before: Snapshot{Mounts: before}}); err != nil {
		t.Fatalf("unmountOwned: %v", err)
	}
	now, _ := MountPoints()
	if slices.Contains(now, mnt) {
		t.Errorf("%s (new, below the work folder) is still mounted after unmountOwned", mnt)
	}
	if !slices.Contains(now, other) {
		t.Errorf("unmountOwned unmounted %s, outside the work folder", other)
	}
	if err := removeTree(root); err != nil {
		t.Errorf("removeTree after the unmount: %v", err)
	}
	if err := removeTree(root); err != nil {
		t.Errorf("removeTree of a missing folder: %v", err)
	}
}

func TestRemoveWork(t *testing.T) {
	tests := []struct {
		name                string
		keepLogs, keepState bool
		left                []string
	}{
		{"all", false, false, nil},
		{"keep logs", true, false, []string{"logs", "logs/kubelet.log"}},
		{"keep state", false, true, []string{StateFile}},
		{"keep both", true, true, []string{"logs", "logs/kubelet.log", StateFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := filepath.Join(t.TempDir(), "w")
			p := NewPaths(work)
			for _, f := range []string{"logs/kubelet.log", StateFile, "containerd/root/x", "kubelet/pods/y"} {
				mustWrite(t, filepath.Join(work, f), "")
			}
			if err := removeWork(work, p.Logs, tt.keepLogs, tt.keepState); err != nil {
				t.Fatal(err)
			}
			got, _ := listTree(work)
			var want []string
			if tt.left != nil {
				want = append([]string{""}, tt.left...)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("left %v, want %v", got, want)
			}
		})
	}
}

func mustWrite(t *testing.T, file, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveCgroups(t *testing.T) {
	parent := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(parent, "cgroup.procs")); err != nil {
		parent = "/sys/fs/cgroup" // cgroup v2
	}
	root := filepath.Join(parent, randomName(t, "ndtest"))
	for _, d := range []string{root, filepath.Join(root, "burstable"), filepath.Join(root, "burstable", "pod1")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("create cgroup %s: %v", d, err)
		}
	}
	t.Cleanup(func() { _ = removeCgroups([]string{root}) })
	if err := removeCgroups([]string{root}); err != nil {
		t.Fatalf("removeCgroups: %v", err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still exists: %v", root, err)
	}
}

func TestRestoreSysctls(t *testing.T) {
	// IPC-namespace scoped, used by nothing here, and not one the stack watches (an e2e run's
	// snapshot must never see the nudged value)
	const name = "kernel.msgmnb"
	cur, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		t.Fatal(err)
	}
	orig := strings.TrimSpace(string(cur))
	n, err := strconv.Atoi(orig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(sysctlPath(name), []byte(orig), 0o644) })
	set := func(v int) {
		t.Helper()
		if err := os.WriteFile(sysctlPath(name), []byte(strconv.Itoa(v)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		got, _ := os.ReadFile(sysctlPath(name))
		return strings.TrimSpace(string(got))
	}
	byKubelet := strconv.Itoa(n + 1)
	tests := []struct {
		name   string
		now    int               // the value at teardown
		set    map[string]string // what the stack recorded its kubelet set
		want   string
		before map[string]string
	}{
		{"still the kubelet's value: restored", n + 1, map[string]string{name: byKubelet}, orig, map[string]string{name: orig}},
		{"changed again since: left", n + 2, map[string]string{name: byKubelet}, strconv.Itoa(n + 2), map[string]string{name: orig}},
		{"never set by the kubelet: left", n + 1, nil, byKubelet, map[string]string{name: orig}},
		{"no value from before: left", n + 1, map[string]string{name: byKubelet}, byKubelet, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set(tt.now)
			if err := restoreSysctls(tt.before, tt.set); err != nil {
				t.Fatalf("restoreSysctls: %v", err)
			}
			if got := read(); got != tt.want {
				t.Errorf("%s = %s after the teardown, want %s", name, got, tt.want)
			}
		})
	}
	err = restoreSysctls(map[string]string{"kernel.no_such_sysctl": "1"}, map[string]string{"kernel.no_such_sysctl": "2"})
	if err == nil || !strings.Contains(err.Error(), "kernel.no_such_sysctl") {
		t.Errorf("restoring a missing sysctl: %v, want an error naming it", err)
	}
}
