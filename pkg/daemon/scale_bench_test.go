package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/uevent"
)

// The node sizes of the scale benchmarks: pcitest.Generate trees of 128 iavf VFs per E810 PF, in
// six pools (PF p's VFs in pool p mod 6, by pfNames), as hack/bench-daemon.sh runs the daemon.
var scaleSizes = []struct {
	name string
	pfs  int
}{{"1024VFs", 8}, {"4096VFs", 32}}

const (
	scaleVFs   = 128
	scalePools = 6
)

// scaleConfig is the six-pool config of a generated tree of pfs PFs.
func scaleConfig(pfs int) string {
	groups := make([][]string, scalePools)
	for p := range pfs {
		groups[p%scalePools] = append(groups[p%scalePools], fmt.Sprintf("%q", fmt.Sprintf("ens%df0", p+1)))
	}
	var res []string
	for i, g := range groups {
		res = append(res, fmt.Sprintf(`{"resourceName": "vfs%d", "resourcePrefix": "example.com", "selectors": [{"pfNames": [%s]}]}`,
			i, strings.Join(g, ", ")))
	}
	return configOf(res...)
}

// scalePool is the pool of PF p's VFs, and their count in it.
func scalePool(pfs, p int) (string, int) {
	n := 0
	for q := range pfs {
		if q%scalePools == p%scalePools {
			n += scaleVFs
		}
	}
	return fmt.Sprintf("example.com/vfs%d", p%scalePools), n
}

// scaleHarness is a daemon with the real servers behind the kubelet stand-in on a generated tree,
// fed uevents and link events by the benchmark.
func scaleHarness(b *testing.B, pfs int) (*harness, *feed[uevent.Event], *feed[netdev.LinkEvent]) {
	b.Helper()
	uevents, links := &feed[uevent.Event]{}, &feed[netdev.LinkEvent]{}
	h := newHarnessWith(b, harnessOpts{config: scaleConfig(pfs), tree: func(t *pcitest.Tree) error {
		return pcitest.GenerateInto(t, pfs, scaleVFs)
	}}, func(h *harness) {
		h.opts.Uevents, h.opts.Links = uevents.open, links.open
	})
	h.waitRegistered(pfs)
	return h, uevents, links
}

// waitRegistered waits until every pool is registered with its full list.
func (h *harness) waitRegistered(pfs int) {
	h.t.Helper()
	for p := range scalePools {
		name, n := scalePool(pfs, p)
		if _, err := h.plugin(name).WaitDevices(ctxTimeout(h.t, 30*time.Second), func(d []*pluginapi.Device) bool { return len(d) == n }); err != nil {
			h.t.Fatal(err)
		}
	}
}

// BenchmarkRegister is a daemon's start on the tree, to every pool registered with the kubelet
// stand-in and its full list received: config, scan, pools, six CDI specs, servers, registration,
// ListAndWatch. One op is one start (the previous daemon stopped, untimed).
func BenchmarkRegister(b *testing.B) {
	requireNetns(b)
	for _, size := range scaleSizes {
		b.Run(size.name, func(b *testing.B) {
			h, _, _ := scaleHarness(b, size.pfs)
			for b.Loop() {
				b.StopTimer()
				h.stop()
				b.StartTimer()
				h.start()
				h.waitRegistered(size.pfs)
			}
		})
	}
}

