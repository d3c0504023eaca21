package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/devinfo"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/podresources"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

const hookPath = "/opt/netdevice-plugin/bin/netdevice-hook"

// testGrace is the ledger's grace period in tests: an allocation the kubelet stand-in does not
// list is released this long after Allocate.
const testGrace = 300 * time.Millisecond

// harness is a daemon wired to real parts: the inventory scanner over a sysfs fixture tree plus
// the links of the test's namespace, the CDI writer into a temp folder, the device-plugin servers
// behind the kubelet stand-in, netlink link events, and a ConfigMap-style config folder.
type harness struct {
	t          testing.TB
	tree       *pcitest.Tree
	cfgDir     string
	cfgPath    string
	cdiDir     string
	kubelet    *kubelettest.Kubelet
	mgr        *server.Manager
	generation int
	obs        *testObserver
	podres     *kubelettest.PodResources // nil unless harnessOpts.podResources
	devinfo    *devinfo.Dir
	ledger     *allocation.Ledger // the running daemon's
	opts       Options            // the daemon's options but for the servers, ledger and recorder, made per start
	dpDir      string             // the device-plugin folder
	stop       func()             // stops the running daemon and its servers; nil when stopped
	started    time.Time          // when the running daemon started: older registrations are stale
}

// testObserver counts what the loop reports.
type testObserver struct {
	scans, configErrs, configOK atomic.Int32
	warnings                    atomic.Int32 // of the last applied config
}

func (o *testObserver) ConfigLoaded(_ string, warnings []string, err error) {
	if err != nil {
		o.configErrs.Add(1)
	} else {
		o.configOK.Add(1)
		o.warnings.Store(int32(len(warnings)))
	}
}

func (o *testObserver) Scanned(int, time.Duration, error) { o.scans.Add(1) }

// waitScans waits until the daemon has scanned n more times than at the call.
func (h *harness) waitScans(n int32) {
	h.t.Helper()
	target := h.obs.scans.Load() + n
	for end := time.Now().Add(10 * time.Second); h.obs.scans.Load() < target; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			h.t.Fatalf("the daemon did not scan %d more times within 10 s", n)
		}
	}
}

type harnessOpts struct {
	config   string
	tree     func(*pcitest.Tree) error // fills the sysfs fixture; nil: no PCI devices
	rescan   time.Duration             // 0: the default (longer than any test)
	coalesce time.Duration
	noLinks  bool
	state    bool // keep the daemon's state in a file, to restart it
	// podResources serves the kubelet's pod-resources API from a stand-in (h.podres) the daemon
	// asks every 100 ms.
	podResources bool
	devRoot      string // DevRoot; "" = the default
	prefix       string // DefaultPrefix; "" = the default
}

// shortDir is a temp folder with a short path, as unix socket paths must fit 107 bytes.
func shortDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	return newHarnessWith(t, o, nil)
}

// newHarnessWith is newHarness with a change to the harness before the daemon starts.
func newHarnessWith(t testing.TB, o harnessOpts, before func(*harness)) *harness {
	t.Helper()
	base := shortDir(t, "dmn")
	tree, err := pcitest.NewTree(filepath.Join(base, "fixture"))
	if err != nil {
		t.Fatal(err)
	}
	if o.tree != nil {
		if err := o.tree(tree); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, tree: tree, obs: &testObserver{}, cfgDir: filepath.Join(base, "cfg"), cdiDir: filepath.Join(base, "cdi"), dpDir: filepath.Join(base, "dp"),
		devinfo: devinfo.New(filepath.Join(base, "devinfo"))}
	h.cfgPath = filepath.Join(h.cfgDir, "config.json")
	for _, d := range []string{h.cfgDir, h.cdiDir, h.dpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.writeConfig(o.config)
	if err := os.Symlink("..data/config.json", h.cfgPath); err != nil {
		t.Fatal(err)
	}
	h.kubelet, err = kubelettest.Start(h.dpDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.kubelet.Close)
	scanner, err := inventory.New(inventory.Options{SysfsRoot: tree.Root, SoftwareLinks: true, DevRoot: o.devRoot})
	if err != nil {
		t.Fatal(err)
	}
	h.opts = Options{
		ConfigPath:     h.cfgPath,
		Scanner:        scanner,
		Specs:          cdi.NewWriter(h.cdiDir, hookPath).With(cdi.WriterOptions{DevRoot: o.devRoot}),
		Links:          netdev.WatchLinks,
		RescanInterval: o.rescan,
		Coalesce:       o.coalesce,
		Observer:       h.obs,
		DevRoot:        o.devRoot,
		DefaultPrefix:  o.prefix,
	}
	if o.podResources {
		h.podres, err = kubelettest.StartPodResources(filepath.Join(base, "pod-resources.sock"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.podres.Close)
		h.opts.Kubelet = podresources.New(h.podres.Socket()).Held
		h.opts.KubeletSync = 100 * time.Millisecond
	}
	if o.noLinks {
		h.opts.Links = nil
	}
	if o.state {
		h.opts.StateFile = filepath.Join(base, "state", "daemon-state.gob")
	}
	if before != nil {
		before(h)
	}
	h.start()
	t.Cleanup(func() {
		if h.stop != nil {
			h.stop()
		}
	})
	return h
}

// start runs a daemon with fresh servers and a fresh ledger, as a restarted daemon process would.
func (h *harness) start() {
	h.t.Helper()
	h.ledger = allocation.New(testGrace)
	rec := NewRecorder(h.ledger, h.devinfo)
	mgr, err := server.NewManager(server.Options{DevicePluginDir: h.dpDir, PluginsRegistryDir: filepath.Join(h.dpDir, "no-registry"), Recorder: rec})
	if err != nil {
		h.t.Fatal(err)
	}
	h.mgr = mgr
	h.started = time.Now()
	opts := h.opts
	opts.Servers = mgr
	opts.Ledger, opts.Recorder = h.ledger, rec
	d, err := New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("daemon Run: %v", err)
		}
		if err := mgr.Close(); err != nil {
			h.t.Errorf("close servers: %v", err)
		}
		h.stop = nil
	}
}

