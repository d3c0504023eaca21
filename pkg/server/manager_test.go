package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

var (
	resA = config.Resource{Name: "netdevice", Prefix: "networking.k8s.io", DeviceType: config.DeviceTypeNetDevice}
	resB = config.Resource{Name: "sriov_vf", Prefix: "intel.com", DeviceType: config.DeviceTypeNetDevice}
)

type env struct {
	kubelet  *kubelettest.Kubelet
	mgr      *Manager
	dpDir    string
	regDir   string
	observed *recorder
	ledger   *ledger
}

// newEnv starts the kubelet stand-in and a manager in the given mode, in temp folders.
func newEnv(t *testing.T, mode Mode) *env {
	t.Helper()
	base := shortDir(t)
	e := &env{dpDir: filepath.Join(base, "dp"), observed: &recorder{}, ledger: &ledger{}}
	if err := os.Mkdir(e.dpDir, 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := kubelettest.Start(e.dpDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	e.kubelet = k
	opts := Options{DevicePluginDir: e.dpDir, PluginsRegistryDir: filepath.Join(base, "reg"), Observer: e.observed, Recorder: e.ledger}
	if mode == ModePluginWatcher {
		e.regDir = opts.PluginsRegistryDir
		if err := os.Mkdir(e.regDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := k.WatchRegistry(e.regDir); err != nil {
			t.Fatal(err)
		}
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	if m.Mode() != mode {
		t.Fatalf("mode = %q, want %q", m.Mode(), mode)
	}
	e.mgr = m
	return e
}

// recorder is an Observer that counts what it hears.
type recorder struct {
	registered, regFailed, allocated, allocFailed atomic.Int32
}

func (r *recorder) Registration(_ string, err error) {
	if err != nil {
		r.regFailed.Add(1)
	} else {
		r.registered.Add(1)
	}
}

func (r *recorder) Allocation(_ string, _ []string, err error) {
	if err != nil {
		r.allocFailed.Add(1)
	} else {
		r.allocated.Add(1)
	}
}

// ledger records what the servers tell a Recorder; fail makes Allocated fail.
type ledger struct {
	mu        sync.Mutex
	allocated [][]string // device IDs per Allocate
	offered   [][]string
	fail      error
}

func (l *ledger) Allocated(_ config.Resource, devs []Device) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	ids := make([]string, len(devs))
	for i := range devs {
		ids[i] = devs[i].ID
	}
	l.allocated = append(l.allocated, ids)
	return nil
}

func (l *ledger) Offered(_ string, free []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.offered = append(l.offered, slices.Clone(free))
}

func (l *ledger) calls() (allocated, offered [][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.allocated), slices.Clone(l.offered)
}

// shortDir is a temp folder with a short path: socket paths must fit 107 bytes, and t.TempDir
// embeds the test name.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "srv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met within 5 s")
		}
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func links(names ...string) []Device {
	out := make([]Device, len(names))
	for i, n := range names {
		out[i] = Device{ID: n, NUMANode: -1}
	}
	return out
}

func TestRegistersEveryPool(t *testing.T) {
	for _, mode := range []Mode{ModeKubeletSocket, ModePluginWatcher} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, mode)
			start := time.Now()
			if err := e.mgr.Update(resA, links("dummy0", "dummy1")); err != nil {
				t.Fatal(err)
			}
			if err := e.mgr.Update(resB, []Device{{ID: "0000:3b:02.0", PCIAddress: "0000:3b:02.0", NUMANode: 1}}); err != nil {
				t.Fatal(err)
			}
			pools := map[string]config.Resource{resA.FullName(): resA, resB.FullName(): resB}
			want := map[string]string{resA.FullName(): "[dummy0:Healthy dummy1:Healthy]", resB.FullName(): "[0000:3b:02.0:Healthy[numa1]]"}
			for name, list := range want {
				p, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), name, start)
				if err != nil {
					t.Fatal(err)
				}
				if p.Mode != string(mode) {
					t.Errorf("%s registered through %q, want %q", name, p.Mode, mode)
				}
				if !p.Options.GetPreferredAllocationAvailable || p.Options.PreStartRequired {
					t.Errorf("%s options = %+v, want GetPreferredAllocation only", name, p.Options)
				}
				if want := e.mgr.SocketPath(pools[name]); p.Endpoint != want {
					t.Errorf("%s endpoint = %s, want %s", name, p.Endpoint, want)
				}
				if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == list }); err != nil {
					t.Fatalf("%s: %v (want %s)", name, err, list)
				}
			}
			if got := e.kubelet.Resources(); len(got) != 2 {
				t.Errorf("kubelet has %v, want both pools", got)
			}
		})
	}
}

