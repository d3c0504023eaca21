package stack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// tomlValues reads "key = value" lines of a TOML file into "table.key" -> raw value. Enough for the
// flat tables the template writes; the real parser is containerd itself (smoke test).
func tomlValues(t *testing.T, data []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			table = strings.Trim(line, "[]")
		case strings.Contains(line, "="):
			k, v, _ := strings.Cut(line, "=")
			key := strings.TrimSpace(k)
			if table != "" {
				key = table + "." + key
			}
			if _, dup := out[key]; dup {
				t.Errorf("TOML key %s set twice", key)
			}
			out[key] = strings.TrimSpace(v)
		}
	}
	return out
}

func TestContainerdConfig(t *testing.T) {
	p := NewPaths("/w")
	data, err := ContainerdConfig(p, "localhost/x/pause:e2e", "/usr/sbin/runc", "/cache/cni/bin")
	if err != nil {
		t.Fatal(err)
	}
	got := tomlValues(t, data)
	const cri = `plugins."io.containerd.cri.v1.runtime"`
	tests := []struct{ key, want string }{
		{"version", "3"},
		{"root", `"/w/containerd/root"`},
		{"state", `"/w/containerd/state"`},
		{"imports", "[]"},
		{"grpc.address", `"/w/containerd/containerd.sock"`},
		{`plugins."io.containerd.internal.v1.opt".path`, `"/w/containerd/opt"`},
		{`plugins."io.containerd.cri.v1.images".snapshotter`, `"overlayfs"`},
		{`plugins."io.containerd.cri.v1.images".pinned_images.sandbox`, `"localhost/x/pause:e2e"`},
		{cri + ".enable_cdi", "true"},
		{cri + ".cdi_spec_dirs", `["/w/cdi"]`},
		{cri + ".restrict_oom_score_adj", "true"},
		{cri + ".disable_apparmor", "true"},
		{cri + ".netns_mounts_under_state_dir", "true"},
		{cri + ".containerd.runtimes.runc.options.BinaryName", `"/usr/sbin/runc"`},
		{cri + ".containerd.runtimes.runc.options.SystemdCgroup", "false"},
		{cri + ".containerd.runtimes.runc.options.Root", `"/w/containerd/runc"`},
		{cri + ".cni.bin_dirs", `["/cache/cni/bin"]`},
		{cri + ".cni.conf_dir", `"/w/cni/net.d"`},
	}
	for _, tt := range tests {
		if got[tt.key] != tt.want {
			t.Errorf("containerd config %s = %q, want %q", tt.key, got[tt.key], tt.want)
		}
	}
	if !bytes.Contains(data, []byte(`"io.containerd.nri.v1.nri",`)) {
		t.Error("containerd config does not disable NRI")
	}
}

