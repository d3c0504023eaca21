// Command bench measures whole netdevice-plugin processes on generated sysfs trees (pcitest.Generate:
// PFS Intel E810 PFs with VFS iavf VFs each), for the README's performance table. It must run as
// root inside a throwaway network namespace (hack/bench-daemon.sh and hack/bench-discover.sh
// arrange that): it creates links there, and refuses to run in the host's namespace.
//
//	bench daemon   -plugin BIN -pfs 8 -vfs 128 ...  start -> every pool registered, link event ->
//	               ListAndWatch (single flips and a burst), idle CPU, RSS steady and peak
//	bench discover -plugin BIN -floor BIN ...       `discover -o json` and the ghw floor program,
//	               wall time and peak RSS of the whole process
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server/kubelettest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench daemon|discover [flags]")
		os.Exit(2)
	}
	if err := notHostNetns(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	var err error
	switch os.Args[1] {
	case "daemon":
		err = benchDaemon(os.Args[2:])
	case "discover":
		err = benchDiscover(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// notHostNetns refuses to run in the namespace the scripts started in (BENCH_HOST_NETNS, the
// /proc/self/ns/net link they saw there): the benchmark creates and flips links.
func notHostNetns() error {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	host := os.Getenv("BENCH_HOST_NETNS")
	if host == "" || self == host {
		return errors.New("runs only inside a throwaway network namespace: use hack/bench-daemon.sh or hack/bench-discover.sh")
	}
	return nil
}

// tree generates the sysfs tree in dir and returns its root.
func tree(dir string, pfs, vfs int) (string, error) {
	return pcitest.Generate(filepath.Join(dir, "tree"), pfs, vfs)
}

// netdevNames are the netdev names pcitest.Generate gives PFs and VFs.
func netdevNames(pfs, vfs int) []string {
	var out []string
	for p := range pfs {
		pf := fmt.Sprintf("ens%df0", p+1)
		out = append(out, pf)
		for v := range vfs {
			out = append(out, fmt.Sprintf("%sv%d", pf, v))
		}
	}
	return out
}

// addLinks makes one ifb link per name: a node whose VFs' netdevs are links of its namespace, as
// on real hardware (the fixture's sysfs netdevs are not).
func addLinks(names []string) error {
	for _, n := range names {
		if err := netlink.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: n}}); err != nil {
			return fmt.Errorf("add ifb %s: %w", n, err)
		}
	}
	return nil
}

// vfConfig is a selector config of pools VF pools, PF p's VFs in pool p mod pools, and a pool of
// the software links named ndbench*.
func vfConfig(pfs, pools int) string {
	groups := make([][]string, pools)
	for p := range pfs {
		groups[p%pools] = append(groups[p%pools], strconv.Quote(fmt.Sprintf("ens%df0", p+1)))
	}
	var res []string
	for i, g := range groups {
		if len(g) == 0 {
			continue
		}
		res = append(res, fmt.Sprintf(`{"resourceName": "vfs%d", "resourcePrefix": "example.com", "selectors": [{"pfNames": [%s]}]}`,
			i, strings.Join(g, ", ")))
	}
	res = append(res, `{"resourceName": "links", "resourcePrefix": "example.com", "selectors": [{"ifNames": ["ndbench*"]}]}`)
	return `{"resourceList": [` + strings.Join(res, ",\n") + "]}\n"
}

// workspace makes the benchmark's folder and its generated sysfs tree of pfs x vfs functions, and
// with asLinks a link of the namespace for every VF netdev. The caller removes dir.
func workspace(pfs, vfs int, asLinks bool) (dir, root string, err error) {
	dir, err = os.MkdirTemp("", "ndbench-")
	if err != nil {
		return "", "", err
	}
	if root, err = tree(dir, pfs, vfs); err == nil && asLinks {
		err = addLinks(netdevNames(pfs, vfs))
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return dir, root, nil
}

// cpuTime is the time the process's threads have run on a CPU, in nanoseconds from their
// schedstat (/proc/<pid>/stat's utime and stime come in 10 ms ticks, too coarse for an idle
// daemon). Go rarely ends a thread, so the sum over the live threads is the process's.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("threads of process %d: %v", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, fmt.Errorf("%s: empty", t)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", t, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// memory is VmRSS and VmHWM (the peak) of the process, in KiB.
func memory(pid int) (rss, hwm int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.Atoi(f[1])
		case "VmHWM:":
			hwm, _ = strconv.Atoi(f[1])
		}
	}
	return rss, hwm, nil
}