// BenchmarkEventToListAndWatch is the time from one event to the kubelet stand-in receiving the
// updated list, on the whole node: "vf-uevent" unbinds or binds one VF (its driver link and the
// kernel's uevent), which leaves or rejoins its pool; "pf-link" flips a PF's carrier (its sysfs
// carrier and the netlink event of its netdev), which all 128 of its VFs follow. No coalescing
// window: each event is acted on at once.
func BenchmarkEventToListAndWatch(b *testing.B) {
	requireNetns(b)
	for _, size := range scaleSizes {
		b.Run(size.name+"/vf-uevent", func(b *testing.B) {
			h, uevents, _ := scaleHarness(b, size.pfs)
			pool, n := scalePool(size.pfs, 0)
			vf, err := h.tree.VFAddr("0000:10:00.0", 5)
			if err != nil {
				b.Fatal(err)
			}
			dir, err := h.tree.FuncDir(vf)
			if err != nil {
				b.Fatal(err)
			}
			link := filepath.Join(dir, "driver")
			target, err := os.Readlink(link)
			if err != nil {
				b.Fatal(err)
			}
			p := h.plugin(pool)
			bound := true
			var lat latencies
			for b.Loop() {
				t0 := time.Now()
				var action string
				want := n
				if bound {
					err, action, want = os.Remove(link), "unbind", n-1
				} else {
					err, action = os.Symlink(target, link), "bind"
				}
				if err != nil {
					b.Fatal(err)
				}
				uevents.send(pciUevent(action, vf))
				if _, err := p.WaitDevices(ctxTimeout(b, 10*time.Second), func(d []*pluginapi.Device) bool { return len(d) == want }); err != nil {
					b.Fatal(err)
				}
				lat.add(t0)
				bound = !bound
			}
			lat.report(b)
		})
		b.Run(size.name+"/pf-link", func(b *testing.B) {
			h, _, links := scaleHarness(b, size.pfs)
			pool, _ := scalePool(size.pfs, 0)
			dir, err := h.tree.FuncDir("0000:10:00.0")
			if err != nil {
				b.Fatal(err)
			}
			carrier := filepath.Join(dir, "net/ens1f0/carrier")
			p := h.plugin(pool)
			up := true
			var lat latencies
			for b.Loop() {
				t0 := time.Now()
				value, health := "0", pluginapi.Unhealthy
				if !up {
					value, health = "1", pluginapi.Healthy
				}
				if err := os.WriteFile(carrier, []byte(value+"\n"), 0o644); err != nil {
					b.Fatal(err)
				}
				links.send(netdevEvent("ens1f0", 100000, false))
				ok := func(d []*pluginapi.Device) bool {
					for _, x := range d {
						if strings.HasPrefix(x.ID, "0000:10:") && x.Health != health {
							return false
						}
					}
					return true
				}
				if _, err := p.WaitDevices(ctxTimeout(b, 10*time.Second), ok); err != nil {
					b.Fatal(err)
				}
				lat.add(t0)
				up = !up
			}
			lat.report(b)
		})
	}
}

// latencies collects the time of each iteration from its event to the list it awaited, and
// reports the slowest 1 % (p99-ms) beside the mean that ns/op gives.
type latencies []time.Duration

func (l *latencies) add(since time.Time) { *l = append(*l, time.Since(since)) }

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	b.ReportMetric(float64(l[(len(l)-1)*99/100].Microseconds())/1000, "p99-ms")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scaleTwin is a daemon outside Run on a generated tree, servers and specs recorded.
func scaleTwin(b testing.TB, pfs int) *twin {
	b.Helper()
	root, cfgPath := scaleNode(b, "scale", pfs)
	return newTwin(b, root, cfgPath, allocation.New(time.Hour))
}

