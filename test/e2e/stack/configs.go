package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"text/template"

	"sigs.k8s.io/yaml"
)

// Paths are the stack's private files and folders, all below one work folder.
type Paths struct {
	Work              string
	Logs              string
	ContainerdRoot    string
	ContainerdState   string
	ContainerdSocket  string
	ContainerdConfig  string
	ContainerdOpt     string
	RuncRoot          string
	CDIDir            string
	CNIConfDir        string
	CNIDataDir        string
	KubeletRoot       string
	KubeletCertDir    string
	KubeletConfig     string
	KubeletPodLogs    string
	KubeletVolPlugins string
	Manifests         string
	CrictlConfig      string
	Images            string
	// cluster only
	PKI         string // the CA, certificates and keys (WritePKI)
	Kubeconfigs string // one kubeconfig per client of the API server
	EtcdData    string
	Home        string // HOME and TMPDIR of kubectl: its cache and kubectl edit's files stay here
}

// NewPaths lays out the private folders below work, for a standalone kubelet.
func NewPaths(work string) Paths {
	j := func(p string) string { return work + "/" + p }
	return Paths{
		Work:              work,
		Logs:              j("logs"),
		ContainerdRoot:    j("containerd/root"),
		ContainerdState:   j("containerd/state"),
		ContainerdSocket:  j("containerd/containerd.sock"),
		ContainerdConfig:  j("containerd/config.toml"),
		ContainerdOpt:     j("containerd/opt"),
		RuncRoot:          j("containerd/runc"), // runc's state, instead of the shim's default /run/containerd/runc
		CDIDir:            j("cdi"),             // the plugin's CDI specs, instead of the host's /var/run/cdi
		CNIConfDir:        j("cni/net.d"),
		CNIDataDir:        j("cni/ipam"),
		KubeletRoot:       j("kubelet"), // short: plugin sockets live below it (108-byte limit)
		KubeletCertDir:    j("kubelet-pki"),
		KubeletConfig:     j("kubelet.yaml"),
		KubeletPodLogs:    j("pod-logs"),
		KubeletVolPlugins: j("volume-plugins"),
		Manifests:         j("manifests"),
		CrictlConfig:      j("crictl.yaml"),
		Images:            j("images"),
		PKI:               j("pki"),
		Kubeconfigs:       j("kubeconfig"),
		EtcdData:          j("etcd"),
		Home:              j("home"),
	}
}

// Host paths a cluster's kubelet and container runtime use, because the DaemonSet as users install
// it mounts them from the host: the kubelet's root (its plugins_registry and device-plugins folders,
// the pod-resources socket) and the CDI spec folder the runtime reads.
const (
	HostKubeletRoot = "/var/lib/kubelet"
	HostCDIDir      = "/var/run/cdi"
)

// NewClusterPaths lays out a cluster node's folders: those of NewPaths, but for the kubelet's root
// and the CDI folder, which are the host's defaults (HostKubeletRoot, HostCDIDir).
func NewClusterPaths(work string) Paths {
	p := NewPaths(work)
	p.KubeletRoot = HostKubeletRoot
	p.CDIDir = HostCDIDir
	return p
}

// AdminKubeconfig is the cluster administrator's kubeconfig (system:masters), kubectl's.
func (p Paths) AdminKubeconfig() string { return p.Kubeconfig("admin") }

// Kubeconfig is the kubeconfig of one client of the API server.
func (p Paths) Kubeconfig(name string) string { return p.Kubeconfigs + "/" + name + ".conf" }

// PKIFile is a file of the cluster's PKI folder.
func (p Paths) PKIFile(name string) string { return p.PKI + "/" + name }

// MaxSocketDirLen is the longest PluginsRegistryDir that leaves a plugin 45 bytes for its socket name
// within the kernel's 108-byte unix socket path limit.
const MaxSocketDirLen = 107 - 45

// PodResourcesSocket is the kubelet's pod-resources API socket (below its root dir).
func (p Paths) PodResourcesSocket() string { return p.KubeletRoot + "/pod-resources/kubelet.sock" }

// PluginsRegistryDir is the folder the kubelet's plugin watcher reads (below its root dir).
func (p Paths) PluginsRegistryDir() string { return p.KubeletRoot + "/plugins_registry" }

// containerdTemplate is containerd's config (version 3). Settings from E2E-NOTES.md: CDI on, reading
// the stack's own spec folder (so that the plugin under test never overwrites a spec of the host's);
// restrict_oom_score_adj because root here lacks CAP_SYS_RESOURCE; no AppArmor, no hugetlb; Debian's
// runc with cgroupfs and its state in the work folder; NRI off; no imports from /etc; every path
// private; pod netns files below the state dir instead of /run/netns. Only the shims' sockets stay in
// /run/containerd/s: containerd hard-codes that folder.
var containerdTemplate = template.Must(template.New("containerd").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(`version = 3
root = {{q .Paths.ContainerdRoot}}
state = {{q .Paths.ContainerdState}}
imports = []
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = {{q .Paths.ContainerdSocket}}

[ttrpc]
  address = {{q (print .Paths.ContainerdSocket ".ttrpc")}}

[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {{q .Paths.ContainerdOpt}}

  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = {{q .SandboxImage}}
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = ""

  [plugins."io.containerd.cri.v1.runtime"]
    enable_cdi = true
    cdi_spec_dirs = [{{q .Paths.CDIDir}}]
    restrict_oom_score_adj = true
    disable_apparmor = true
    disable_hugetlb_controller = true
    tolerate_missing_hugetlb_controller = true
    netns_mounts_under_state_dir = true

    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = {{q .Runc}}
          Root = {{q .Paths.RuncRoot}}
          SystemdCgroup = false

    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = [{{q .CNIBinDir}}]
      conf_dir = {{q .Paths.CNIConfDir}}
      max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`))

