package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/cdi"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/daemon"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/devinfo"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/metrics"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/podresources"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
)

// daemonFlags are the daemon's command line.
type daemonFlags struct {
	config, sysfsRoot, prefix, devicePluginDir, registryDir, cdiDir, hookPath, pciIDs, metricsAddr, stateFile string
	devinfoDir, podResources, devRoot, cniBinDir, leaseDir                                                    string
	rescan, kubeletSync                                                                                       time.Duration
	strictConfig                                                                                              bool
}

func parseDaemonFlags(args []string) (*daemonFlags, int) {
	return parseDaemonFlagsTo(args, os.Stderr)
}

// parseDaemonFlagsTo parses the daemon's command line, writing usage and errors to out.
func parseDaemonFlagsTo(args []string, out io.Writer) (*daemonFlags, int) {
	fs := flag.NewFlagSet("netdevice-plugin", flag.ContinueOnError)
	fs.SetOutput(out)
	klog.InitFlags(fs) // -v, -logtostderr, ...: the Kubernetes logging flags
	f := &daemonFlags{}
	fs.StringVar(&f.config, "config", "", "selector config file (JSON or YAML, sriov-dp config.json format), watched for changes; required")
	fs.StringVar(&f.sysfsRoot, "sysfs-root", inventory.DefaultSysfsRoot, "sysfs directory to read PCI devices from")
	fs.BoolVar(&f.strictConfig, "strict-config", false, "unknown and repeated config keys reject the config instead of being logged as warnings")
	fs.StringVar(&f.prefix, "resource-prefix", config.DefaultResourcePrefix, "resource prefix for resources that name none")
	fs.StringVar(&f.devicePluginDir, "device-plugin-dir", server.DefaultDevicePluginDir, "the kubelet's device-plugin folder (kubelet.sock)")
	fs.StringVar(&f.registryDir, "plugins-registry-dir", server.DefaultPluginsRegistryDir, "the kubelet's plugin-watcher folder; when it exists, sockets go there instead of registering through kubelet.sock (\"\" never)")
	fs.StringVar(&f.cdiDir, "cdi-dir", cdi.DefaultDir, "folder for the pools' CDI specs")
	fs.StringVar(&f.hookPath, "hook-path", cdi.DefaultHookPath, "absolute path of netdevice-hook on the host, written into the CDI specs")
	fs.DurationVar(&f.rescan, "rescan-interval", daemon.DefaultRescanInterval, "periodic full rescan, the safety net for missed events (VF count, driver rebinds)")
	fs.StringVar(&f.pciIDs, "pci-ids", "", "pci.ids file for vendor/device names (default: the usual system paths)")
	fs.StringVar(&f.stateFile, "state-file", "/run/netdevice-plugin/daemon-state.gob", "where the daemon keeps the devices it pooled across its own restarts (devices inside pods are not on the host); \"\" = nowhere")
	fs.StringVar(&f.devinfoDir, "devinfo-dir", devinfo.DefaultDir, "where allocated PCI devices get their device-information files (the Network Plumbing WG spec Multus reads); \"\" = none")
	fs.StringVar(&f.podResources, "pod-resources-socket", podresources.DefaultSocket, "the kubelet's pod-resources API: which devices pods still hold; \"\" = do not ask")
	fs.StringVar(&f.cniBinDir, "cni-bin-dir", "/opt/cni/bin", "where pools with ipam find their CNI IPAM plugin (host-local, dhcp, ...)")
	fs.StringVar(&f.leaseDir, "ipam-lease-dir", ipam.DefaultLeaseDir, "where the hooks keep the IPAM leases (persistent storage: the daemon releases them after a reboot)")
	fs.DurationVar(&f.kubeletSync, "kubelet-sync-interval", daemon.DefaultKubeletSync, "how often the kubelet is asked which devices pods hold")
	fs.StringVar(&f.devRoot, "dev-root", daemon.DefaultDevRoot, "the host's device folder (/dev as the daemon sees it): needVhostNet pools need vhost-net and net/tun there, RDMA pods get rdma_cm when it is there; host paths in the CDI specs are under it")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "address for /metrics and /healthz, e.g. :9402 (\"\" = off)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: netdevice-plugin --config FILE [flags]\n       netdevice-plugin discover --config FILE [flags]\n       netdevice-plugin install-hook [flags]\n\nFlags of the daemon:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "netdevice-plugin: unexpected argument %q\n", fs.Arg(0))
		return nil, 2
	case f.config == "":
		fmt.Fprintln(fs.Output(), "netdevice-plugin: --config is required")
		return nil, 2
	case !filepath.IsAbs(f.hookPath):
		fmt.Fprintf(fs.Output(), "netdevice-plugin: --hook-path %q must be absolute (the runtime runs it from anywhere)\n", f.hookPath)
		return nil, 2
	case f.rescan <= 0:
		fmt.Fprintf(fs.Output(), "netdevice-plugin: --rescan-interval %v must be positive\n", f.rescan)
		return nil, 2
	case f.kubeletSync <= 0:
		fmt.Fprintf(fs.Output(), "netdevice-plugin: --kubelet-sync-interval %v must be positive\n", f.kubeletSync)
		return nil, 2
	}
	return f, -1
}

