package stack

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
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
	sc := Scope{MountPrefixes: []string{"/w", "/var/lib/kubelet"}, Links: map[string]bool{"ndpe2e0": true, "dummy0": true}}
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
		{"our mounts only", func(s *Snapshot) {
			s.Mounts = append(s.Mounts, "/w/containerd/state/rootfs", "/run/netns/cni-1234", "/run/netns/othertest", "/var/lib/kubeletx", "/var/lib/kubelet")
		}, []string{"mount left: /w/containerd/state/rootfs", "mount left: /run/netns/cni-1234", "mount left: /var/lib/kubelet"}},
		{"our links only", func(s *Snapshot) { s.Links = append(s.Links, "ndpe2e0", "veth0123abcd", "vethother", "ndt1234") },
			[]string{"link left: ndpe2e0", "link left: veth0123abcd"}},
		{"cgroup and netns", func(s *Snapshot) {
			s.Cgroups = []string{"/sys/fs/cgroup/pids/kubepods"}
			s.NetnsCNI = []string{"/run/netns/cni-1"}
		}, []string{"cgroup left: /sys/fs/cgroup/pids/kubepods", "netns left: /run/netns/cni-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := base()
			tt.change(&after)
			if got := Diff(base(), after, sc); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}

	// a tracked link that was there before and is gone now is reported too (a test deleted a host link
	// it did not create)
	before := base()
	before.Links = append(before.Links, "dummy0")
	if got := Diff(before, base(), sc); !reflect.DeepEqual(got, []string{"link gone: dummy0"}) {
		t.Errorf("Diff with a tracked link gone = %v", got)
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
	if !contains(s.Mounts, "/") || !contains(s.Mounts, "/proc") {
		t.Errorf("mounts lack / or /proc: %v", s.Mounts)
	}
	if !contains(s.Links, "lo") {
		t.Errorf("links lack lo: %v", s.Links)
	}
	if d := Diff(s, s, Scope{}); len(d) != 0 {
		t.Errorf("a snapshot differs from itself: %v", d)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestRemoveNew(t *testing.T) {
	root := filepath.Join(t.TempDir(), "kubelet")
	mk := func(rel string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk("device-plugins")
	if err := os.WriteFile(filepath.Join(root, "device-plugins", "vendor.sock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := listTree(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "device-plugins", "device-plugins/vendor.sock"}; !reflect.DeepEqual(before, want) {
		t.Fatalf("listTree = %v, want %v", before, want)
	}

	mk("pki/sub")
	if err := os.WriteFile(filepath.Join(root, "device-plugins", "kubelet_internal_checkpoint"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeNew(root, before, true); err != nil {
		t.Fatalf("removeNew: %v", err)
	}
	if after, _ := listTree(root); !reflect.DeepEqual(after, before) {
		t.Errorf("after removeNew: %v, want what was there before: %v", after, before)
	}

	// a folder that did not exist goes entirely; a missing one is no error
	if err := removeNew(root, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", root, err)
	}
	if err := removeNew(root, nil, false); err != nil {
		t.Errorf("removeNew of a missing folder: %v", err)
	}
}

func TestRemoveNewRefusesMounted(t *testing.T) {
	root := t.TempDir()
	mnt := filepath.Join(root, "pods", "vol")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
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
	err := removeNew(root, nil, false)
	if err == nil || !strings.Contains(err.Error(), mnt+" is still mounted") {
		t.Fatalf("removeNew over a mount = %v, want a refusal naming %s", err, mnt)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("file on the mount was removed: %v", err)
	}

	// unmountOurs takes it away when it is new and in scope
	st := State{Before: Snapshot{}, Scope: Scope{MountPrefixes: []string{root}}}
	if st.Before.Mounts, err = MountPoints(); err != nil {
		t.Fatal(err)
	}
	st.Before.Mounts = removeString(st.Before.Mounts, mnt)
	if err := unmountOurs(st); err != nil {
		t.Fatalf("unmountOurs: %v", err)
	}
	now, _ := MountPoints()
	if contains(now, mnt) {
		t.Errorf("%s is still mounted after unmountOurs", mnt)
	}
	if err := removeNew(root, nil, false); err != nil {
		t.Errorf("removeNew after the unmount: %v", err)
	}
}

func removeString(list []string, s string) []string {
	var out []string
	for _, e := range list {
		if e != s {
			out = append(out, e)
		}
	}
	return out
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
	if err := os.WriteFile(sysctlPath(name), []byte(strconv.Itoa(n+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := restoreSysctls(map[string]string{name: orig}); err != nil {
		t.Fatalf("restoreSysctls: %v", err)
	}
	if got, _ := os.ReadFile(sysctlPath(name)); strings.TrimSpace(string(got)) != orig {
		t.Errorf("%s = %s after restore, want %s", name, got, orig)
	}
	if err := restoreSysctls(map[string]string{"kernel.no_such_sysctl": "1"}); err == nil || !strings.Contains(err.Error(), "kernel.no_such_sysctl") {
		t.Errorf("restoring a missing sysctl: %v, want an error naming it", err)
	}
}
