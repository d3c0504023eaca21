// Package metrics exposes what the daemon does as Prometheus metrics on /metrics, and its liveness on
// /healthz. It hears the daemon through the observer seams of pkg/server and pkg/daemon and by
// wrapping the pool servers, so neither package knows about Prometheus.
package metrics

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/daemon"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
)

const namespace = "netdevice_plugin"

// Metrics holds the daemon's metrics. It implements server.Observer, daemon.Observer and
// daemon.MissObserver.
type Metrics struct {
	registry *prometheus.Registry

	capacity        *prometheus.GaugeVec
	allocatable     *prometheus.GaugeVec
	unhealthy       *prometheus.GaugeVec
	allocations     *prometheus.CounterVec
	allocatedDevs   *prometheus.CounterVec
	registered      *prometheus.GaugeVec
	registrations   *prometheus.CounterVec
	reregistrations *prometheus.CounterVec
	configReloads   *prometheus.CounterVec
	configWarnings  prometheus.Gauge
	scanDuration    prometheus.Histogram
	devices         prometheus.Gauge
	missed          prometheus.Counter

	mu             sync.Mutex
	everRegistered map[string]bool
	lastScan       time.Time // last successful scan
	maxScanAge     time.Duration
	lastAlive      time.Time // last word from the daemon's loop (LoopAlive); zero until the first
	maxLoopAge     time.Duration
	now            func() time.Time
}

// New creates the metrics. maxScanAge is how old the last successful scan may be before /healthz
// fails: a few rescan intervals. maxLoopAge is how long the daemon's loop may stay silent once it
// has spoken (LoopAlive): a few of its kubelet syncs. Rescans are rare (events keep the pools), so
// a stuck loop is told by its silence long before its scans grow old.
func New(maxScanAge, maxLoopAge time.Duration) *Metrics {
	m := &Metrics{
		maxLoopAge: maxLoopAge,
		registry:   prometheus.NewRegistry(),
		capacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "pool_capacity",
			Help: "Devices a pool advertises to the kubelet, healthy or not."}, []string{"resource"}),
		allocatable: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "pool_allocatable",
			Help: "Healthy devices of a pool, what the kubelet may allocate (in use or free)."}, []string{"resource"}),
		unhealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "pool_unhealthy",
			Help: "Unhealthy devices of a pool (carrier down, driver unbound, gone)."}, []string{"resource"}),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "allocations_total",
			Help: "Allocate calls of the kubelet, by result (ok, error)."}, []string{"resource", "result"}),
		allocatedDevs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "allocated_devices_total",
			Help: "Devices handed to containers by successful Allocate calls."}, []string{"resource"}),
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "registered",
			Help: "1 when the pool's server is registered with the kubelet, else 0."}, []string{"resource"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "registrations_total",
			Help: "Registration attempts with the kubelet, by result (ok, error)."}, []string{"resource", "result"}),
		reregistrations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "kubelet_reregistrations_total",
			Help: "Successful registrations after the first one of a pool: kubelet restarts survived."}, []string{"resource"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "config_loads_total",
			Help: "Config loads, by result: applied, or rejected (the old pools stay)."}, []string{"result"}),
		configWarnings: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "config_warnings",
			Help: "Problems of the applied config that were ignored, as sriov-dp ignores them (unknown or repeated keys); see the daemon's log."}),
		scanDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "scan_duration_seconds",
			Help: "Time to discover the node's devices.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "discovered_devices",
			Help: "Devices found by the last successful scan, in a pool or not."}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "events_missed_devices_total",
			Help: "Devices a periodic rescan found different from what the kernel's events had made of them (events lost or never sent). Stays 0 while events work."}),
		everRegistered: map[string]bool{},
		maxScanAge:     maxScanAge,
		now:            time.Now,
	}
	m.registry.MustRegister(m.capacity, m.allocatable, m.unhealthy, m.allocations, m.allocatedDevs,
		m.registered, m.registrations, m.reregistrations, m.configReloads, m.configWarnings, m.scanDuration, m.devices, m.missed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"applied", "rejected"} {
		m.configReloads.WithLabelValues(r) // present at zero, so a rate() has a series from the start
	}
	return m
}

// Registry is where the metrics are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Registration implements server.Observer.
func (m *Metrics) Registration(resource string, err error) {
	if err != nil {
		m.registrations.WithLabelValues(resource, "error").Inc()
		m.registered.WithLabelValues(resource).Set(0)
		return
	}
	m.registrations.WithLabelValues(resource, "ok").Inc()
	m.registered.WithLabelValues(resource).Set(1)
	m.mu.Lock()
	again := m.everRegistered[resource]
	m.everRegistered[resource] = true
	m.mu.Unlock()
	if again {
		m.reregistrations.WithLabelValues(resource).Inc()
	}
}