func TestKubeletConfig(t *testing.T) {
	p := NewPaths("/w")
	data, err := KubeletConfig(p, Ports{Kubelet: 10250, Healthz: 10248}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(data, &got); err != nil {
		t.Fatalf("kubelet config is not YAML: %v", err)
	}
	tests := []struct {
		key  string
		want any
	}{
		{"kind", "KubeletConfiguration"},
		{"apiVersion", "kubelet.config.k8s.io/v1beta1"},
		{"address", "127.0.0.1"},
		{"port", float64(10250)},
		{"healthzPort", float64(10248)},
		{"readOnlyPort", float64(0)},
		{"staticPodPath", "/w/manifests"},
		{"containerRuntimeEndpoint", "unix:///w/containerd/containerd.sock"},
		{"cgroupDriver", "cgroupfs"},
		{"failSwapOn", false},
		{"failCgroupV1", false},
		{"podLogsDir", "/w/pod-logs"},
		{"volumePluginDir", "/w/volume-plugins"},
		{"imageGCHighThresholdPercent", float64(100)},
		{"imageGCLowThresholdPercent", float64(99)},
		{"makeIPTablesUtilChains", false},
	}
	for _, tt := range tests {
		if got[tt.key] != tt.want {
			t.Errorf("kubelet config %s = %v (%T), want %v", tt.key, got[tt.key], got[tt.key], tt.want)
		}
	}
	authz, _ := got["authorization"].(map[string]any)
	authn, _ := got["authentication"].(map[string]any)
	anon, _ := authn["anonymous"].(map[string]any)
	if authz["mode"] != "AlwaysAllow" || anon["enabled"] != true {
		t.Errorf("kubelet auth = %v / %v, want anonymous + AlwaysAllow", authn, authz)
	}
}

// TestKubeletConfigCluster: a cluster's node serves on its own address with the CA-signed
// certificate, trusts the CA's client certificates, asks the API server (Webhook), runs no static
// pods, and keeps the standalone settings this machine needs.
func TestKubeletConfigCluster(t *testing.T) {
	p := NewClusterPaths("/w")
	id := ClusterIdentity{NodeName: "n", NodeIP: net.ParseIP("10.0.0.9")}
	data, err := KubeletConfig(p, DefaultPorts, &id)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(data, &got); err != nil {
		t.Fatalf("kubelet config is not YAML: %v", err)
	}
	for key, want := range map[string]any{
		"address":                   "10.0.0.9",
		"healthzBindAddress":        "127.0.0.1",
		"tlsCertFile":               "/w/pki/kubelet.crt",
		"tlsPrivateKeyFile":         "/w/pki/kubelet.key",
		"cgroupDriver":              "cgroupfs",
		"failCgroupV1":              false,
		"makeIPTablesUtilChains":    false,
		"nodeStatusUpdateFrequency": "1s",
		"containerRuntimeEndpoint":  "unix:///w/containerd/containerd.sock",
	} {
		if got[key] != want {
			t.Errorf("kubelet config %s = %v, want %v", key, got[key], want)
		}
	}
	if _, ok := got["staticPodPath"]; ok {
		t.Error("a cluster's kubelet has a staticPodPath")
	}
	authn, _ := got["authentication"].(map[string]any)
	anon, _ := authn["anonymous"].(map[string]any)
	webhook, _ := authn["webhook"].(map[string]any)
	x509, _ := authn["x509"].(map[string]any)
	authz, _ := got["authorization"].(map[string]any)
	if anon["enabled"] != false || webhook["enabled"] != true || x509["clientCAFile"] != "/w/pki/ca.crt" || authz["mode"] != "Webhook" {
		t.Errorf("kubelet auth = %v / %v, want the CA's clients, no anonymous, Webhook", authn, authz)
	}
}

func TestCNIConfig(t *testing.T) {
	data, err := CNIConfig(NewPaths("/w"), "ndpe2e0", "10.237.61.0/24")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type      string `json:"type"`
			Bridge    string `json:"bridge"`
			IsGateway bool   `json:"isGateway"`
			IPMasq    bool   `json:"ipMasq"`
			IPAM      struct {
				Type    string                `json:"type"`
				Ranges  [][]map[string]string `json:"ranges"`
				DataDir string                `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("CNI config: %v", err)
	}
	if len(got.Plugins) != 1 {
		t.Fatalf("CNI config has %d plugins, want the bridge only", len(got.Plugins))
	}
	b := got.Plugins[0]
	if b.Type != "bridge" || b.Bridge != "ndpe2e0" || b.IsGateway || b.IPMasq {
		t.Errorf("bridge plugin = %+v, want bridge ndpe2e0 without gateway or masquerading", b)
	}
	if b.IPAM.Type != "host-local" || b.IPAM.DataDir != "/w/cni/ipam" || len(b.IPAM.Ranges) != 1 || b.IPAM.Ranges[0][0]["subnet"] != "10.237.61.0/24" {
		t.Errorf("IPAM = %+v", b.IPAM)
	}
}

func TestCrictlConfig(t *testing.T) {
	var got map[string]any
	if err := yaml.Unmarshal(CrictlConfig(NewPaths("/w")), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"runtime-endpoint", "image-endpoint"} {
		if got[k] != "unix:///w/containerd/containerd.sock" {
			t.Errorf("crictl %s = %v", k, got[k])
		}
	}
}

func TestPaths(t *testing.T) {
	p := NewPaths("/w")
	if p.PodResourcesSocket() != "/w/kubelet/pod-resources/kubelet.sock" || p.PluginsRegistryDir() != "/w/kubelet/plugins_registry" {
		t.Errorf("kubelet sockets: %s, %s", p.PodResourcesSocket(), p.PluginsRegistryDir())
	}
	// a cluster node's kubelet and runtime use the host paths the DaemonSet mounts
	c := NewClusterPaths("/w")
	if c.PluginsRegistryDir() != "/var/lib/kubelet/plugins_registry" || c.PodResourcesSocket() != "/var/lib/kubelet/pod-resources/kubelet.sock" || c.CDIDir != "/var/run/cdi" {
		t.Errorf("cluster paths: %s, %s, %s", c.PluginsRegistryDir(), c.PodResourcesSocket(), c.CDIDir)
	}
	if c.ContainerdRoot != p.ContainerdRoot || c.AdminKubeconfig() != "/w/kubeconfig/admin.conf" || c.PKIFile("ca.crt") != "/w/pki/ca.crt" {
		t.Errorf("cluster private paths: %+v", c)
	}
	if st := (State{Work: "/w", Cluster: true}); st.Paths() != c {
		t.Errorf("State.Paths of a cluster = %+v", st.Paths())
	}
}

func TestNewRejectsLongWorkFolder(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "crictl", "bridge", "host-local", "loopback", "runc", "busybox", "agnhost", "pause"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j := func(f string) string { return filepath.Join(dir, f) }
	b := Binaries{Kubelet: j("kubelet"), Containerd: j("containerd"), Crictl: j("crictl"), CNIBinDir: dir,
		Runc: j("runc"), Busybox: j("busybox"), Agnhost: j("agnhost"), Pause: j("pause")}
	if _, err := New(Options{Work: "/var/tmp/ndp-e2e/AbC123/scenarios", Bins: b}); err != nil {
		t.Errorf("New with run.sh's work folder: %v", err)
	}
	long := "/var/tmp/" + strings.Repeat("x", 60)
	if _, err := New(Options{Work: long, Bins: b}); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("New(%s) = %v, want a too-long error", long, err)
	}
	if _, err := New(Options{Work: "relative", Bins: b}); err == nil {
		t.Error("New accepted a relative work folder")
	}
}