func mib(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func benchDaemon(args []string) error {
	fs := flag.NewFlagSet("bench daemon", flag.ExitOnError)
	plugin := fs.String("plugin", "bin/netdevice-plugin", "netdevice-plugin binary")
	pfs := fs.Int("pfs", 8, "PFs of the generated tree")
	vfs := fs.Int("vfs", 128, "VFs per PF")
	pools := fs.Int("pools", 6, "VF pools (plus one pool of software links for the link events)")
	idle := fs.Duration("idle", time.Minute, "idle time over which CPU is measured")
	flips := fs.Int("flips", 200, "single link events (carrier flips) timed")
	burst := fs.Int("burst", 32, "links flipped at once in the burst")
	rescan := fs.Duration("rescan", 0, "--rescan-interval of the daemon (0: its default)")
	asLinks := fs.Bool("links", false, "every VF netdev of the tree is also a link of the namespace (ifb)")
	pciIDs := fs.String("pci-ids", "/usr/share/misc/pci.ids", "pci.ids for the daemon (\"\": its default search)")
	extra := fs.String("daemon-args", "", "more daemon flags, space-separated")
	_ = fs.Parse(args)

	dir, root, err := workspace(*pfs, *vfs, *asLinks)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The link pool: ndbench0 for single events, ndbench1.. for the burst. A veth's carrier
	// follows its peer, so flipping the peer is one link event on the pooled end.
	peers := make([]netlink.Link, 0, *burst+1)
	for i := range *burst + 1 {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("ndbench%d", i)}, PeerName: fmt.Sprintf("ndbpeer%d", i)}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		for _, n := range []string{v.Name, v.PeerName} {
			l, err := netlink.LinkByName(n)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			if n == v.PeerName {
				peers = append(peers, l)
			}
		}
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(vfConfig(*pfs, *pools)), 0o644); err != nil {
		return err
	}
	dp := filepath.Join(dir, "dp")
	if err := os.MkdirAll(dp, 0o755); err != nil {
		return err
	}
	kubelet, err := kubelettest.Start(dp)
	if err != nil {
		return err
	}
	defer kubelet.Close()

	want := map[string]int{"example.com/links": *burst + 1}
	for p := range *pfs {
		want[fmt.Sprintf("example.com/vfs%d", p%*pools)] += *vfs
	}
	dargs := []string{"--config", cfgPath, "--sysfs-root", root, "--device-plugin-dir", dp,
		"--plugins-registry-dir", "", "--cdi-dir", filepath.Join(dir, "cdi"), "--state-file", "",
		"--pod-resources-socket", "", "--devinfo-dir", "", "--pci-ids", *pciIDs, "--metrics-addr", metricsAddr}
	if *rescan > 0 {
		dargs = append(dargs, "--rescan-interval", rescan.String())
	}
	if *extra != "" {
		dargs = append(dargs, strings.Fields(*extra)...)
	}
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(*plugin, dargs...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	fail := func(err error) error {
		log, _ := os.ReadFile(logf.Name())
		if len(log) > 4000 {
			log = log[len(log)-4000:]
		}
		return fmt.Errorf("%w\ndaemon log (tail):\n%s", err, log)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // start and registration
	defer cancel()
	plugins := map[string]*kubelettest.Plugin{}
	for res, n := range want {
		p, err := kubelet.WaitPlugin(ctx, res, start)
		if err != nil {
			return fail(err)
		}
		if _, err := p.WaitDevices(ctx, func(d []*pluginapi.Device) bool { return len(d) == n }); err != nil {
			return fail(err)
		}
		plugins[res] = p
	}
	registered := time.Since(start)
	rssStart, hwmStart, _ := memory(pid)
	fmt.Printf("devices: %d VFs (%d PFs x %d) in %d pools + %d links in 1 pool; links for VF netdevs: %v\n",
		*pfs**vfs, *pfs, *vfs, *pools, *burst+1, *asLinks)
	fmt.Printf("start -> every pool registered with its full list: %s\n", ms(registered))
	fmt.Printf("RSS after start: %s (peak %s)\n", mib(rssStart), mib(hwmStart))

	links := plugins["example.com/links"]
	health := func(ids int, h string) func([]*pluginapi.Device) bool {
		return func(d []*pluginapi.Device) bool {
			for _, x := range d {
				if x.ID == "ndbench"+strconv.Itoa(ids) && x.Health != h {
					return false
				}
			}
			return true
		}
	}
	var lat []time.Duration
	down := true
	for range *flips {
		time.Sleep(20 * time.Millisecond)
		set, h := netlink.LinkSetUp, pluginapi.Healthy
		if down {
			set, h = netlink.LinkSetDown, pluginapi.Unhealthy
		}
		t := time.Now()
		if err := set(peers[0]); err != nil {
			return err
		}
		if err := wait(links, health(0, h)); err != nil {
			return fail(err)
		}
		lat = append(lat, time.Since(t))
		down = !down
	}
	if len(lat) > 0 {
		fmt.Printf("link event -> ListAndWatch (%d single flips): p50 %s, p99 %s, max %s\n", len(lat),
			ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1)))
	}
	if *burst > 0 {
		var bursts []time.Duration
		for round := range 10 {
			time.Sleep(300 * time.Millisecond)
			set, h := netlink.LinkSetDown, pluginapi.Unhealthy
			if round%2 == 1 {
				set, h = netlink.LinkSetUp, pluginapi.Healthy
			}
			t := time.Now()
			for _, p := range peers[1:] {
				if err := set(p); err != nil {
					return err
				}
			}
			all := func(d []*pluginapi.Device) bool {
				for _, x := range d {
					if x.ID != "ndbench0" && x.Health != h {
						return false
					}
				}
				return true
			}
			if err := wait(links, all); err != nil {
				return fail(err)
			}
			bursts = append(bursts, time.Since(t))
		}
		fmt.Printf("burst of %d link events -> all in ListAndWatch: median %s, max %s\n", *burst,
			ms(percentile(bursts, 0.5)), ms(percentile(bursts, 1)))
	}
	rssEvents, _, _ := memory(pid)
	fmt.Printf("RSS after the events: %s\n", mib(rssEvents))

	if *idle > 0 {
		time.Sleep(2 * time.Second) // the last events' work settles
		c0, err := cpuTime(pid)
		if err != nil {
			return err
		}
		t0 := time.Now()
		time.Sleep(*idle)
		c1, err := cpuTime(pid)
		if err != nil {
			return err
		}
		perMin := (c1 - c0).Seconds() / time.Since(t0).Minutes()
		rss, hwm, _ := memory(pid)
		fmt.Printf("idle %s: %.4f CPU-s/min (%s CPU); RSS %s, peak %s\n", idle.String(), perMin, (c1 - c0).String(), mib(rss), mib(hwm))
	}
	if m, err := goMemory(); err == nil {
		fmt.Println("Go memory at the end:", m)
	}
	if keep := os.Getenv("BENCH_DAEMON_LOG"); keep != "" {
		if log, err := os.ReadFile(logf.Name()); err == nil {
			_ = os.WriteFile(keep, log, 0o644)
		}
	}
	return nil
}

