package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

func TestDaemonFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int // -1: parsed
	}{
		{"help", []string{"-h"}, 0},
		{"no config", []string{"--sysfs-root", "/sys"}, 2},
		{"relative hook path", []string{"--config", "c.json", "--hook-path", "bin/netdevice-hook"}, 2},
		{"zero rescan interval", []string{"--config", "c.json", "--rescan-interval", "0s"}, 2},
		{"unknown flag", []string{"--config", "c.json", "--colour", "blue"}, 2},
		{"stray argument", []string{"--config", "c.json", "serve"}, 2},
		{"all flags", []string{"--config", "c.json", "--sysfs-root", "/host/sys", "--resource-prefix", "example.com",
			"--device-plugin-dir", "/dp", "--plugins-registry-dir", "", "--cdi-dir", "/cdi", "--hook-path", "/bin/h",
			"--rescan-interval", "5s", "--pci-ids", "/ids", "--metrics-addr", ":9402", "--state-file", "/st",
			"--devinfo-dir", "/di", "--pod-resources-socket", "/pr.sock", "--kubelet-sync-interval", "3s", "--dev-root", "/hostdev",
			"--cni-bin-dir", "/cni", "--ipam-lease-dir", "/leases",
			"--strict-config", "-v=4"}, -1},
		{"zero kubelet sync interval", []string{"--config", "c.json", "--kubelet-sync-interval", "0s"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, code := parseDaemonFlags(tt.args)
			if code != tt.code {
				t.Fatalf("parseDaemonFlags(%q) exit code %d, want %d", tt.args, code, tt.code)
			}
			if tt.code == -1 {
				want := daemonFlags{config: "c.json", sysfsRoot: "/host/sys", prefix: "example.com", devicePluginDir: "/dp",
					cdiDir: "/cdi", hookPath: "/bin/h", pciIDs: "/ids", metricsAddr: ":9402", stateFile: "/st", rescan: 5 * time.Second,
					devinfoDir: "/di", podResources: "/pr.sock", kubeletSync: 3 * time.Second, devRoot: "/hostdev", strictConfig: true,
					cniBinDir: "/cni", leaseDir: "/leases"}
				if *f != want {
					t.Errorf("flags = %+v, want %+v", *f, want)
				}
			}
		})
	}
}

const envCmdNetns = "NETDEVICE_CMD_TEST_NETNS"