// ContainerdConfig renders containerd's config.toml.
func ContainerdConfig(p Paths, sandboxImage, runc, cniBinDir string) ([]byte, error) {
	var buf bytes.Buffer
	err := containerdTemplate.Execute(&buf, struct {
		Paths                         Paths
		SandboxImage, Runc, CNIBinDir string
	}{p, sandboxImage, runc, cniBinDir})
	if err != nil {
		return nil, fmt.Errorf("render containerd config: %w", err)
	}
	return buf.Bytes(), nil
}

// KubeletConfig renders the kubelet's KubeletConfiguration. Standalone (node nil, E2E-NOTES.md):
// static pods, no API server, loopback only with anonymous AlwaysAllow. As a cluster's node (node
// set), joined through its kubeconfig: it serves its API on the node's address with the certificate
// the cluster CA signed, authenticates clients by that CA (the API server's kubelet client) and asks
// the API server (Webhook) who may do what, as kubeadm sets a kubelet up; no static pods; node status
// every second and pod syncs every 5 s, so that a device plugin's capacity and a ConfigMap edit reach
// the API in seconds (defaults 10 s and 1 min). Both: cgroupfs on cgroup v1, swap tolerated, eviction
// and image GC that never act on a test machine, private log and plugin folders, and no iptables
// chains (makeIPTablesUtilChains, still a v1beta1 field in v1.34: its KUBE-IPTABLES-HINT and
// KUBE-FIREWALL chains would outlive the kubelet on a host with iptables).
// A map rather than k8s.io/kubelet/config/v1beta1: those types pull k8s.io/component-base into go.mod.
func KubeletConfig(p Paths, ports Ports, node *ClusterIdentity) ([]byte, error) {
	cfg := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"address":                  "127.0.0.1",
		"port":                     ports.Kubelet,
		"readOnlyPort":             0,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              ports.Healthz,
		"authentication":           map[string]any{"anonymous": map[string]any{"enabled": true}, "webhook": map[string]any{"enabled": false}},
		"authorization":            map[string]any{"mode": "AlwaysAllow"},
		"containerRuntimeEndpoint": "unix://" + p.ContainerdSocket,
		"cgroupDriver":             "cgroupfs",
		"failSwapOn":               false,
		"failCgroupV1":             false,
		"staticPodPath":            p.Manifests,
		"fileCheckFrequency":       "1s",
		"syncFrequency":            "5s",
		"podLogsDir":               p.KubeletPodLogs,
		"volumePluginDir":          p.KubeletVolPlugins,
		"evictionHard": map[string]string{
			"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
			"imagefs.available": "1%", "imagefs.inodesFree": "1%",
		},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"serializeImagePulls":         false,
		"shutdownGracePeriod":         "0s",
		"resolvConf":                  "/etc/resolv.conf",
		"makeIPTablesUtilChains":      false,
	}
	if node != nil {
		delete(cfg, "staticPodPath")
		delete(cfg, "fileCheckFrequency")
		cfg["address"] = node.NodeIP.String()
		cfg["authentication"] = map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": p.PKIFile("ca.crt")},
		}
		cfg["authorization"] = map[string]any{"mode": "Webhook"}
		cfg["tlsCertFile"] = p.PKIFile("kubelet.crt")
		cfg["tlsPrivateKeyFile"] = p.PKIFile("kubelet.key")
		cfg["nodeStatusUpdateFrequency"] = "1s"
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("render kubelet config: %w", err)
	}
	return out, nil
}

// Ports are the kubelet's ports (on loopback, or a cluster node's address) and, for a cluster, the
// control plane's (all on loopback) and the one the plugin's DaemonSet serves /metrics and /healthz
// on in the host network namespace.
type Ports struct {
	Kubelet int // HTTPS API (/pods, exec)
	Healthz int // /healthz
	// cluster only
	APIServer         int
	Etcd              int // client
	EtcdPeer          int
	ControllerManager int // its /healthz (HTTPS)
	Scheduler         int // its /healthz (HTTPS)
	Plugin            int // the DaemonSet's --metrics-addr
}

// DefaultPorts are the ports a kind or kubeadm node uses.
var DefaultPorts = Ports{Kubelet: 10250, Healthz: 10248, APIServer: 6443, Etcd: 2379, EtcdPeer: 2380,
	ControllerManager: 10257, Scheduler: 10259, Plugin: 9402}

// all lists the ports that must be free, in the order Ports declares them; cluster adds the control
// plane's and the plugin's.
func (p Ports) all(cluster bool) []int {
	out := []int{p.Kubelet, p.Healthz}
	if cluster {
		out = append(out, p.APIServer, p.Etcd, p.EtcdPeer, p.ControllerManager, p.Scheduler, p.Plugin)
	}
	return out
}

// CNIConfig renders the pod network: a bridge without an address on the host (isGateway false) and
// without masquerading, with host-local IPAM on a private /24 whose state stays in the work folder.
func CNIConfig(p Paths, bridge, subnet string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "netdevice-e2e",
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      bridge,
			"isGateway":   false,
			"ipMasq":      false,
			"hairpinMode": false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": subnet}}},
				"dataDir": p.CNIDataDir,
			},
		}},
	}
	out, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render CNI config: %w", err)
	}
	return out, nil
}

// CrictlConfig points crictl at the private containerd (and keeps it from reading /etc/crictl.yaml).
func CrictlConfig(p Paths) []byte {
	return fmt.Appendf(nil, "runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\ndebug: false\npull-image-on-create: false\n",
		p.ContainerdSocket, p.ContainerdSocket)
}