// scaleNode generates a node of pfs PFs with scaleVFs VFs each and its config (scaleConfig), and
// returns the sysfs root and the config's path.
func scaleNode(b testing.TB, prefix string, pfs int) (root, cfgPath string) {
	b.Helper()
	dir := shortDir(b, prefix)
	tr, err := pcitest.NewTree(filepath.Join(dir, "tree"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pcitest.GenerateInto(tr, pfs, scaleVFs); err != nil {
		b.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(scaleConfig(pfs)), 0o644); err != nil {
		b.Fatal(err)
	}
	return tr.Root, cfgPath
}

// BenchmarkRescan is the periodic rescan, the daemon's only work while nothing happens: the scan of
// every function, the comparison with what the events kept, and the placement of every device.
// cpu-ms/op is the process's CPU time per rescan (both cores); cpu-s/min is what that costs at the
// default interval (DefaultRescanInterval).
func BenchmarkRescan(b *testing.B) {
	for _, size := range scaleSizes {
		b.Run(size.name, func(b *testing.B) {
			tw := scaleTwin(b, size.pfs)
			c0 := cpuTime(b)
			for b.Loop() {
				if err := tw.d.rescan("bench", false); err != nil {
					b.Fatal(err)
				}
			}
			perOp := (cpuTime(b) - c0) / time.Duration(b.N)
			b.ReportMetric(float64(perOp.Microseconds())/1000, "cpu-ms/op")
			b.ReportMetric(perOp.Seconds()*float64(time.Minute)/float64(DefaultRescanInterval), "cpu-s/min")
		})
	}
}

// BenchmarkApplyAll is the placement of every device again, as after an allocation or release
// (the ledger changed) or a config change: pools, specs compared, every server entry.
func BenchmarkApplyAll(b *testing.B) {
	for _, size := range scaleSizes {
		b.Run(size.name, func(b *testing.B) {
			tw := scaleTwin(b, size.pfs)
			devs := tw.d.inc.Devices()
			for b.Loop() {
				tw.d.apply(devs)
			}
		})
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkDeviceBytes measures what each VF costs in the daemon's live heap, part by part, as
// the difference between the 4,096- and the 1,024-VF node divided by the 3,072 VFs between them
// (so that what does not grow with the node cancels out): the inventory (PCI scanner and its
// indexes), the daemon's pooled devices, CDI specs as written and server entries, and the device
// servers' own lists (ListAndWatch's devices and Allocate's entries). One op builds both nodes.
func BenchmarkDeviceBytes(b *testing.B) {
	type parts struct{ inventory, daemon, servers uint64 }
	measure := func(pfs int) parts {
		root, cfgPath := scaleNode(b, "bytes", pfs)
		var p parts
		h0 := heapInUse()
		scanner, err := inventory.New(inventory.Options{SysfsRoot: root})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := scanner.Scan(); err != nil {
			b.Fatal(err)
		}
		h1 := heapInUse()
		p.inventory = h1 - h0
		mgr, err := server.NewManager(server.Options{DevicePluginDir: shortDir(b, "dp"), PluginsRegistryDir: "/nonexistent"})
		if err != nil {
			b.Fatal(err)
		}
		specs := &recSpecs{specs: map[string]pool.Pool{}}
		d, err := New(Options{ConfigPath: cfgPath, Scanner: scanner, Specs: specs, Servers: mgr})
		if err != nil {
			b.Fatal(err)
		}
		if d.cfg, err = d.loadConfig(); err != nil {
			b.Fatal(err)
		}
		if err := d.refresh("start"); err != nil {
			b.Fatal(err)
		}
		specs.specs = nil // the CDI writer keeps no copy: the daemon's written is the one
		h2 := heapInUse()
		// The servers' share: what their lists hold beyond the daemon's entries. Measured by
		// handing them empty pools and looking at what goes.
		for _, r := range d.cfg.Resources {
			if err := mgr.Update(r, nil); err != nil {
				b.Fatal(err)
			}
		}
		h3 := heapInUse()
		p.servers = h2 - h3
		p.daemon = h2 - h1 - p.servers
		runtime.KeepAlive(d)
		runtime.KeepAlive(scanner)
		if err := mgr.Close(); err != nil {
			b.Fatal(err)
		}
		return p
	}
	for b.Loop() {
		small, big := measure(8), measure(32)
		vfs := float64((32 - 8) * scaleVFs)
		per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / vfs }
		b.ReportMetric(per(small.inventory, big.inventory), "inventory-B/VF")
		b.ReportMetric(per(small.daemon, big.daemon), "daemon-B/VF")
		b.ReportMetric(per(small.servers, big.servers), "servers-B/VF")
		b.ReportMetric(per(small.inventory+small.daemon+small.servers, big.inventory+big.daemon+big.servers), "total-B/VF")
	}
}