func TestReRegistersAfterKubeletRestart(t *testing.T) {
	e := newEnv(t, ModeKubeletSocket)
	for _, r := range []config.Resource{resA, resB} {
		if err := e.mgr.Update(r, links("veth0")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), r.FullName(), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= 3; round++ {
		restart := time.Now()
		if err := e.kubelet.Restart(); err != nil {
			t.Fatal(err)
		}
		for _, r := range []config.Resource{resA, resB} {
			p, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), r.FullName(), restart)
			if err != nil {
				t.Fatal(err)
			}
			took := p.Registered.Sub(restart)
			t.Logf("round %d: %s re-registered %v after the restart", round, r.FullName(), took)
			if took > 2*time.Second {
				t.Errorf("%s re-registered after %v, want within 2 s", r.FullName(), took)
			}
			if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return len(d) == 1 }); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(e.mgr.SocketPath(r)); err != nil {
				t.Errorf("socket of %s after restart: %v", r.FullName(), err)
			}
		}
	}
}

// Our socket deleted behind our back (in plugin-watcher mode the kubelet never does it; an
// operator or a cleanup might): served and registered again within 2 s.
func TestReServesDeletedSocket(t *testing.T) {
	for _, mode := range []Mode{ModeKubeletSocket, ModePluginWatcher} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, mode)
			if err := e.mgr.Update(resA, links("veth0")); err != nil {
				t.Fatal(err)
			}
			if _, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), time.Time{}); err != nil {
				t.Fatal(err)
			}
			deleted := time.Now()
			if err := os.Remove(e.mgr.SocketPath(resA)); err != nil {
				t.Fatal(err)
			}
			p, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), deleted)
			if err != nil {
				t.Fatal(err)
			}
			took := p.Registered.Sub(deleted)
			t.Logf("%s: registered again %v after the socket was deleted", mode, took)
			if took > 2*time.Second {
				t.Errorf("registered again after %v, want within 2 s", took)
			}
			if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == "[veth0:Healthy]" }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Without folder events (fsnotify lost its watch) the slow poll still notices a kubelet restart.
func TestPollFallbackNoticesKubeletRestart(t *testing.T) {
	dir := shortDir(t)
	k, err := kubelettest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	m, err := NewManager(Options{DevicePluginDir: dir, PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if err := m.watcher.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := m.Update(resA, links("veth0")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	if err := k.Restart(); err != nil {
		t.Fatal(err)
	}
	p, err := k.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), restart)
	if err != nil {
		t.Fatal(err)
	}
	if took := p.Registered.Sub(restart); took > time.Second {
		t.Errorf("poll re-registered after %v, want within about one poll interval", took)
	}
}

// A kubelet.sock replaced while our socket stays (a kubelet back without clearing its folder) is a
// new kubelet: register again. ext4 often gives the new kubelet.sock the old inode number.
func TestReRegistersWhenKubeletSocketReplaced(t *testing.T) {
	e := newEnv(t, ModeKubeletSocket)
	if err := e.mgr.Update(resA, links("veth0")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	ours, err := identify(e.mgr.SocketPath(resA))
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		old, err := identify(e.kubelet.SocketPath())
		if err != nil {
			t.Fatal(err)
		}
		replaced := time.Now()
		if err := e.kubelet.ReplaceSocket(); err != nil {
			t.Fatal(err)
		}
		cur, err := identify(e.kubelet.SocketPath())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: kubelet.sock inode %d -> %d (number reused: %v)", round, old.ino, cur.ino, old.ino == cur.ino)
		p, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), replaced)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == "[veth0:Healthy]" }); err != nil {
			t.Fatal(err)
		}
	}
	if now, err := identify(e.mgr.SocketPath(resA)); err != nil || now != ours {
		t.Errorf("our socket was served again (%v): only the kubelet changed", err)
	}
}