// Allocation implements server.Observer.
func (m *Metrics) Allocation(resource string, ids []string, err error) {
	if err != nil {
		m.allocations.WithLabelValues(resource, "error").Inc()
		return
	}
	m.allocations.WithLabelValues(resource, "ok").Inc()
	m.allocatedDevs.WithLabelValues(resource).Add(float64(len(ids)))
}

// ConfigLoaded implements daemon.Observer.
func (m *Metrics) ConfigLoaded(_ string, warnings []string, err error) {
	if err != nil {
		m.configReloads.WithLabelValues("rejected").Inc()
		return
	}
	m.configReloads.WithLabelValues("applied").Inc()
	m.configWarnings.Set(float64(len(warnings)))
}

// Scanned implements daemon.Observer.
func (m *Metrics) Scanned(devices int, took time.Duration, err error) {
	if err != nil {
		return
	}
	m.scanDuration.Observe(took.Seconds())
	m.devices.Set(float64(devices))
	m.mu.Lock()
	m.lastScan = m.now()
	m.mu.Unlock()
}

// LoopAlive implements daemon.LoopObserver.
func (m *Metrics) LoopAlive() {
	m.mu.Lock()
	m.lastAlive = m.now()
	m.mu.Unlock()
}

var _ daemon.LoopObserver = (*Metrics)(nil)

// EventsMissed implements daemon.MissObserver.
func (m *Metrics) EventsMissed(devices int) { m.missed.Add(float64(devices)) }

var _ daemon.MissObserver = (*Metrics)(nil)

// Pools is what the wrapper needs of the pool servers (server.Manager): the daemon's calls, and
// the health counts of what each server sends the kubelet.
type Pools interface {
	Update(res config.Resource, devs []server.Device) error
	Remove(res config.Resource) error
	Health(res config.Resource) (total, healthy int, ok bool)
}

// Servers wraps the pool servers so that every pool update sets the pool's gauges. The counts come
// from the server after the update, so they are what the kubelet is told: the server, not the
// scan, decides that a gone software link inside its pod is healthy. A failed update leaves the
// gauges as they were.
func (m *Metrics) Servers(inner Pools) daemon.Servers {
	return &servers{inner: inner, m: m}
}

type servers struct {
	inner Pools
	m     *Metrics
}

func (s *servers) Update(res config.Resource, devs []server.Device) error {
	if err := s.inner.Update(res, devs); err != nil {
		return err
	}
	total, healthy, ok := s.inner.Health(res)
	if !ok {
		return nil
	}
	name := res.FullName()
	s.m.capacity.WithLabelValues(name).Set(float64(total))
	s.m.allocatable.WithLabelValues(name).Set(float64(healthy))
	s.m.unhealthy.WithLabelValues(name).Set(float64(total - healthy))
	return nil
}

func (s *servers) Remove(res config.Resource) error {
	err := s.inner.Remove(res)
	name := res.FullName()
	for _, g := range []*prometheus.GaugeVec{s.m.capacity, s.m.allocatable, s.m.unhealthy, s.m.registered} {
		g.DeleteLabelValues(name)
	}
	return err
}

// Handler serves /metrics and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	mux.HandleFunc("/healthz", m.healthz)
	return mux
}

// healthz is healthy once a scan succeeded, while the last success is recent and while the loop
// keeps speaking: a daemon whose loop is stuck or whose scans keep failing gets restarted by its
// liveness probe.
func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	last, alive := m.lastScan, m.lastAlive
	age, silent := m.now().Sub(last), m.now().Sub(alive)
	m.mu.Unlock()
	switch {
	case last.IsZero():
		http.Error(w, "no successful scan yet", http.StatusServiceUnavailable)
	case !alive.IsZero() && silent > m.maxLoopAge:
		http.Error(w, fmt.Sprintf("the daemon's loop last spoke %s ago (limit %s): stuck", silent.Round(time.Second), m.maxLoopAge),
			http.StatusServiceUnavailable)
	case age > m.maxScanAge:
		http.Error(w, fmt.Sprintf("last successful scan %s ago (limit %s)", age.Round(time.Second), m.maxScanAge),
			http.StatusServiceUnavailable)
	default:
		fmt.Fprintf(w, "ok: last scan %s ago\n", age.Round(time.Millisecond))
	}
}