// writeConfig publishes a config the way the kubelet updates a ConfigMap volume: a new
// timestamped folder, a "..data_tmp" symlink to it renamed over "..data".
func (h *harness) writeConfig(content string) {
	h.t.Helper()
	h.generation++
	gen := fmt.Sprintf("..2025_01_01_00_00_%02d.%d", h.generation, os.Getpid())
	if err := os.Mkdir(filepath.Join(h.cfgDir, gen), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.cfgDir, gen, "config.json"), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	tmp := filepath.Join(h.cfgDir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		h.t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(h.cfgDir, "..data"))
	if err := os.Rename(tmp, filepath.Join(h.cfgDir, "..data")); err != nil {
		h.t.Fatal(err)
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(h.cfgDir, old))
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// plugin waits for the resource's registration with the kubelet stand-in.
func (h *harness) plugin(resource string) *kubelettest.Plugin {
	h.t.Helper()
	p, err := h.kubelet.WaitPlugin(ctxTimeout(h.t, 10*time.Second), resource, h.started)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// waitList waits until the resource's ListAndWatch list reads want (kubelettest.Describe form).
func (h *harness) waitList(resource, want string) {
	h.t.Helper()
	p := h.plugin(resource)
	if _, err := p.WaitDevices(ctxTimeout(h.t, 10*time.Second), func(d []*pluginapi.Device) bool { return kubelettest.Describe(d) == want }); err != nil {
		h.t.Fatalf("%s: want %s: %v", resource, want, err)
	}
}

// allocate calls Allocate for one container through the kubelet stand-in.
func (h *harness) allocate(resource string, ids ...string) (*pluginapi.ContainerAllocateResponse, error) {
	h.t.Helper()
	resp, err := h.plugin(resource).Client.Allocate(ctxTimeout(h.t, 5*time.Second), &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids}}})
	if err != nil {
		return nil, err
	}
	return resp.ContainerResponses[0], nil
}

// resolveCDI checks that the CDI library finds every name in the spec folder, as the runtime will.
func (h *harness) resolveCDI(names []string) {
	h.t.Helper()
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(h.cdiDir), cdiapi.WithAutoRefresh(false))
	if err != nil {
		h.t.Fatal(err)
	}
	if errs := cache.GetErrors(); len(errs) > 0 {
		h.t.Fatalf("CDI spec errors: %v", errs)
	}
	for _, n := range names {
		if cache.GetDevice(n) == nil {
			h.t.Errorf("CDI device %s not found in %s (have %v)", n, h.cdiDir, cache.ListDevices())
		}
	}
}

// netdevIntoPod makes the fixture's sysfs look as the host's does when a hook moved the function's
// netdev into a pod: the function stays, its net/ folder and class/net link go.
func (h *harness) netdevIntoPod(addr, netdev string) {
	h.t.Helper()
	dir, err := h.tree.FuncDir(addr)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "net")); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(h.tree.Root, "class/net", netdev)); err != nil {
		h.t.Fatal(err)
	}
}

// veth creates a veth pair, both ends up, removed when the test ends.
func veth(t testing.TB, name, peerName string) (netlink.Link, netlink.Link) {
	t.Helper()
	requireNetns(t)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peerName}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	a, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := netlink.LinkByName(peerName)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{a, b} {
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", l.Attrs().Name, err)
		}
	}
	return a, b
}

func cdiNames(cr *pluginapi.ContainerAllocateResponse) []string {
	var out []string
	for _, d := range cr.CdiDevices {
		out = append(out, d.Name)
	}
	return out
}

func softwarePool(name, pattern string) string {
	return fmt.Sprintf(`{"resourceName": %q, "selectors": {"ifNames": [%q]}}`, name, pattern)
}

func configOf(pools ...string) string {
	return `{"resourceList": [` + strings.Join(pools, ",") + `]}`
}
