package stack

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// hostChecks are what Preflight looks at; tests point them at their own sockets and folders.
type hostChecks struct {
	RuntimeSockets  []string // CRI sockets of a system runtime
	Ports           []int    // the kubelet's ports
	ProcessNames    []string // /proc/<pid>/comm of a kubelet
	DevicePluginDir string   // the kubelet's hard-coded device-plugin folder
	CgroupGlobs     []string // kubepods cgroups of a kubelet
	Links           []string // the stack's links: its CNI bridge, a cluster's node link
	// cluster only
	NodeIP      string   // the node's address, which no link may hold yet
	KubeletRoot string   // the host's kubelet root, which the node's kubelet uses: no file in it
	PluginFiles []string // globs of the files an installed netdevice-plugin keeps on the host
	TestFiles   []string // host paths the cluster test creates (whereabouts' binary and configuration)
}

func defaultChecks(o Options) hostChecks {
	o.defaults()
	c := hostChecks{
		RuntimeSockets:  []string{"/run/containerd/containerd.sock", "/run/crio/crio.sock"},
		Ports:           o.Ports.all(o.Cluster),
		ProcessNames:    []string{"kubelet"},
		DevicePluginDir: "/var/lib/kubelet/device-plugins",
		CgroupGlobs:     kubepodsGlobs,
		Links:           []string{o.Bridge},
	}
	if o.Cluster {
		c.ProcessNames = append(c.ProcessNames, "kube-apiserver", "etcd")
		c.Links = append(c.Links, o.NodeLink)
		c.NodeIP = o.NodeIP
		c.KubeletRoot = HostKubeletRoot
		c.PluginFiles = []string{"/opt/netdevice-plugin/bin/*", "/run/netdevice-plugin/*", HostCDIDir + "/networking.k8s.io-*",
			"/var/lib/netdevice-plugin/ipam/*"}
		c.TestFiles = WhereaboutsHostPaths
	}
	return c
}

// The host paths where whereabouts is installed, which the cluster test's whereabouts scenario
// creates: its plugin in the CNI folder the DaemonSet mounts, and its configuration folder, where
// whereabouts' own installer puts it (whereabouts.conf, whereabouts.kubeconfig).
const (
	HostWhereabouts    = "/opt/cni/bin/whereabouts"
	HostWhereaboutsDir = "/etc/cni/net.d/whereabouts.d"
)

// WhereaboutsHostPaths are the paths whose presence means whereabouts is installed on the host.
var WhereaboutsHostPaths = []string{HostWhereabouts, HostWhereaboutsDir}

// Preflight refuses a host where the stack would share state with another kubelet or container
// runtime: its kubelet would delete the other's device-plugin sockets and overwrite its checkpoint
// (the folder is hard-coded), adopt or kill pods in its kubepods cgroups, and its shims share
// /run/containerd/s. A cluster also needs the control plane's ports free, a kubelet root without
// another kubelet's files (its kubelet uses the host's), and no netdevice-plugin installed on the
// host (the DaemonSet it installs would overwrite the hook, the CDI specs and the daemon's state).
// It changes nothing; the error names every reason found.
func Preflight(o Options) error { return preflight(defaultChecks(o)) }

func preflight(c hostChecks) error {
	var why []string
	for _, sock := range c.RuntimeSockets {
		if _, err := os.Stat(sock); err != nil {
			continue
		}
		if conn, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			conn.Close()
			why = append(why, fmt.Sprintf("a container runtime answers on %s", sock))
		}
	}
	listening, err := listeningTCPPorts()
	if err != nil {
		why = append(why, err.Error())
	}
	for _, port := range c.Ports {
		if listening[port] {
			why = append(why, fmt.Sprintf("something listens on TCP port %d (the kubelet's)", port))
		}
	}
	for _, pid := range processesNamed(c.ProcessNames) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		why = append(why, fmt.Sprintf("process %d (%s) runs", pid, strings.TrimSpace(string(comm))))
	}
	if entries, err := os.ReadDir(c.DevicePluginDir); err == nil && len(entries) > 0 {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		why = append(why, fmt.Sprintf("%s holds %s: another kubelet's device plugins and checkpoint, which this stack's kubelet would delete or overwrite",
			c.DevicePluginDir, strings.Join(names, ", ")))
	}
	for _, pattern := range c.CgroupGlobs {
		m, _ := filepath.Glob(pattern)
		for _, cg := range m {
			why = append(why, fmt.Sprintf("cgroup %s exists: another kubelet's pods, which this stack's kubelet would adopt or kill", cg))
		}
	}
	for _, l := range c.Links {
		if _, err := netlink.LinkByName(l); l != "" && err == nil {
			why = append(why, fmt.Sprintf("link %s exists: another end-to-end run is active, or one left it behind", l))
		}
	}
	if c.NodeIP != "" {
		if holder := linkWithAddress(net.ParseIP(c.NodeIP)); holder != "" {
			why = append(why, fmt.Sprintf("link %s holds %s, the node address the stack would use", holder, c.NodeIP))
		}
	}
	if c.KubeletRoot != "" {
		if files := filesBelow(c.KubeletRoot, 3); len(files) > 0 {
			why = append(why, fmt.Sprintf("%s holds %s: another kubelet's state, which this stack's kubelet (whose root it is) would adopt or overwrite",
				c.KubeletRoot, strings.Join(files, ", ")))
		}
	}
	for _, pattern := range c.PluginFiles {
		m, _ := filepath.Glob(pattern)
		for _, f := range m {
			why = append(why, fmt.Sprintf("%s exists: netdevice-plugin is installed on this host, and the DaemonSet the test installs would overwrite it", f))
		}
	}
	for _, f := range c.TestFiles {
		if _, err := os.Lstat(f); err == nil {
			why = append(why, fmt.Sprintf("%s exists: whereabouts is installed on this host, and the cluster test would put its own there", f))
		}
	}
	if len(why) == 0 {
		return nil
	}
	return errors.New("refusing to start the end-to-end stack, nothing was changed: " + strings.Join(why, "; ") +
		" (stop the other kubelet / container runtime, or tear down a killed run with test/e2e/run.sh teardown)")
}

// linkWithAddress returns the name of a host link that holds ip, "" when none does.
func linkWithAddress(ip net.IP) string {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				return l.Attrs().Name
			}
			return fmt.Sprintf("#%d", a.LinkIndex)
		}
	}
	return ""
}

// filesBelow returns up to max paths of non-directories below dir ("" when dir is missing).
func filesBelow(dir string, max int) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return filepath.SkipDir
		}
		if len(out) >= max {
			return filepath.SkipAll
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// listeningTCPPorts returns the local ports in LISTEN state in this network namespace, IPv4 and IPv6.
func listeningTCPPorts() (map[int]bool, error) {
	out := map[int]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if os.IsNotExist(err) {
			continue // no IPv6
		}
		if err != nil {
			return nil, fmt.Errorf("read listening ports: %w", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st ...; local_address is HEXIP:HEXPORT, st 0A is LISTEN
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" {
				continue
			}
			_, port, ok := strings.Cut(fields[1], ":")
			if n, err := strconv.ParseUint(port, 16, 16); ok && err == nil {
				out[int(n)] = true
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
	}
	return out, nil
}

// processesNamed returns the PIDs whose command name (/proc/<pid>/comm) is one of names.
func processesNamed(names []string) []int {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && want[strings.TrimSpace(string(comm))] {
			out = append(out, pid)
		}
	}
	return out
}