// When the folder watch loses events (its queue overflowed), every pool is checked at once rather
// than at the next poll: here the lost event is a new kubelet.sock.
func TestWatcherOverflowChecksEveryPool(t *testing.T) {
	dir := shortDir(t)
	k, err := kubelettest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	m, err := NewManager(Options{DevicePluginDir: dir, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if err := m.Update(resA, links("veth0")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Holding the lock stalls the manager's loop at the first rename event, so the queue fills
	// and the kernel drops the events of the new kubelet.sock.
	m.mu.Lock()
	if err := kubelettest.Overflow(dir); err != nil {
		m.mu.Unlock()
		t.Fatal(err)
	}
	replaced := time.Now()
	err = k.ReplaceSocket()
	m.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), replaced); err != nil {
		t.Fatal(err)
	}
}

func TestRegistrationRetriedWithBackoff(t *testing.T) {
	t.Run("kubelet not up yet", func(t *testing.T) {
		dir := shortDir(t)
		obs := &recorder{}
		// No folder events and an hourly poll: only the backoff's retries can find the kubelet.
		m, err := NewManager(Options{DevicePluginDir: dir, PollInterval: time.Hour, Observer: obs,
			Backoff: wait.Backoff{Duration: 20 * time.Millisecond, Factor: 2, Steps: 10, Cap: 200 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		if err := m.watcher.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := m.Update(resA, links("dummy0")); err != nil {
			t.Fatalf("Update without a kubelet must not fail: %v", err)
		}
		waitFor(t, func() bool { return obs.regFailed.Load() >= 2 })
		k, err := kubelettest.Start(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		if _, err := k.WaitPlugin(ctxTimeout(t, 3*time.Second), resA.FullName(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return obs.registered.Load() == 1 })
	})
	for _, mode := range []Mode{ModeKubeletSocket, ModePluginWatcher} {
		t.Run("refused twice/"+string(mode), func(t *testing.T) {
			e := newEnv(t, mode)
			var refusals atomic.Int32
			e.kubelet.Reject = func(string) error {
				if refusals.Add(1) <= 2 {
					return errors.New("resource name already taken")
				}
				return nil
			}
			if err := e.mgr.Update(resA, links("dummy0")); err != nil {
				t.Fatal(err)
			}
			if _, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), time.Time{}); err != nil {
				t.Fatal(err)
			}
			if n := e.kubelet.Attempts(resA.FullName()); n != 3 {
				t.Errorf("registration attempts = %d, want 3 (two refused, then accepted)", n)
			}
			waitFor(t, func() bool { return e.observed.registered.Load() >= 1 })
			if e.observed.regFailed.Load() < 2 || e.observed.registered.Load() < 1 {
				t.Errorf("observer heard %d failures, %d successes; want >= 2 and >= 1", e.observed.regFailed.Load(), e.observed.registered.Load())
			}
		})
	}
}

func TestRemoveStopsServerAndSocket(t *testing.T) {
	for _, mode := range []Mode{ModeKubeletSocket, ModePluginWatcher} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, mode)
			if err := e.mgr.Update(resA, links("dummy0")); err != nil {
				t.Fatal(err)
			}
			if err := e.mgr.Update(resB, links("dummy1")); err != nil {
				t.Fatal(err)
			}
			p, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return len(d) == 1 }); err != nil {
				t.Fatal(err)
			}
			if err := e.mgr.Remove(resA); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(e.mgr.SocketPath(resA)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket of removed pool: %v, want it gone", err)
			}
			if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func([]*pluginapi.Device) bool { return false }); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("ListAndWatch of removed pool: %v, want the stream ended", err)
			}
			if got := e.mgr.Resources(); len(got) != 1 || got[0] != resB.FullName() {
				t.Errorf("served pools = %v, want only %s", got, resB.FullName())
			}
			if err := e.mgr.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(e.mgr.SocketPath(resB)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket after Close: %v, want it gone", err)
			}
		})
	}
}

func TestCloseLeavesForeignSocket(t *testing.T) {
	e := newEnv(t, ModeKubeletSocket)
	if err := e.mgr.Update(resA, links("dummy0")); err != nil {
		t.Fatal(err)
	}
	path := e.mgr.SocketPath(resA)
	e.mgr.mu.Lock()
	s := e.mgr.servers[resA.FullName()]
	e.mgr.mu.Unlock()
	s.cancel() // keep the keeper from serving again
	<-s.done
	// Someone else (a second daemon) replaced our socket: our cleanup must not delete theirs.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeOwnSocket(path, s.sock); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("foreign file at our socket path was removed: %v", err)
	}
}

