package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

const deployDir = "../../deploy"

// splitYAML splits a multi-document stream.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// decodeStrict decodes one manifest into its k8s.io/api type; an unknown or misspelt field fails.
func decodeStrict(t *testing.T, doc []byte) any {
	t.Helper()
	var meta struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		t.Fatalf("manifest is not YAML: %v\n%s", err, doc)
	}
	var obj any
	switch meta.Kind {
	case "Namespace":
		obj = &corev1.Namespace{}
	case "ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "ConfigMap":
		obj = &corev1.ConfigMap{}
	case "Pod":
		obj = &corev1.Pod{}
	case "DaemonSet":
		obj = &appsv1.DaemonSet{}
	default:
		t.Fatalf("manifest of kind %q: no type to check it against", meta.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s does not decode strictly: %v", meta.Kind, err)
	}
	return obj
}

// kustomizeBuild renders deploy/ as `kubectl apply -k deploy/` would.
func kustomizeBuild(t *testing.T) []byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), deployDir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", deployDir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeployManifests renders the kustomization, decodes every object strictly and checks that the
// DaemonSet's pieces fit together: flags the binaries accept, mounts with volumes, the hook installed
// where the CDI specs name it, probes on the metrics address, a config the daemon loads.
func TestDeployManifests(t *testing.T) {
	objs := map[string]any{}
	for _, doc := range splitYAML(kustomizeBuild(t)) {
		obj := decodeStrict(t, doc)
		objs[fmt.Sprintf("%T", obj)] = obj
	}
	for _, want := range []string{"*v1.Namespace", "*v1.ServiceAccount", "*v1.ConfigMap", "*v1.DaemonSet"} {
		if objs[want] == nil {
			t.Fatalf("kustomize build has no %s", want)
		}
	}
	ds := objs["*v1.DaemonSet"].(*appsv1.DaemonSet)
	cm := objs["*v1.ConfigMap"].(*corev1.ConfigMap)
	ns := objs["*v1.Namespace"].(*corev1.Namespace)
	if ds.Namespace != ns.Name || cm.Namespace != ns.Name {
		t.Errorf("objects outside namespace %s: daemonset %q configmap %q", ns.Name, ds.Namespace, cm.Namespace)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("daemon must run in the host network namespace (hostNetwork)")
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 {
		t.Fatalf("want one container and one init container, got %d and %d", len(spec.Containers), len(spec.InitContainers))
	}
	c, initC := spec.Containers[0], spec.InitContainers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("daemon container must be privileged (it moves host links)")
	}
	if !strings.HasSuffix(c.Image, ":v0.1.0") || c.Image != initC.Image {
		t.Errorf("images %q and %q: want the kustomization's tag on both", c.Image, initC.Image)
	}

	// The daemon's args are flags it accepts.
	var stderr bytes.Buffer
	f, code := parseDaemonFlagsTo(c.Args, &stderr)
	if f == nil {
		t.Fatalf("daemon rejects the DaemonSet's args %v (exit %d): %s", c.Args, code, stderr.String())
	}
	// The init container installs the hook where the daemon's CDI specs name it.
	if len(initC.Args) == 0 || initC.Args[0] != "install-hook" {
		t.Fatalf("init container args %v: want install-hook", initC.Args)
	}
	_, to, code := parseInstallFlags(initC.Args[1:], io.Discard)
	if code >= 0 {
		t.Fatalf("install-hook rejects %v", initC.Args[1:])
	}
	if to != f.hookPath {
		t.Errorf("hook installed at %s, CDI specs name %s", to, f.hookPath)
	}

	// Every mount has its volume; the host paths the daemon and the hook use are mounted.
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	mountPaths := map[string]string{} // container path -> host path or "configmap"
	for _, m := range append(append([]corev1.VolumeMount{}, c.VolumeMounts...), initC.VolumeMounts...) {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("mount %s has no volume", m.Name)
			continue
		}
		switch {
		case v.HostPath != nil:
			if v.HostPath.Path != m.MountPath {
				t.Errorf("mount %s: host %s at %s: the daemon passes host paths to the runtime, keep them equal", m.Name, v.HostPath.Path, m.MountPath)
			}
			mountPaths[m.MountPath] = v.HostPath.Path
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != cm.Name {
				t.Errorf("mount %s uses ConfigMap %s, the kustomization has %s", m.Name, v.ConfigMap.Name, cm.Name)
			}
			mountPaths[m.MountPath] = "configmap"
		}
	}
	for _, p := range []string{f.devicePluginDir, f.registryDir, f.cdiDir, f.sysfsRoot, filepath.Dir(f.hookPath), "/run/netdevice-plugin"} {
		if _, ok := mountPaths[p]; !ok {
			t.Errorf("%s is not mounted from the host", p)
		}
	}
	if mountPaths[filepath.Dir(f.config)] != "configmap" {
		t.Errorf("--config %s is not in the ConfigMap mount", f.config)
	}
	// The config the daemon will read loads.
	body, ok := cm.Data[filepath.Base(f.config)]
	if !ok {
		t.Fatalf("ConfigMap has no key %s for --config %s", filepath.Base(f.config), f.config)
	}
	cfg, err := config.Parse([]byte(body), f.prefix)
	if err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	if cfg.Resources[0].FullName() != "networking.k8s.io/netdevice" {
		t.Errorf("ConfigMap pool %s, want the seed's networking.k8s.io/netdevice", cfg.Resources[0].FullName())
	}
	// /metrics is unauthenticated: it binds the node-local address only (hostNetwork would expose
	// every node address), and the probes, which the kubelet sends from the node, go there.
	host, port, err := net.SplitHostPort(f.metricsAddr)
	if err != nil {
		t.Fatalf("--metrics-addr %q: %v", f.metricsAddr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("--metrics-addr %q binds beyond the node: want 127.0.0.1", f.metricsAddr)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != port || p.HTTPGet.Host != host {
			t.Errorf("%s probe %+v: want GET /healthz on %s:%s", name, p, host, port)
		}
	}
	// The kubelet's pod-resources socket and the device-information folder are mounted where the
	// daemon's defaults look.
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = true
	}
	for _, want := range []string{filepath.Dir(f.podResources), filepath.Dir(filepath.Dir(f.devinfoDir))} {
		if !mounts[want] {
			t.Errorf("no volume mounted at %s", want)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
}

// Each file on its own decodes strictly too (someone may apply one without kustomize).
func TestDeployFilesDecodeStrictly(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(deployDir, "base", "*.yaml"))
	files = append(files, filepath.Join(deployDir, "kind", "demo-pod.yaml"))
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range splitYAML(data) {
			decodeStrict(t, doc)
		}
	}
}

