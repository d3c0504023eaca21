package stack

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
)

// Owned is what the stack created on the host outside its work folder, recorded in the state file as
// it goes. A teardown removes exactly this, plus what is tied to it by name or content (see
// hostLayout), and never an entry that existed when the stack started. Everything below the work
// folder is the stack's anyway: run.sh or the test created that folder for it alone.
type Owned struct {
	Bridge  string            // the CNI bridge; Preflight saw no link of that name
	Links   []string          // host links the tests created (TrackLink)
	Veths   []string          // host veths seen enslaved to the bridge: the pods' CNI veths
	IDs     []string          // sandbox and container IDs of the stack's own containerd
	Netns   []string          // network namespace pins of its sandboxes
	Cgroups []string          // kubepods cgroup folders that appeared while the stack ran
	Paths   []string          // host paths (hostLayout) that appeared while the stack ran, and the tests' (TrackPath)
	Sysctls map[string]string // sysctls its kubelet changed while it ran: name -> the value it set
}

// hostLayout names the host paths the stack's processes write outside the work folder because they
// are hard-coded there (E2E-NOTES.md). Tests use a layout below a temporary folder.
type hostLayout struct {
	// Roots are the watched folders whose snapshot says what existed before (WatchedPaths).
	Roots []string
	// Created are paths the stack's processes create at fixed names: /var/log/containers, libcni's
	// result cache, the shims' socket folder (containerd hard-codes /run/containerd/s) and a cluster's
	// CDI folder. One that did not exist when the stack started and appears while the stack runs is
	// the stack's: Preflight made sure that no other kubelet or container runtime runs and that the
	// device-plugin folder is empty, and the stack's kubelet holds the kubelet ports meanwhile, so no
	// other kubelet starts. A teardown removes such a folder only when it is empty.
	Created []string
	// Trees are folders at fixed paths written only by the stack's kubelet and the plugin it runs:
	// the kubelet's default root (a standalone kubelet writes its device-plugins folder there
	// whatever --root-dir says, a cluster's kubelet uses it whole), the plugin's hook folder and its
	// run folder (hook locks, the daemon's state). The root and every entry below it that appear
	// while the stack runs are the stack's, as Created's are (Preflight also refused a host where a
	// kubelet left files in its root or netdevice-plugin is installed).
	Trees []string
	// CDIDir is the host's CDI spec folder; of what appears in it while the stack runs, the entries
	// named with one of CDIPrefixes are the stack's: the specs of its pools (all under the
	// networking.k8s.io prefix) and the plugin's staging folder.
	CDIDir      string
	CDIPrefixes []string
	// ShimSockets holds a socket per shim named sha256(<containerd socket>/<namespace>/<shim id>):
	// the stack's shims are the names its containerd socket and its container IDs hash to.
	ShimSockets string
	// CNIResults is libcni's cache, one file "<network>-<container ID>-<ifname>" per attachment:
	// the stack's are those naming its sandbox IDs.
	CNIResults string
	// ContainerLogs holds the kubelet's links to container logs: the stack's point into its work
	// folder (its kubelet's podLogsDir).
	ContainerLogs string
	// HookLocks holds the hook's per-device lock files "link-<host name>.lock": the stack's name
	// its test links.
	HookLocks string
}

// host is the real machine's layout.
var host = hostLayout{
	Roots: WatchedPaths,
	Created: []string{
		"/var/log/containers", "/var/lib/cni", "/var/lib/cni/results",
		"/run/containerd", "/run/containerd/s", HostCDIDir,
		"/opt/cni", "/opt/cni/bin", // the DaemonSet's hostPath for the IPAM plugins (DirectoryOrCreate)
		"/etc/cni", "/etc/cni/net.d", // the DaemonSet's hostPath for the IPAM plugins' configuration (DirectoryOrCreate)
		"/var/lib/cni/networks", // host-local's default store, the DaemonSet's hostPath (DirectoryOrCreate)
		"/run/cni",              // the dhcp daemon's socket folder, the DaemonSet's hostPath (DirectoryOrCreate)
	},
	Trees: []string{HostKubeletRoot, "/opt/netdevice-plugin", "/run/netdevice-plugin",
		"/var/run/k8s.cni.cncf.io", "/var/lib/netdevice-plugin"},
	CDIDir:        HostCDIDir,
	CDIPrefixes:   []string{"networking.k8s.io-", ".netdevice-plugin-staging"},
	ShimSockets:   "/run/containerd/s",
	CNIResults:    "/var/lib/cni/results",
	ContainerLogs: "/var/log/containers",
	HookLocks:     "/run/netdevice-plugin/locks",
}