func TestUpdateSendsNewList(t *testing.T) {
	e := newEnv(t, ModeKubeletSocket)
	if err := e.mgr.Update(resA, links("veth0", "veth1")); err != nil {
		t.Fatal(err)
	}
	p, err := e.kubelet.WaitPlugin(ctxTimeout(t, 5*time.Second), resA.FullName(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		devs []Device
		want string
	}{
		{[]Device{{ID: "veth0", NUMANode: -1, Problem: "carrier down"}, {ID: "veth1", NUMANode: -1}}, "[veth0:Unhealthy veth1:Healthy]"},
		{[]Device{{ID: "veth0", NUMANode: -1}, {ID: "veth1", NUMANode: -1}, {ID: "veth2", NUMANode: 0}}, "[veth0:Healthy veth1:Healthy veth2:Healthy[numa0]]"},
		{[]Device{{ID: "veth1", NUMANode: -1}}, "[veth1:Healthy]"},
	}
	for _, st := range steps {
		if err := e.mgr.Update(resA, st.devs); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == st.want }); err != nil {
			t.Fatalf("want %s: %v", st.want, err)
		}
	}
	// An unchanged update sends nothing: it does not even wake the streams, and after a changed
	// one the kubelet has exactly one new list.
	_, before := p.Devices()
	e.mgr.mu.Lock()
	plugin := e.mgr.servers[resA.FullName()].plugin
	e.mgr.mu.Unlock()
	waiting := plugin.state.Load().changed
	if err := e.mgr.Update(resA, []Device{{ID: "veth1", NUMANode: -1}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waiting:
		t.Error("unchanged update woke the ListAndWatch streams")
	default:
	}
	if err := e.mgr.Update(resA, []Device{{ID: "veth1", NUMANode: -1, Problem: "carrier down"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == "[veth1:Unhealthy]" }); err != nil {
		t.Fatal(err)
	}
	if _, after := p.Devices(); after != before+1 {
		t.Errorf("an unchanged and a changed update sent %d new lists, want 1", after-before)
	}
	// excludeTopology drops the NUMA node without a device change.
	excl := resA
	excl.ExcludeTopology = true
	if err := e.mgr.Update(resA, []Device{{ID: "veth1", NUMANode: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == "[veth1:Healthy[numa1]]" }); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Update(excl, []Device{{ID: "veth1", NUMANode: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitDevices(ctxTimeout(t, 5*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == "[veth1:Healthy]" }); err != nil {
		t.Fatal(err)
	}
}

func TestSocketName(t *testing.T) {
	tests := []struct {
		res  config.Resource
		want string
	}{
		{resA, "netdevice-networking.k8s.io-netdevice.sock"},
		{config.Resource{Prefix: "intel.com", Name: "sriov_vf"}, "netdevice-intel.com-sriov_vf.sock"},
		{config.Resource{Prefix: "ex/ample", Name: "a b"}, "netdevice-ex_ample-a_b.sock"},
	}
	for _, tt := range tests {
		if got := SocketName(tt.res); got != tt.want {
			t.Errorf("SocketName(%s) = %q, want %q", tt.res.FullName(), got, tt.want)
		}
	}
}

// A pool whose readable socket name would not fit a unix socket path is served on a short hashed
// one; only a socket folder too long for even that is an error, naming the pool.
func TestLongSocketPaths(t *testing.T) {
	m, err := NewManager(Options{DevicePluginDir: shortDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	long := config.Resource{Prefix: "networking.k8s.io", Name: strings.Repeat("x", 60) + "1"}
	long2 := config.Resource{Prefix: "networking.k8s.io", Name: strings.Repeat("x", 60) + "2"}
	p1, p2 := m.SocketPath(long), m.SocketPath(long2)
	if len(p1) > maxUnixPath || p1 == p2 || !strings.HasPrefix(filepath.Base(p1), "netdevice-") {
		t.Fatalf("socket paths %s, %s: want short, distinct, ours", p1, p2)
	}
	if err := m.Update(long, nil); err != nil {
		t.Fatalf("Update of a pool with a long name: %v", err)
	}
	if _, err := os.Lstat(p1); err != nil {
		t.Errorf("socket %s not served: %v", p1, err)
	}

	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	m2, err := NewManager(Options{DevicePluginDir: deep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m2.Close() })
	err = m2.Update(long, nil)
	if err == nil || !strings.Contains(err.Error(), long.FullName()) {
		t.Fatalf("Update with a %d-byte socket path: %v, want an error naming the pool", len(m2.SocketPath(long)), err)
	}
}
