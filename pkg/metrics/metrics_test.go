package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

// newManager serves pools in a short temp folder (socket paths must fit 107 bytes) to a kubelet
// stand-in there.
func newManager(t *testing.T, obs server.Observer) (*server.Manager, *kubelettest.Kubelet) {
	t.Helper()
	dir, err := os.MkdirTemp("", "met")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	k, err := kubelettest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	mgr, err := server.NewManager(server.Options{DevicePluginDir: dir, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close() })
	return mgr, k
}

// gauge is the value of a pool's gauge in a /metrics body, "" when absent.
func gauge(body, name, resource string) string {
	prefix := fmt.Sprintf("netdevice_plugin_%s{resource=%q} ", name, resource)
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return ""
}

func scrape(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestMetricsFollowTheDaemon(t *testing.T) {
	m := New(time.Minute, time.Minute)
	mgr, _ := newManager(t, nil)
	servers := m.Servers(mgr)
	a := config.Resource{Prefix: "example.com", Name: "sriov_a"}
	b := config.Resource{Prefix: "networking.k8s.io", Name: "netdevice"}

	if err := servers.Update(a, []server.Device{{ID: "0000:3b:01.0", PCIAddress: "0000:3b:01.0"}, {ID: "0000:3b:01.1", PCIAddress: "0000:3b:01.1", Problem: "carrier down"}, {ID: "0000:3b:01.2", PCIAddress: "0000:3b:01.2"}}); err != nil {
		t.Fatal(err)
	}
	if err := servers.Update(b, []server.Device{{ID: "veth0"}}); err != nil {
		t.Fatal(err)
	}
	m.Registration("example.com/sriov_a", nil)
	m.Registration("example.com/sriov_a", errors.New("kubelet gone"))
	m.Registration("example.com/sriov_a", nil) // after a kubelet restart
	m.Registration("networking.k8s.io/netdevice", nil)
	m.Allocation("example.com/sriov_a", []string{"0000:3b:01.0", "0000:3b:01.2"}, nil)
	m.Allocation("example.com/sriov_a", []string{"0000:3b:01.1"}, errors.New("unhealthy"))
	m.ConfigLoaded("/etc/c.yaml", []string{"a: unknown field, ignored", "b: unknown field, ignored"}, nil)
	m.ConfigLoaded("/etc/c.yaml", nil, errors.New("bad"))
	m.ConfigLoaded("/etc/c.yaml", []string{"c: repeated key, ignored"}, nil)
	m.Scanned(7, 12*time.Millisecond, nil)
	m.EventsMissed(2)
	m.EventsMissed(1)
	if err := servers.Remove(b); err != nil {
		t.Fatal(err)
	}

	code, body := scrape(t, m.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	want := []string{
		`netdevice_plugin_pool_capacity{resource="example.com/sriov_a"} 3`,
		`netdevice_plugin_pool_allocatable{resource="example.com/sriov_a"} 2`,
		`netdevice_plugin_pool_unhealthy{resource="example.com/sriov_a"} 1`,
		`netdevice_plugin_registered{resource="example.com/sriov_a"} 1`,
		`netdevice_plugin_registrations_total{resource="example.com/sriov_a",result="ok"} 2`,
		`netdevice_plugin_registrations_total{resource="example.com/sriov_a",result="error"} 1`,
		`netdevice_plugin_kubelet_reregistrations_total{resource="example.com/sriov_a"} 1`,
		`netdevice_plugin_allocations_total{resource="example.com/sriov_a",result="ok"} 1`,
		`netdevice_plugin_allocations_total{resource="example.com/sriov_a",result="error"} 1`,
		`netdevice_plugin_allocated_devices_total{resource="example.com/sriov_a"} 2`,
		`netdevice_plugin_config_warnings 1`, // of the config applied last
		`netdevice_plugin_config_loads_total{result="applied"} 2`,
		`netdevice_plugin_config_loads_total{result="rejected"} 1`,
		`netdevice_plugin_discovered_devices 7`,
		`netdevice_plugin_scan_duration_seconds_count 1`,
		`netdevice_plugin_events_missed_devices_total 3`,
	}
	for _, line := range want {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	// A removed pool's gauges go with it; its counters stay (they are history).
	for _, gone := range []string{`pool_capacity{resource="networking.k8s.io/netdevice"}`, `registered{resource="networking.k8s.io/netdevice"}`} {
		if strings.Contains(body, gone) {
			t.Errorf("/metrics still has %s after the pool was removed", gone)
		}
	}
	if !strings.Contains(body, `netdevice_plugin_registrations_total{resource="networking.k8s.io/netdevice",result="ok"} 1`) {
		t.Error("registration history of the removed pool lost")
	}
	if got := mgr.Resources(); len(got) != 1 || got[0] != a.FullName() {
		t.Errorf("wrapper did not pass calls through: served pools %v, want only %s", got, a.FullName())
	}
}

// The pool gauges count what the server tells the kubelet, not what the scan found: a software
// link that left with its pod is gone from the host but healthy (in use); one that left without
// an allocation is unhealthy. A failed update leaves the gauges alone.
func TestPoolGaugesMatchListAndWatch(t *testing.T) {
	m := New(time.Minute, time.Minute)
	mgr, k := newManager(t, m)
	servers := m.Servers(mgr)
	res := config.Resource{Prefix: "networking.k8s.io", Name: "netdevice"}
	name := res.FullName()
	present := []server.Device{{ID: "veth0", NUMANode: -1}, {ID: "veth1", NUMANode: -1}}
	// veth0 is held by a pod (the daemon's ledger says so): inside it, not broken.
	gone := []server.Device{{ID: "veth0", NUMANode: -1, Gone: true, InUse: true}, {ID: "veth1", NUMANode: -1, Gone: true}}

	steps := []struct {
		name     string
		before   func(p *kubelettest.Plugin)
		devs     []server.Device
		wantErr  bool
		kubelet  string // list the kubelet has after the step
		capacity string
		healthy  string
		sick     string
	}{
		{name: "both on the host", devs: present, kubelet: "[veth0:Healthy veth1:Healthy]", capacity: "2", healthy: "2", sick: "0"},
		{
			name: "veth0 allocated, then both gone",
			before: func(p *kubelettest.Plugin) {
				req := &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"veth0"}}}}
				if _, err := p.Client.Allocate(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			},
			devs: gone, kubelet: "[veth0:Healthy veth1:Unhealthy]", capacity: "2", healthy: "1", sick: "1",
		},
		{
			name:    "update fails: gauges stay",
			before:  func(*kubelettest.Plugin) { _ = mgr.Close() },
			devs:    present,
			wantErr: true, kubelet: "[veth0:Healthy veth1:Unhealthy]", capacity: "2", healthy: "1", sick: "1",
		},
	}
	var p *kubelettest.Plugin
	for _, st := range steps {
		if st.before != nil {
			st.before(p)
		}
		if err := servers.Update(res, st.devs); (err != nil) != st.wantErr {
			t.Fatalf("%s: Update error %v, want error %v", st.name, err, st.wantErr)
		}
		if p == nil {
			var err error
			if p, err = k.WaitPlugin(ctxTimeout(t), name, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		if !st.wantErr {
			if _, err := p.WaitDevices(ctxTimeout(t), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == st.kubelet }); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		devs, _ := p.Devices()
		healthy := 0
		for _, d := range devs {
			if d.Health == pluginapi.Healthy {
				healthy++
			}
		}
		_, body := scrape(t, m.Handler(), "/metrics")
		got := [3]string{gauge(body, "pool_capacity", name), gauge(body, "pool_allocatable", name), gauge(body, "pool_unhealthy", name)}
		if want := [3]string{st.capacity, st.healthy, st.sick}; got != want {
			t.Errorf("%s: capacity, allocatable, unhealthy = %v, want %v", st.name, got, want)
		}
		if told := [3]string{strconv.Itoa(len(devs)), strconv.Itoa(healthy), strconv.Itoa(len(devs) - healthy)}; got != told {
			t.Errorf("%s: gauges %v differ from what the kubelet was told %v (%s)", st.name, got, told, kubelettest.Describe(devs))
		}
	}
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHealthz(t *testing.T) {
	m := New(90*time.Second, 30*time.Second)
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }

	tests := []struct {
		name     string
		step     func()
		wantCode int
		wantBody string
	}{
		{"before any scan", func() {}, http.StatusServiceUnavailable, "no successful scan yet"},
		{"a failed scan does not count", func() { m.Scanned(0, time.Millisecond, errors.New("sysfs gone")) }, http.StatusServiceUnavailable, "no successful scan yet"},
		{"after a scan", func() { m.Scanned(3, time.Millisecond, nil) }, http.StatusOK, "ok"},
		{"scan 60 s old", func() { now = now.Add(60 * time.Second) }, http.StatusOK, "ok"},
		{"scan 100 s old: loop stuck", func() { now = now.Add(40 * time.Second) }, http.StatusServiceUnavailable, "last successful scan 1m40s ago"},
		{"recovered", func() { m.Scanned(3, time.Millisecond, nil) }, http.StatusOK, "ok"},
		{"the loop speaks", func() { m.LoopAlive() }, http.StatusOK, "ok"},
		{"silent 20 s, scan 20 s old", func() { now = now.Add(20 * time.Second) }, http.StatusOK, "ok"},
		{"silent 40 s: loop stuck though the scan is recent", func() { now = now.Add(20 * time.Second) }, http.StatusServiceUnavailable, "loop last spoke 40s ago (limit 30s)"},
		{"the loop speaks again", func() { m.LoopAlive() }, http.StatusOK, "ok"},
	}
	for _, tt := range tests {
		tt.step()
		code, body := scrape(t, m.Handler(), "/healthz")
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s: %d %q, want %d containing %q", tt.name, code, body, tt.wantCode, tt.wantBody)
		}
	}
}