// criNamespace is the containerd namespace of every CRI sandbox and container.
const criNamespace = "k8s.io"

// kubeletTunables are the sysctls the kubelet sets at start when protectKernelDefaults is false, with
// the values it sets (kubernetes v1.34 pkg/kubelet/cm/container_manager_linux.go setupKernelTunables).
var kubeletTunables = map[string]string{
	"vm.overcommit_memory":      "1",
	"vm.panic_on_oom":           "0",
	"kernel.panic":              "10",
	"kernel.panic_on_oops":      "1",
	"kernel.keys.root_maxkeys":  "1000000",
	"kernel.keys.root_maxbytes": "25000000",
}

var containerID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// existedBefore reports whether path was there when the snapshot was taken. A path below none of the
// watched roots counts as existing: the stack cannot prove it made it.
func (s Snapshot) existedBefore(roots []string, path string) bool {
	for _, root := range roots {
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		entries, ok := s.Paths[root]
		if !ok {
			return false // the root itself did not exist
		}
		if rel == "." {
			rel = ""
		}
		i := sort.SearchStrings(entries, rel)
		return i < len(entries) && entries[i] == rel
	}
	return true
}

// collect finds what the stack owns now. By content, always: its containerd's sandbox and container
// IDs (from that containerd's private folders), its sandboxes' netns pins (from their bundles), the
// veths enslaved to its bridge. running says the stack's processes run now, in this process: then the
// paths of l.Created, l.Trees and l.CDIDir and kubepods cgroups that did not exist before are its own
// too, and so are the kubelet's tunables that now hold the kubelet's values. A teardown from another
// process, maybe long after the run was killed, passes false: what appeared since is not provably
// the stack's.
func collect(st State, l hostLayout, running bool) Owned {
	p := st.Paths()
	var o Owned
	ids := map[string]bool{}
	for _, dir := range []string{
		filepath.Join(p.ContainerdState, "io.containerd.runtime.v2.task", criNamespace),
		filepath.Join(p.ContainerdRoot, "io.containerd.grpc.v1.cri", "sandboxes"),
		filepath.Join(p.ContainerdRoot, "io.containerd.grpc.v1.cri", "containers"),
	} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if containerID.MatchString(e.Name()) {
				ids[e.Name()] = true
			}
		}
	}
	for id := range ids {
		o.IDs = append(o.IDs, id)
		if ns := bundleNetns(filepath.Join(p.ContainerdState, "io.containerd.runtime.v2.task", criNamespace, id, "config.json")); ns != "" {
			o.Netns = append(o.Netns, ns)
		}
	}
	o.Veths = enslavedVeths(st.Owned.Bridge)
	if !running {
		return o
	}
	addNew := func(path string) {
		if !st.Before.existedBefore(l.Roots, path) {
			o.Paths = append(o.Paths, path)
		}
	}
	for _, path := range l.Created {
		if _, err := os.Lstat(path); err == nil {
			addNew(path)
		}
	}
	walk := func(root string) {
		_ = filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
			if err == nil {
				addNew(path)
			}
			return nil // entries removed while walking are simply not there
		})
	}
	for _, root := range l.Trees {
		walk(root)
	}
	if entries, err := os.ReadDir(l.CDIDir); err == nil {
		for _, e := range entries {
			for _, prefix := range l.CDIPrefixes {
				if strings.HasPrefix(e.Name(), prefix) {
					walk(filepath.Join(l.CDIDir, e.Name()))
					break
				}
			}
		}
	}
	o.Cgroups = added(st.Before.Cgroups, kubepodsCgroups())
	if st.kubeletStarted() {
		for name, want := range kubeletTunables {
			cur, err := os.ReadFile(sysctlPath(name))
			if err == nil && strings.TrimSpace(string(cur)) == want && st.Before.Sysctls[name] != want {
				if o.Sysctls == nil {
					o.Sysctls = map[string]string{}
				}
				o.Sysctls[name] = want
			}
		}
	}
	return o
}