// metricsAddr is where the daemon serves /metrics in the benchmark's namespace, as the DaemonSet
// has it serve them.
const metricsAddr = "127.0.0.1:9402"

// goMemory is what the daemon's Go runtime says of its memory (the Go collector's metrics).
func goMemory() (string, error) {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, l := range strings.Split(string(body), "\n") {
		for _, name := range []string{"go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
			"go_memstats_heap_released_bytes", "go_memstats_next_gc_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes"} {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				parts = append(parts, fmt.Sprintf("%s %s", strings.TrimSuffix(strings.TrimPrefix(name, "go_memstats_"), "_bytes"), mib(int(f/1024))))
			}
		}
	}
	return strings.Join(parts, ", "), nil
}

// wait waits up to 10 s for the plugin's list to satisfy ok.
func wait(p *kubelettest.Plugin, ok func([]*pluginapi.Device) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.WaitDevices(ctx, ok)
	return err
}

// run runs a command once and returns its wall time and peak RSS (KiB).
func run(name string, args []string) (time.Duration, int, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout = nil
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %w: %s", name, err, stderr.String())
	}
	wall := time.Since(t)
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if ru == nil {
		return wall, 0, nil
	}
	return wall, int(ru.Maxrss), nil
}

func benchDiscover(args []string) error {
	fs := flag.NewFlagSet("bench discover", flag.ExitOnError)
	plugin := fs.String("plugin", "bin/netdevice-plugin", "netdevice-plugin binary")
	floor := fs.String("floor", "", "the ghw floor program (hack/ghwfloor)")
	pfs := fs.Int("pfs", 8, "PFs of the generated tree")
	vfs := fs.Int("vfs", 128, "VFs per PF")
	runs := fs.Int("runs", 11, "runs of each program")
	asLinks := fs.Bool("links", false, "every VF netdev of the tree is also a link of the namespace (ifb); discover lists software links")
	pciIDs := fs.String("pci-ids", "/usr/share/misc/pci.ids", "pci.ids for discover")
	_ = fs.Parse(args)

	dir, root, err := workspace(*pfs, *vfs, *asLinks)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := "resourceList:\n  - resourceName: vfs\n    resourcePrefix: example.com\n    selectors:\n      - drivers: [\"iavf\"]\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	dargs := []string{"discover", "--config", cfgPath, "--sysfs-root", root, "-o", "json",
		"--software-links=" + strconv.FormatBool(*asLinks)}
	if *pciIDs != "" {
		dargs = append(dargs, "--pci-ids", *pciIDs)
	}
	measure := func(name string, args []string) (time.Duration, int, error) {
		var walls []time.Duration
		peak := 0
		for range *runs {
			w, rss, err := run(name, args)
			if err != nil {
				return 0, 0, err
			}
			walls = append(walls, w)
			peak = max(peak, rss)
		}
		return percentile(walls, 0.5), peak, nil
	}
	dw, drss, err := measure(*plugin, dargs)
	if err != nil {
		return err
	}
	fmt.Printf("discover -o json, %d PFs x %d VFs, software links %v: median %s over %d runs, peak RSS %s\n",
		*pfs, *vfs, *asLinks, ms(dw), *runs, mib(drss))
	if *floor != "" {
		fw, frss, err := measure(*floor, []string{"--sysfs-root", root})
		if err != nil {
			return err
		}
		fmt.Printf("ghw floor (ghw.PCI + its pci.ids load, JSON): median %s, peak RSS %s; discover / floor = %.2f\n",
			ms(fw), mib(frss), dw.Seconds()/fw.Seconds())
	}
	return nil
}
