package stack

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

	clean := hostChecks{
		RuntimeSockets:  []string{stale, filepath.Join(dir, "missing.sock")},
		Ports:           []int{free},
		ProcessNames:    []string{randomName(t, "ndtnone")},
		DevicePluginDir: emptyDP,
		CgroupGlobs:     []string{filepath.Join(dir, "cg", "*", "none*")},
		Bridge:          randomName(t, "ndtbr"),
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
		{"bridge exists", func(c *hostChecks) { c.Bridge = "lo" }, "link lo exists"},
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