// The kind demo: a cluster config kind accepts, containerd with CDI on, and the seed's pod asking
// for one networking.k8s.io/netdevice.
func TestKindDemo(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "kind", "kind-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cluster v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(data, &cluster); err != nil {
		t.Fatalf("kind config: %v", err)
	}
	if cluster.Kind != "Cluster" || cluster.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Errorf("kind config is %s %s", cluster.APIVersion, cluster.Kind)
	}
	workers := 0
	for _, n := range cluster.Nodes {
		if n.Role == v1alpha4.WorkerRole {
			workers++
		}
	}
	if workers == 0 {
		t.Error("kind config has no worker for the dummy link")
	}
	if len(cluster.ContainerdConfigPatches) != 1 {
		t.Fatalf("want one containerd patch, got %d", len(cluster.ContainerdConfigPatches))
	}
	patch, err := toml.Load(cluster.ContainerdConfigPatches[0])
	if err != nil {
		t.Fatalf("containerd patch is not TOML: %v", err)
	}
	if on, _ := patch.GetPath([]string{"plugins", "io.containerd.grpc.v1.cri", "enable_cdi"}).(bool); !on {
		t.Error("containerd patch does not set enable_cdi = true")
	}
	dirs, _ := patch.GetPath([]string{"plugins", "io.containerd.grpc.v1.cri", "cdi_spec_dirs"}).([]any)
	if !strings.Contains(fmt.Sprint(dirs), "/var/run/cdi") {
		t.Errorf("containerd cdi_spec_dirs %v lacks /var/run/cdi, where the daemon writes", dirs)
	}

	data, err = os.ReadFile(filepath.Join(deployDir, "kind", "demo-pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pod := decodeStrict(t, data).(*corev1.Pod)
	limit := pod.Spec.Containers[0].Resources.Limits["networking.k8s.io/netdevice"]
	if limit.Value() != 1 {
		t.Errorf("demo pod asks for %v networking.k8s.io/netdevice, want 1", limit.String())
	}
}