// TestRunDaemon runs the daemon entry point as the DaemonSet does, against the kubelet stand-in
// and a sysfs fixture, then stops it with SIGTERM. It runs in a private network namespace (it
// re-executes itself there) so the daemon's link scan and reconcile never touch the host's links.
func TestRunDaemon(t *testing.T) {
	if os.Getenv(envCmdNetns) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a private network namespace")
		}
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		ns := "ndc-" + hex.EncodeToString(b)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		defer func() { _ = exec.Command("ip", "netns", "del", ns).Run() }()
		// The metrics endpoint listens on the namespace's own loopback.
		if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("lo up: %v: %s", err, out)
		}
		cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestRunDaemon$", "-test.v")
		cmd.Env = append(os.Environ(), envCmdNetns+"="+ns)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestRunDaemon") {
			t.Fatalf("in namespace %s: %v\n%s", ns, err, out)
		}
		return
	}

	dir, err := os.MkdirTemp("", "ndcmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	tree, err := pcitest.NewTree(filepath.Join(dir, "fx"))
	if err != nil {
		t.Fatal(err)
	}
	pf := "0000:3b:00.0"
	if err := tree.AddPF(pcitest.Function{Addr: pf, Vendor: "8086", Device: "159b", Class: "0x020000", Driver: "ice", NUMANode: "1"},
		pcitest.SRIOV{TotalVFs: 4, Offset: 8, Stride: 1, VFDevice: "1889"}); err != nil {
		t.Fatal(err)
	}
	if err := tree.AddNetdev(pf, pcitest.Netdev{Name: "ens1f0", MAC: "b4:96:91:00:00:00", Carrier: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := tree.AddVF(pf, 0, pcitest.Function{Driver: "iavf"}); err != nil {
		t.Fatal(err)
	}
	dp, cdiDir, cfg := filepath.Join(dir, "dp"), filepath.Join(dir, "cdi"), filepath.Join(dir, "config.json")
	for _, d := range []string{dp, cdiDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(cfg, []byte(`{"resourceList": [{"resourceName": "sriov_vf", "resourcePrefix": "intel.com", "selectors": {"devices": ["1889"]}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := kubelettest.Start(dp)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	exit := make(chan int, 1)
	go func() {
		exit <- runDaemon([]string{"--config", cfg, "--sysfs-root", tree.Root, "--device-plugin-dir", dp,
			"--plugins-registry-dir", filepath.Join(dir, "no-registry"), "--cdi-dir", cdiDir, "--hook-path", "/opt/nd/netdevice-hook",
			"--metrics-addr", "127.0.0.1:9402", "--state-file", filepath.Join(dir, "state.gob"),
			"--devinfo-dir", filepath.Join(dir, "devinfo"), "--ipam-lease-dir", filepath.Join(dir, "leases"),
			"--pod-resources-socket", filepath.Join(dir, "no-kubelet.sock"), "--dev-root", filepath.Join(dir, "dev")})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := k.WaitPlugin(ctx, "intel.com/sriov_vf", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitDevices(ctx, func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == "[0000:3b:01.0:Healthy[numa1]]" }); err != nil {
		t.Fatal(err)
	}
	resp, err := p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"0000:3b:01.0"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.ContainerResponses[0].CdiDevices[0].Name; got != "intel.com/sriov_vf=0000:3b:01.0" {
		t.Errorf("CDI device %q", got)
	}
	socket := p.Endpoint

	// The same facts on /metrics, scraped over HTTP as Prometheus would.
	wantMetrics := []string{
		`netdevice_plugin_pool_capacity{resource="intel.com/sriov_vf"} 1`,
		`netdevice_plugin_pool_allocatable{resource="intel.com/sriov_vf"} 1`,
		`netdevice_plugin_registered{resource="intel.com/sriov_vf"} 1`,
		`netdevice_plugin_allocated_devices_total{resource="intel.com/sriov_vf"} 1`,
		`netdevice_plugin_config_loads_total{result="applied"} 1`,
	}
	// The registration gauge follows the kubelet's answer, which may come just after the
	// stand-in has seen the plugin: poll until every line is there.
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		body = httpGet(t, "http://127.0.0.1:9402/metrics", http.StatusOK)
		missing := 0
		for _, line := range wantMetrics {
			if !strings.Contains(body, line+"\n") {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, line := range wantMetrics {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if info, err := os.ReadFile(filepath.Join(dir, "devinfo", "intel.com-sriov_vf-0000:3b:01.0-device.json")); err != nil || !strings.Contains(string(info), `"pci-address":"0000:3b:01.0"`) {
		t.Errorf("device-information file: %s, %v", info, err)
	}
	httpGet(t, "http://127.0.0.1:9402/healthz", http.StatusOK)

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("runDaemon exit code %d after SIGTERM, want 0", code)
		}
	case <-ctx.Done():
		t.Fatal("runDaemon did not return after SIGTERM")
	}
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s after shutdown: %v, want removed", socket, err)
	}
	specs, _ := filepath.Glob(filepath.Join(cdiDir, "*.json"))
	if !slices.Equal(specs, []string{filepath.Join(cdiDir, "intel.com-sriov_vf.json")}) {
		t.Errorf("CDI specs after shutdown: %v, want the pool's spec left in place", specs)
	}
}

func httpGet(t *testing.T, url string, wantStatus int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, wantStatus)
	}
	return string(body)
}
