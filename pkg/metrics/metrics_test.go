package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
)

// recordingServers stands in for the pool servers behind the wrapper and remembers the calls.
type recordingServers struct {
	updates, removes []string
	err              error
}

func (r *recordingServers) Update(res config.Resource, _ []server.Device) error {
	r.updates = append(r.updates, res.FullName())
	return r.err
}

func (r *recordingServers) Remove(res config.Resource) error {
	r.removes = append(r.removes, res.FullName())
	return r.err
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
	m := New(time.Minute)
	inner := &recordingServers{}
	servers := m.Servers(inner)
	a := config.Resource{Prefix: "example.com", Name: "sriov_a"}
	b := config.Resource{Prefix: "networking.k8s.io", Name: "netdevice"}

	if err := servers.Update(a, []server.Device{{ID: "0000:3b:01.0"}, {ID: "0000:3b:01.1", Problem: "carrier down"}, {ID: "0000:3b:01.2"}}); err != nil {
		t.Fatal(err)
	}
	if err := servers.Update(b, []server.Device{{ID: "dummy0"}}); err != nil {
		t.Fatal(err)
	}
	m.Registration("example.com/sriov_a", nil)
	m.Registration("example.com/sriov_a", errors.New("kubelet gone"))
	m.Registration("example.com/sriov_a", nil) // after a kubelet restart
	m.Registration("networking.k8s.io/netdevice", nil)
	m.Allocation("example.com/sriov_a", []string{"0000:3b:01.0", "0000:3b:01.2"}, nil)
	m.Allocation("example.com/sriov_a", []string{"0000:3b:01.1"}, errors.New("unhealthy"))
	m.ConfigLoaded("/etc/c.yaml", nil)
	m.ConfigLoaded("/etc/c.yaml", errors.New("bad"))
	m.ConfigLoaded("/etc/c.yaml", nil)
	m.Scanned(7, 12*time.Millisecond, nil)
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
		`netdevice_plugin_config_loads_total{result="applied"} 2`,
		`netdevice_plugin_config_loads_total{result="rejected"} 1`,
		`netdevice_plugin_discovered_devices 7`,
		`netdevice_plugin_scan_duration_seconds_count 1`,
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
	if strings.Join(inner.updates, ",") != "example.com/sriov_a,networking.k8s.io/netdevice" || strings.Join(inner.removes, ",") != "networking.k8s.io/netdevice" {
		t.Errorf("wrapper did not pass calls through: updates %v removes %v", inner.updates, inner.removes)
	}
}

func TestServersWrapperReturnsInnerError(t *testing.T) {
	m := New(time.Minute)
	inner := &recordingServers{err: errors.New("socket: permission denied")}
	res := config.Resource{Prefix: "example.com", Name: "x"}
	if err := m.Servers(inner).Update(res, nil); err != inner.err {
		t.Errorf("Update error %v, want the inner one", err)
	}
	if err := m.Servers(inner).Remove(res); err != inner.err {
		t.Errorf("Remove error %v, want the inner one", err)
	}
}

func TestHealthz(t *testing.T) {
	m := New(90 * time.Second)
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
	}
	for _, tt := range tests {
		tt.step()
		code, body := scrape(t, m.Handler(), "/healthz")
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s: %d %q, want %d containing %q", tt.name, code, body, tt.wantCode, tt.wantBody)
		}
	}
}