// runDaemon serves the configured pools until SIGTERM or SIGINT, then stops the servers and
// removes their sockets. CDI specs stay: containers restarted later still need them.
func runDaemon(args []string) int {
	f, code := parseDaemonFlags(args)
	if f == nil {
		return code
	}
	defer klog.Flush()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, f); err != nil {
		klog.ErrorS(err, "netdevice-plugin failed")
		return 1
	}
	klog.InfoS("Stopped; CDI specs left in place", "cdiDir", f.cdiDir)
	return 0
}

func serve(ctx context.Context, f *daemonFlags) (err error) {
	scanner, err := inventory.New(inventory.Options{SysfsRoot: f.sysfsRoot, PCIIDsPath: f.pciIDs, SoftwareLinks: true, DevRoot: f.devRoot})
	if err != nil {
		return err
	}
	// The RDMA netns mode cannot change while any pod namespace exists: read once.
	rdmaMode, rdmaErr := netdev.RDMANetnsMode()
	klog.InfoS("RDMA network-namespace mode", "mode", rdmaMode, "why", errText(rdmaErr))
	// /healthz fails when no scan succeeded for three rescan intervals, or when the loop, which
	// speaks at every kubelet sync, has been silent for three of them, and at least 2 minutes
	// (releases run IPAM plugins, each allowed 30 s).
	m := metrics.New(3*f.rescan, max(3*f.kubeletSync, 2*time.Minute))
	ledger := allocation.New(0)
	var files *devinfo.Dir
	if f.devinfoDir != "" {
		files = devinfo.New(f.devinfoDir)
	}
	recorder := daemon.NewRecorder(ledger, files)
	mgr, err := server.NewManager(server.Options{DevicePluginDir: f.devicePluginDir, PluginsRegistryDir: f.registryDir, Observer: m, Recorder: recorder})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, mgr.Close()) }()
	opts := daemon.Options{
		ConfigPath:    f.config,
		DefaultPrefix: f.prefix,
		StrictConfig:  f.strictConfig,
		Scanner:       scanner,
		Specs: cdi.NewWriter(f.cdiDir, f.hookPath).With(cdi.WriterOptions{DevRoot: f.devRoot, MoveRDMA: rdmaMode == netdev.RDMAExclusive,
			CNIBinDir: f.cniBinDir, LeaseDir: f.leaseDir}),
		Servers:        m.Servers(mgr),
		Links:          netdev.WatchLinks,
		Uevents:        inventory.WatchUevents,
		Routes:         netdev.WatchRoutes,
		ReconcileLinks: func() error { return reconcileReturned(f.sysfsRoot) },
		RescanInterval: f.rescan,
		Observer:       m,
		StateFile:      f.stateFile,
		Ledger:         ledger,
		Recorder:       recorder,
		KubeletSync:    f.kubeletSync,
		DevRoot:        f.devRoot,
		LeaseDir:       f.leaseDir,
	}
	if f.podResources != "" {
		opts.Kubelet = podresources.New(f.podResources).Held
	}
	d, err := daemon.New(opts)
	if err != nil {
		return err
	}
	if f.metricsAddr != "" {
		stopMetrics, err := serveMetrics(f.metricsAddr, m)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	klog.InfoS("Starting netdevice-plugin", "version", version, "config", f.config, "sysfsRoot", f.sysfsRoot, "mode", mgr.Mode(),
		"cdiDir", f.cdiDir, "hookPath", f.hookPath, "rescanInterval", f.rescan)
	return d.Run(ctx)
}

// errText is an error's text, or "" for none.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// reconcileReturned gives links and RDMA devices the kernel returned from dead pod namespaces their
// host names back. The sysfs root is where it finds a PCI function's netdevs (an IPoIB netdev the
// kernel re-created when its RDMA device came home).
func reconcileReturned(sysfsRoot string) error {
	back, err := netns.ReconcileReturned(netns.Options{SysfsRoot: sysfsRoot})
	for _, r := range back {
		if r.RDMA {
			klog.InfoS("RDMA device back from a pod namespace renamed to its host name", "from", r.From, "to", r.To, "pciAddress", r.PCIAddress)
			continue
		}
		klog.InfoS("Link back from a pod namespace renamed to its host name", "from", r.From, "to", r.To, "pciAddress", r.PCIAddress)
	}
	return err
}

// serveMetrics serves /metrics and /healthz until the returned stop is called.
func serveMetrics(addr string, m *metrics.Metrics) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Metrics server stopped", "addr", addr)
		}
	}()
	klog.InfoS("Serving /metrics and /healthz", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
