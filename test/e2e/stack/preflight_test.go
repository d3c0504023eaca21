package stack

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPreflight(t *testing.T) {
	dir := t.TempDir()
	// a runtime socket that answers, and one left behind by a runtime that is gone
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	sl.SetUnlinkOnClose(false)
	sl.Close()

	// a TCP port something listens on, and one nothing does
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	busy := tcp.Addr().(*net.TCPAddr).Port
	free := freePort(t)

	// a process with the name a kubelet would have (a copy of sleep, named at random)
	name := randomName(t, "ndt")
	exe := filepath.Join(dir, name)
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	emptyDP, usedDP := filepath.Join(dir, "dp-empty"), filepath.Join(dir, "dp-used")
	mustWrite(t, filepath.Join(usedDP, "kubelet_internal_checkpoint"), "{}")
	if err := os.MkdirAll(emptyDP, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cg", "pids", "kubepods"), 0o755); err != nil {
		t.Fatal(err)
	}
	// a kubelet root with empty folders only (tolerated) and one with another kubelet's state
	rootEmpty, rootUsed := filepath.Join(dir, "kl-empty"), filepath.Join(dir, "kl-used")
	if err := os.MkdirAll(filepath.Join(rootEmpty, "device-plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(rootUsed, "pods", "uid", "etc-hosts"), "")
	// an installed netdevice-plugin's hook
	mustWrite(t, filepath.Join(dir, "opt", "bin", "netdevice-hook"), "")
	// an installed whereabouts
	mustWrite(t, filepath.Join(dir, "cni", "bin", "whereabouts"), "")

	clean := hostChecks{
		RuntimeSockets:  []string{stale, filepath.Join(dir, "missing.sock")},
		Ports:           []int{free},
		ProcessNames:    []string{randomName(t, "ndtnone")},
		DevicePluginDir: emptyDP,
		CgroupGlobs:     []string{filepath.Join(dir, "cg", "*", "none*")},
		Links:           []string{randomName(t, "ndtbr"), randomName(t, "ndtnode")},
		NodeIP:          "10.237.255.254",
		KubeletRoot:     rootEmpty,
		PluginFiles:     []string{filepath.Join(dir, "none", "*")},
		TestFiles:       []string{filepath.Join(dir, "cni", "bin", "none")},
	}
	if err := preflight(clean); err != nil {
		t.Fatalf("preflight of a clean host: %v", err)
	}
	tests := []struct {
		name   string
		change func(c *hostChecks)
		want   string
	}{
		{"runtime answers", func(c *hostChecks) { c.RuntimeSockets = append(c.RuntimeSockets, live) }, "a container runtime answers on " + live},
		{"port taken", func(c *hostChecks) { c.Ports = append(c.Ports, busy) }, "listens on TCP port " + strconv.Itoa(busy)},
		{"kubelet process", func(c *hostChecks) { c.ProcessNames = []string{name} }, "process " + strconv.Itoa(cmd.Process.Pid) + " (" + name + ") runs"},
		{"device plugin folder used", func(c *hostChecks) { c.DevicePluginDir = usedDP }, usedDP + " holds kubelet_internal_checkpoint"},
		{"kubepods cgroup", func(c *hostChecks) { c.CgroupGlobs = []string{filepath.Join(dir, "cg", "*", "kubepods*")} }, "cgroup " + filepath.Join(dir, "cg", "pids", "kubepods") + " exists"},
		{"bridge exists", func(c *hostChecks) { c.Links = []string{"lo"} }, "link lo exists"},
		{"node address taken", func(c *hostChecks) { c.NodeIP = "127.0.0.1" }, "link lo holds 127.0.0.1"},
		{"kubelet root used", func(c *hostChecks) { c.KubeletRoot = rootUsed }, rootUsed + " holds " + filepath.Join(rootUsed, "pods", "uid", "etc-hosts")},
		{"plugin installed", func(c *hostChecks) { c.PluginFiles = []string{filepath.Join(dir, "opt", "bin", "*")} }, filepath.Join(dir, "opt", "bin", "netdevice-hook") + " exists"},
		{"whereabouts installed", func(c *hostChecks) {
			c.TestFiles = append(c.TestFiles, filepath.Join(dir, "cni", "bin", "whereabouts"))
		},
			filepath.Join(dir, "cni", "bin", "whereabouts") + " exists: whereabouts is installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clean
			tt.change(&c)
			err := preflight(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("preflight = %v, want a refusal saying %q", err, tt.want)
			}
		})
	}
}

// TestDefaultChecks: a cluster also checks the control plane's and the plugin's ports, its node link
// and address, the host's kubelet root and an installed plugin; a standalone stack does not.
func TestDefaultChecks(t *testing.T) {
	alone := defaultChecks(Options{})
	if !slices.Equal(alone.Ports, []int{10250, 10248}) || !slices.Equal(alone.Links, []string{"ndpe2e0"}) || alone.KubeletRoot != "" || alone.NodeIP != "" || alone.PluginFiles != nil || alone.TestFiles != nil {
		t.Errorf("standalone checks = %+v", alone)
	}
	c := defaultChecks(Options{Cluster: true})
	if !slices.Equal(c.Ports, []int{10250, 10248, 6443, 2379, 2380, 10257, 10259, 9402}) {
		t.Errorf("cluster ports = %v", c.Ports)
	}
	if !slices.Equal(c.Links, []string{"ndpe2e0", "ndpe2enode"}) || c.NodeIP != "10.237.60.1" || c.KubeletRoot != "/var/lib/kubelet" ||
		!slices.Contains(c.ProcessNames, "kube-apiserver") || !slices.Contains(c.PluginFiles, "/opt/netdevice-plugin/bin/*") ||
		!slices.Equal(c.TestFiles, []string{"/opt/cni/bin/whereabouts", "/etc/cni/net.d/whereabouts.d"}) {
		t.Errorf("cluster checks = %+v", c)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestListeningTCPPorts(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v (no IPv6 here?)", addr, err)
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		got, err := listeningTCPPorts()
		if err != nil {
			t.Fatal(err)
		}
		if !got[port] {
			t.Errorf("listeningTCPPorts misses %s port %d", addr, port)
		}
		l.Close()
		// a closed listener's port leaves LISTEN at once
		deadline := time.Now().Add(2 * time.Second)
		for got[port] && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			got, _ = listeningTCPPorts()
		}
		if got[port] {
			t.Errorf("port %d still listed after its listener closed", port)
		}
	}
}
