package stack

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// WatchedPaths are the folders outside the work folder that the kubelet, containerd, the CNI plugins
// and the device plugin write to (E2E-NOTES.md), plus the defaults a misconfiguration would fall
// back to. A snapshot lists their contents to verify the host after a teardown, and to tell whether
// an entry the stack's processes create at a fixed name (hostLayout) existed before. The teardown
// never removes an entry just because it is new here: only what the state records as the stack's.
var WatchedPaths = []string{
	"/var/lib/kubelet", "/run/containerd", "/var/run/cdi", "/etc/cdi", "/var/log/containers",
	"/var/log/pods", "/etc/cni", "/opt/cni", "/var/lib/cni", "/opt/containerd", "/var/lib/containerd",
	"/etc/containerd", "/usr/libexec/kubernetes", "/var/run/nri", "/opt/nri", "/etc/nri",
	"/run/netdevice-plugin", "/opt/netdevice-plugin", // the hook's lock folder, the default hook path
	"/var/run/k8s.cni.cncf.io", "/var/lib/netdevice-plugin", // device-information files, IPAM leases
	"/etc/kubernetes", "/var/run/kubernetes", // a kubelet's and the control plane's defaults
	"/run/cni", // the CNI dhcp daemon's socket folder, which the DaemonSet mounts
}

// WatchedSysctls are the host sysctls the kubelet sets at start (its kernel tunables) and the one
// the CNI bridge plugin sets in gateway mode (the stack's network is not): verified, restored only
// when the kubelet's change is still in place (Owned.Sysctls).
var WatchedSysctls = []string{
	"kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
}

// netnsDir is where runtimes pin pod network namespaces by default (the stack's containerd pins them
// below its state folder); other programs on the machine use the folder too.
const netnsDir = "/run/netns"

// Snapshot is the part of the host state the stack may change.
type Snapshot struct {
	Sysctls  map[string]string   // name -> value
	Paths    map[string][]string // watched path -> its entries relative to it ("" for itself); absent: did not exist
	Mounts   []string            // every mount point
	Links    []string            // link names in the host network namespace
	Cgroups  []string            // existing kubepods cgroup folders
	NetnsCNI []string            // /run/netns/cni-* entries
}

// TakeSnapshot reads the current host state.
func TakeSnapshot() (Snapshot, error) {
	s := Snapshot{Sysctls: map[string]string{}, Paths: map[string][]string{}}
	for _, name := range WatchedSysctls {
		v, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			return s, fmt.Errorf("read sysctl %s: %w", name, err)
		}
		s.Sysctls[name] = strings.TrimSpace(string(v))
	}
	for _, p := range WatchedPaths {
		entries, err := listTree(p)
		if err != nil {
			return s, err
		}
		if entries != nil {
			s.Paths[p] = entries
		}
	}
	var err error
	if s.Mounts, err = MountPoints(); err != nil {
		return s, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return s, fmt.Errorf("list host links: %w", err)
	}
	for _, l := range links {
		s.Links = append(s.Links, l.Attrs().Name)
	}
	sort.Strings(s.Links)
	s.Cgroups = kubepodsCgroups()
	s.NetnsCNI = netnsCNI()
	return s, nil
}

// Diff lists, one line each, how after differs from before where the stack could have left something:
// sysctls, watched paths, kubepods cgroups and CNI netns pins entirely; mounts below the work folder,
// the watched paths and CNI netns pins; among links, which other programs on the machine add and
// remove all the time, the ones the stack owns.
func Diff(before, after Snapshot, work string, owned Owned) []string {
	ownLink := map[string]bool{}
	for _, l := range owned.links() {
		ownLink[l] = true
	}
	var out []string
	for _, name := range WatchedSysctls {
		if before.Sysctls[name] != after.Sysctls[name] {
			out = append(out, fmt.Sprintf("sysctl %s: %q, was %q", name, after.Sysctls[name], before.Sysctls[name]))
		}
	}
	for _, p := range WatchedPaths {
		b, bok := before.Paths[p]
		a, aok := after.Paths[p]
		switch {
		case !bok && aok:
			out = append(out, fmt.Sprintf("path %s: created (%d entries)", p, len(a)))
		case bok && !aok:
			out = append(out, fmt.Sprintf("path %s: removed", p))
		case bok:
			for _, e := range added(b, a) {
				out = append(out, fmt.Sprintf("path %s: new entry %s", p, e))
			}
			for _, e := range added(a, b) {
				out = append(out, fmt.Sprintf("path %s: entry %s removed", p, e))
			}
		}
	}
	for _, m := range added(before.Mounts, after.Mounts) {
		if watchedMount(m, work) {
			out = append(out, "mount left: "+m)
		}
	}
	for _, l := range added(before.Links, after.Links) {
		if ownLink[l] {
			out = append(out, "link left: "+l)
		}
	}
	for _, c := range added(before.Cgroups, after.Cgroups) {
		out = append(out, "cgroup left: "+c)
	}
	for _, n := range added(before.NetnsCNI, after.NetnsCNI) {
		out = append(out, "netns left: "+n)
	}
	return out
}

// watchedMount reports whether a mount point is one the verification looks at: below the work folder
// or a watched path, or a CNI netns pin (other programs, tests among them, pin namespaces in
// /run/netns under other names).
func watchedMount(mp, work string) bool {
	if below(mp, work) || strings.HasPrefix(mp, netnsDir+"/cni-") {
		return true
	}
	for _, p := range WatchedPaths {
		if below(mp, p) {
			return true
		}
	}
	return false
}

// added returns the elements of after that are not in before.
func added(before, after []string) []string {
	seen := make(map[string]bool, len(before))
	for _, b := range before {
		seen[b] = true
	}
	var out []string
	for _, a := range after {
		if !seen[a] {
			out = append(out, a)
		}
	}
	return out
}

// listTree returns every entry below root relative to it, root itself as "", sorted; nil when root
// does not exist. Mount points below root are listed but not entered.
func listTree(root string) ([]string, error) {
	if _, err := os.Lstat(root); os.IsNotExist(err) {
		return nil, nil
	}
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) { // removed while walking
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	sort.Strings(out)
	return out, nil
}

// MountPoints returns every mount point of this mount namespace, in mount order.
func MountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeMount(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// kubepodsGlobs match the kubelet's top-level pod cgroups (cgroupfs driver) in v1 and v2 hierarchies.
var kubepodsGlobs = []string{"/sys/fs/cgroup/*/kubepods*", "/sys/fs/cgroup/kubepods*"}

// kubepodsCgroups returns the kubelet's top-level pod cgroups under every hierarchy (v1 and v2).
func kubepodsCgroups() []string {
	var out []string
	for _, pattern := range kubepodsGlobs {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

func netnsCNI() []string {
	m, _ := filepath.Glob(netnsDir + "/cni-*")
	sort.Strings(m)
	return m
}

func sysctlPath(name string) string {
	return "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
}