// kubeletStarted reports whether the stack ever started its kubelet.
func (st State) kubeletStarted() bool {
	for _, p := range st.Procs {
		if p.Name == "kubelet" {
			return true
		}
	}
	return false
}

// bundleNetns returns the network namespace path in an OCI bundle's config.json when it is a pin
// (not a /proc/<pid>/ns/net of another container), "" otherwise.
func bundleNetns(configJSON string) string {
	data, err := os.ReadFile(configJSON)
	if err != nil {
		return ""
	}
	var spec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	}
	if json.Unmarshal(data, &spec) != nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" && !strings.HasPrefix(ns.Path, "/proc/") {
			return ns.Path
		}
	}
	return ""
}

// enslavedVeths returns the names of the veths whose master is the bridge.
func enslavedVeths(bridge string) []string {
	if bridge == "" {
		return nil
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range links {
		if l.Type() == "veth" && l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// merge adds what found holds to o and reports whether anything was new.
func (o *Owned) merge(found Owned) bool {
	changed := false
	for _, f := range []struct{ dst, src *[]string }{
		{&o.Links, &found.Links}, {&o.Veths, &found.Veths}, {&o.IDs, &found.IDs}, {&o.Netns, &found.Netns},
		{&o.Cgroups, &found.Cgroups}, {&o.Paths, &found.Paths},
	} {
		if n := union(*f.dst, *f.src); len(n) != len(*f.dst) {
			*f.dst, changed = n, true
		}
	}
	for name, v := range found.Sysctls {
		if _, ok := o.Sysctls[name]; !ok {
			if o.Sysctls == nil {
				o.Sysctls = map[string]string{}
			}
			o.Sysctls[name], changed = v, true
		}
	}
	return changed
}

// union returns the sorted set of a and b.
func union(a, b []string) []string {
	seen := make(map[string]bool, len(a)+len(b))
	out := make([]string, 0, len(a)+len(b))
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// links returns every host link the stack owns by record.
func (o Owned) links() []string {
	out := append(append([]string{}, o.Links...), o.Veths...)
	if o.Bridge != "" {
		out = append(out, o.Bridge)
	}
	return out
}

// shimSocket is the socket containerd's shim of id listens on (containerd v2 pkg/shim SocketAddress).
func shimSocket(dir, containerdSocket, id string, debug bool) string {
	p := filepath.Join(containerdSocket, criNamespace, id)
	if debug {
		p = filepath.Join(p, "debug")
	}
	return filepath.Join(dir, fmt.Sprintf("%x", sha256.Sum256([]byte(p))))
}

// ownedHostFiles lists the files in the host's shared folders that are the stack's by name or content
// and did not exist when it started: its shims' sockets, libcni results for its sandboxes, the
// kubelet's log links into its work folder, the hook's locks on its test links, and the l.Created
// files it recorded. Folders recorded in o.Paths are left to removeOwnedDirs.
func ownedHostFiles(st State, l hostLayout) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if _, err := os.Lstat(p); err == nil && !seen[p] && !st.Before.existedBefore(l.Roots, p) {
			seen[p] = true
			out = append(out, p)
		}
	}
	sock := st.Paths().ContainerdSocket
	ids := map[string]bool{}
	for _, id := range st.Owned.IDs {
		ids[id] = true
		add(shimSocket(l.ShimSockets, sock, id, false))
		add(shimSocket(l.ShimSockets, sock, id, true))
	}
	if entries, err := os.ReadDir(l.CNIResults); err == nil {
		for _, e := range entries {
			for _, part := range strings.Split(e.Name(), "-") {
				if ids[part] {
					add(filepath.Join(l.CNIResults, e.Name()))
					break
				}
			}
		}
	}
	if entries, err := os.ReadDir(l.ContainerLogs); err == nil {
		for _, e := range entries {
			link := filepath.Join(l.ContainerLogs, e.Name())
			if target, err := os.Readlink(link); err == nil && below(target, st.Work) {
				add(link)
			}
		}
	}
	for _, name := range st.Owned.Links {
		add(filepath.Join(l.HookLocks, "link-"+name+".lock"))
	}
	for _, p := range st.Owned.Paths {
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
			add(p)
		}
	}
	sort.Strings(out)
	return out
}

// below reports whether path is dir or inside it.
func below(path, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return dir != "" && (path == dir || strings.HasPrefix(path, dir+"/"))
}
