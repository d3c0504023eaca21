//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/imagebuilder"
	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/pluginimage"
	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

// The plugin's host paths as the DaemonSet mounts them.
const (
	hostHook     = "/opt/netdevice-plugin/bin/netdevice-hook"
	extraPool    = "e2e-extra"
	extraRes     = "networking.k8s.io/" + extraPool
	readyTimeout = 2 * time.Minute
)

// TestCluster installs the plugin as users do, into a cluster brought up from source (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd, the kubelet as a node): the
// image imported into the node's containerd, the README's install block run word for word
// (`kubectl apply -k deploy/overlays/dev`), the DaemonSet's pod Ready through its own /healthz
// probes. Then the scenarios of issue 12 and whereabouts' (issue 13), in order, on that one
// installation; the last one uninstalls it.
func TestCluster(t *testing.T) {
	p := pluginBinaries(t)
	st := newCluster(t, "cluster")
	k := newKube(t, st, false)
	timing("cluster-up", startTimes(st)...)
	k.install(t, p)
	tok := token(t)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"1-seed-demo", k.seedDemo},
		{"2-pending", k.scenarioPending},
		{"3-configmap", func(t *testing.T) { k.scenarioConfigMap(t, tok) }},
		{"4-rollout-restart", k.scenarioRolloutRestart},
		{"5-whereabouts", func(t *testing.T) { k.scenarioWhereabouts(t, tok) }},
		{"6-uninstall", func(t *testing.T) { k.scenarioUninstall(t, p) }},
	}
	for _, s := range steps {
		if !t.Run("cluster-"+s.name, s.run) && s.name != "6-uninstall" {
			// the scenarios share one installation: what follows a failure would only fail for it
			t.Fatalf("scenario %s failed; the later ones need what it left", s.name)
		}
	}
}

// startTimes turns the stack's start steps into timing pairs, with their sum.
func startTimes(st *stack.Stack) []any {
	var kv []any
	var total time.Duration
	for _, s := range st.StartTimes() {
		kv = append(kv, s.Name, s.D)
		total += s.D
	}
	return append(kv, "total_ms", total)
}

// install builds the plugin's image from the image layout (what the Dockerfile builds) with the
// binaries under test, imports it into the node's containerd under the name the overlay gives it,
// runs the README's install block and checks what the DaemonSet did on the node.
func (k *kube) install(t *testing.T, p plugin) {
	t.Helper()
	ctx := context.Background()
	k.section("The image: " + pluginimage.LayoutFile + "'s layout (the Dockerfile's), built and imported into the node's containerd")
	t0 := time.Now()
	layout, err := pluginimage.Load(filepath.Join(k.root, pluginimage.LayoutFile))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := pluginimage.Render(filepath.Join(k.root, pluginimage.OverlayDir))
	if err != nil {
		t.Fatal(err)
	}
	refs := pluginimage.Images(objs)
	if len(refs) != 1 {
		t.Fatalf("%s names images %v, want one", pluginimage.OverlayDir, refs)
	}
	img, err := layout.Image(refs[0], map[string]string{"netdevice-plugin": p.Daemon, "netdevice-hook": p.Hook})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(k.st.Paths.Images, "netdevice-plugin.tar")
	if _, err := imagebuilder.WriteLayoutFile(file, img); err != nil {
		t.Fatal(err)
	}
	if err := k.st.ImportImage(ctx, file); err != nil {
		t.Fatal(err)
	}
	image := time.Since(t0)
	k.note(t, fmt.Sprintf("%s: %d files, user %s, entrypoint %v, in %v", refs[0], len(img.Entries), img.User, img.Entrypoint, image.Round(time.Millisecond)))

	k.section("Install the device plugin (README: Install in a cluster)")
	t0 = time.Now()
	for _, line := range readmeBlock(t, k.root, "install") {
		k.sh(t, line)
	}
	installed := time.Since(t0)
	pod := k.pluginPod(t)

	// Ready through its own probes: the kubelet sets Ready only once the readiness probe passed,
	// and the probe is the manifest's GET /healthz on the metrics port
	c := pod.Spec.Containers[0]
	if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz" || rp.HTTPGet.Port.IntValue() != metricsPort || rp.HTTPGet.Host != "127.0.0.1" {
		t.Errorf("plugin container's readiness probe %+v: want GET /healthz on 127.0.0.1:%d", rp, metricsPort)
	}
	if out, err := nodeLocal(ctx, "/healthz"); err != nil || !strings.HasPrefix(out, "ok") {
		t.Errorf("the plugin's /healthz on the node = %q, %v", out, err)
	}
	// Unauthenticated, so bound to the node itself: the node's address (the API server's pod proxy
	// goes there) does not answer.
	if out, err := k.kubectl(ctx, "get", "--raw", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:%d/proxy/healthz", pluginNS, pod.Name, metricsPort)); err == nil {
		t.Errorf("/healthz answers on the node's address through the API server (%q): want it on 127.0.0.1 only", out)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Errorf("container %s restarted %d times (liveness probe?)", cs.Name, cs.RestartCount)
		}
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			t.Errorf("init container %s: %+v, want it finished with 0", cs.Name, cs.State)
		}
	}
	// the init container put the hook on the host where the CDI specs name it
	want, err := os.ReadFile(p.Hook)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(hostHook); err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s on the host: %v; want the image's netdevice-hook (%d bytes, got %d)", hostHook, err, len(want), len(got))
	}
	// registered: the pool is on the node, empty until dummy0 exists
	if err := poll(ctx, time.Minute, 100*time.Millisecond, func(ctx context.Context) error {
		n, err := k.node(ctx)
		if err != nil {
			return err
		}
		if q, ok := n.Status.Capacity[corev1.ResourceName(seedResource)]; !ok || !q.IsZero() {
			return fmt.Errorf("node capacity %s = %v (listed %v), want 0: registered, no device yet", seedResource, q.String(), ok)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	registered := time.Since(t0)
	timing("cluster-install", "image_ms", image, "install_ms", installed, "registered_ms", registered)
}

// seedPodYAML is the seed demo's pod spec with only the image changed: the local stand-in, which the
// node's containerd has (the default pull policy, IfNotPresent, finds it there).
func seedPodYAML(t *testing.T) string {
	t.Helper()
	const img = "    image: registry.k8s.io/e2e-test-images/agnhost:2.40\n"
	if !strings.Contains(seedPod, img) {
		t.Fatal("seed pod spec lost its image line")
	}
	return strings.Replace(seedPod, img, "    image: "+stack.PodImage+"\n", 1)
}

// seedDemo is the seed README's flow on this cluster: dummy0 with 192.168.8.8/32 on the node, the
// node offering networking.k8s.io/netdevice: 1, the seed's pod scheduled there and Running with
// dummy0 inside, and dummy0 home again when the pod is deleted. `make demo` shows it to a person.
func (k *kube) seedDemo(t *testing.T) {
	ctx := context.Background()
	node := k.st.Opts.NodeName
	k.section("Create one dummy interface on the node")
	// recorded before it exists: the stack's teardown deletes it; the later scenarios use it
	if err := k.st.TrackLink("dummy0"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.try(t, "ip link add dummy0 type dummy"); err != nil {
		k.note(t, "this kernel has no dummy link type; an ifb link stands in for it, and moves between namespaces the same way")
		k.sh(t, "ip link add dummy0 type ifb")
	}
	k.sh(t, "ip addr add 192.168.8.8/32 dev dummy0")
	k.sh(t, "ip link set dummy0 up")
	created := time.Now()
	k.sh(t, "ip addr show dummy0")

	k.section("It will be presented as a resource on the Node")
	k.waitAllocatable(t, map[string]string{seedResource: "1"}, time.Minute)
	offered := time.Since(created)
	out := k.sh(t, "kubectl get nodes "+node+" -o json | jq .status.allocatable")
	if !strings.Contains(out, `"networking.k8s.io/netdevice": "1"`) {
		t.Errorf("node allocatable as jq prints it lacks networking.k8s.io/netdevice: 1:\n%s", out)
	}

	k.section("Now you can request that netdevice specifying it in the pod spec")
	dir := k.st.Paths.Home
	if err := os.WriteFile(filepath.Join(dir, "test.yaml"), []byte(seedPodYAML(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	k.shIn(t, dir, "cat test.yaml")
	applied := time.Now()
	k.shIn(t, dir, "kubectl apply -f test.yaml")
	k.sh(t, "kubectl wait --for=condition=Ready pod/test --timeout=120s")
	ready := time.Since(applied)
	pod, err := k.pod(ctx, "default", "test")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != node || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("pod test: node %q phase %s, want scheduled to %s and Running", pod.Spec.NodeName, pod.Status.Phase, node)
	}
	if sched := podCondition(pod, corev1.PodScheduled); sched.Status != corev1.ConditionTrue {
		t.Errorf("pod test PodScheduled = %+v", sched)
	}

	k.section("and see how the interface was moved inside the Pod")
	out = k.sh(t, "kubectl exec test -- ip a")
	links := parseIPAddr(out)
	if l, ok := links["dummy0"]; !ok || !l.up() || !l.hasAddr(seedAddr) {
		t.Errorf("kubectl exec test -- ip a: dummy0 = %+v (present %v), want it up with %s", l, ok, seedAddr)
	}
	if onHost("dummy0") {
		t.Error("dummy0 is still on the node while the pod holds it")
	}
	if k.demo && *hold > 0 {
		fmt.Printf("(holding pod test for %v: export KUBECONFIG=%s; %s get pods -A)\n", *hold, k.st.Paths.AdminKubeconfig(), k.st.Opts.Bins.Kubectl)
		time.Sleep(*hold)
	}

	k.section("Delete the pod: dummy0 comes home")
	home := k.deleteAndWaitHome(t, "kubectl delete pod test", homeLink{"dummy0", seedAddr})
	k.sh(t, "ip addr show dummy0")
	k.waitAllocatable(t, map[string]string{seedResource: "1"}, 30*time.Second)
	timing("cluster-1-seed-demo", "offered_ms", offered, "ready_ms", ready, "home_ms", home)
}

// deleteAndWaitHome runs a command that deletes a pod holding the links and returns how long after
// it began the links were back on the host, up, with their addresses.
func (k *kube) deleteAndWaitHome(t *testing.T, line string, links ...homeLink) time.Duration {
	t.Helper()
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Name
	}
	start := time.Now()
	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result, 1)
	go func() {
		at, err := waitOnHost(context.Background(), names, homeTimeout)
		done <- result{at, err}
	}()
	k.sh(t, line)
	r := <-done
	if r.err != nil {
		t.Fatalf("after %s: %v", line, r.err)
	}
	for _, l := range links {
		if err := poll(context.Background(), 10*time.Second, 20*time.Millisecond, func(context.Context) error { return hostLinkReady(l.Name, l.Addr) }); err != nil {
			t.Errorf("after %s: %v", line, err)
		}
	}
	return r.at.Sub(start)
}

// section and note print for a person in the demo, and to the log in the scenarios.
func (k *kube) section(title string) {
	if k.demo {
		fmt.Printf("\n=== %s ===\n", title)
	}
}

func (k *kube) note(t *testing.T, msg string) {
	t.Helper()
	if k.demo {
		fmt.Printf("(%s)\n", msg)
		return
	}
	t.Log(msg)
}

// scenarioPending: a pod asking for more than any node has stays Pending, and the scheduler says
// why: Insufficient networking.k8s.io/netdevice.
func (k *kube) scenarioPending(t *testing.T) {
	ctx := context.Background()
	applied := time.Now()
	k.apply(t, podManifest("greedy", map[string]int{seedResource: 2}))
	t.Cleanup(func() {
		_, _ = k.kubectl(context.Background(), "delete", "pod", "greedy", "--ignore-not-found", "--wait=false")
	})
	var pod corev1.Pod
	err := poll(ctx, time.Minute, 100*time.Millisecond, func(ctx context.Context) error {
		var err error
		if pod, err = k.pod(ctx, "default", "greedy"); err != nil {
			return err
		}
		c := podCondition(pod, corev1.PodScheduled)
		if c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
			return fmt.Errorf("pod greedy PodScheduled = %+v, want False/Unschedulable", c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	unschedulable := time.Since(applied)
	msg := podCondition(pod, corev1.PodScheduled).Message
	if !strings.Contains(msg, "Insufficient "+seedResource) {
		t.Errorf("scheduler's reason %q, want Insufficient %s", msg, seedResource)
	}
	k.show(t, "kubectl get pod greedy -o jsonpath='{.status.conditions[0].message}'", msg)
	// it stays so: not bound, not started, the device still free
	time.Sleep(3 * time.Second)
	if pod, err = k.pod(ctx, "default", "greedy"); err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
		t.Errorf("pod greedy: phase %s node %q, want Pending and unbound", pod.Status.Phase, pod.Spec.NodeName)
	}
	if !onHost("dummy0") {
		t.Error("dummy0 left the node for a pod that was never scheduled")
	}
	k.sh(t, "kubectl delete pod greedy")
	k.waitAllocatable(t, map[string]string{seedResource: "1"}, 10*time.Second)
	timing("cluster-2-pending", "unschedulable_ms", unschedulable)
}

// apply applies a manifest given on stdin, as `kubectl apply -f - <<EOF` does.
func (k *kube) apply(t *testing.T, manifest []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := k.st.KubectlIn(ctx, manifest, "apply", "-f", "-")
	k.show(t, "kubectl apply -f - <<EOF\n"+string(manifest)+"EOF", out)
	if err != nil {
		t.Fatal(err)
	}
}

// configMap renders the plugin's ConfigMap with a config of the given pools.
func configMap(config string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  config.yaml: |\n", pluginCM, pluginNS)
	for _, l := range strings.Split(strings.TrimRight(config, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return []byte(b.String())
}

// scenarioConfigMap: ConfigMap edits reach the running daemon through the kubelet's update of the
// projected volume: a pool added, then one removed, each followed by the node's allocatable; an
// invalid edit keeps the pools and says so in the daemon's log and metrics; the install's config
// comes back with the install's command.
func (k *kube) scenarioConfigMap(t *testing.T, tok string) {
	ctx := context.Background()
	extra := "nd" + tok + "x0"
	addHostLink(t, k.st, hostLink{Name: extra})
	pod := k.pluginPod(t).Name
	before, err := k.metrics(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	seed := "resourceList:\n  - resourceName: netdevice\n    selectors:\n      - ifNames: [\"dummy*\"]\n"
	extraPoolCfg := fmt.Sprintf("  - resourceName: %s\n    selectors:\n      - ifNames: [\"nd%sx*\"]\n", extraPool, tok)

	// a pool added
	t0 := time.Now()
	k.apply(t, configMap(seed+extraPoolCfg))
	k.waitAllocatable(t, map[string]string{seedResource: "1", extraRes: "1"}, 2*time.Minute)
	added := time.Since(t0)

	// a pool removed: its server stops, its CDI spec goes
	t0 = time.Now()
	k.apply(t, configMap("resourceList:\n"+extraPoolCfg))
	k.waitAllocatable(t, map[string]string{seedResource: "0", extraRes: "1"}, 2*time.Minute)
	removed := time.Since(t0)
	if err := poll(ctx, 10*time.Second, 100*time.Millisecond, func(context.Context) error {
		if _, err := os.Stat(filepath.Join(stack.HostCDIDir, "networking.k8s.io-netdevice.json")); err == nil {
			return fmt.Errorf("the removed pool's CDI spec is still in %s", stack.HostCDIDir)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// an invalid edit, with kubectl edit: the "editor" renames the pool to a name the kubelet
	// refuses as an extended resource (a qualified name must end with a letter or digit)
	editor := filepath.Join(k.st.Paths.Home, "editor")
	if err := os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/resourceName: "+extraPool+"/resourceName: invalid_/' \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	k.shIn(t, k.st.Paths.Home, "cat editor")
	t0 = time.Now()
	k.shIn(t, k.st.Paths.Home, "KUBE_EDITOR=./editor kubectl -n "+pluginNS+" edit configmap "+pluginCM)
	cm, err := k.kubectl(ctx, "-n", pluginNS, "get", "configmap", pluginCM, "-o", "jsonpath={.data.config\\.yaml}")
	if err != nil || !strings.Contains(cm, "resourceName: invalid_") {
		t.Fatalf("the edit did not land: %q, %v", cm, err)
	}
	const rejectedKey = `netdevice_plugin_config_loads_total{result="rejected"}`
	err = poll(ctx, 2*time.Minute, 200*time.Millisecond, func(ctx context.Context) error {
		m, err := k.metrics(ctx, pod)
		if err != nil {
			return err
		}
		if m[rejectedKey] <= before[rejectedKey] {
			return fmt.Errorf("%s = %v, was %v", rejectedKey, m[rejectedKey], before[rejectedKey])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the invalid config was not rejected: %v", err)
	}
	rejected := time.Since(t0)
	logs, err := k.pluginLogs(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "Config rejected; keeping the current pools") {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, "invalid_") {
		t.Errorf("daemon log has no rejection naming the bad resource name; last rejection line %q", line)
	}
	k.show(t, "kubectl -n "+pluginNS+" logs "+pod+" | grep 'Config rejected'", line)
	// the old pools stay, served and offered
	time.Sleep(2 * time.Second)
	k.waitAllocatable(t, map[string]string{seedResource: "0", extraRes: "1"}, 5*time.Second)
	if p := k.pluginPod(t); p.Name != pod {
		t.Errorf("the plugin pod changed from %s to %s", pod, p.Name)
	}

	// the install's config back, with the install's own command
	t0 = time.Now()
	k.sh(t, readmeBlock(t, k.root, "install")[0])
	k.waitAllocatable(t, map[string]string{seedResource: "1", extraRes: "0"}, 2*time.Minute)
	restored := time.Since(t0)
	after, err := k.metrics(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if applied := `netdevice_plugin_config_loads_total{result="applied"}`; after[applied] < before[applied]+3 {
		t.Errorf("%s = %v, was %v: want three more (added, removed, restored)", applied, after[applied], before[applied])
	}
	timing("cluster-3-configmap", "added_ms", added, "removed_ms", removed, "rejected_ms", rejected, "restored_ms", restored)
}

// scenarioRolloutRestart: `kubectl rollout restart` of the DaemonSet while a pod holds dummy0: the
// pod keeps its link, the device stays allocated to it and Healthy in the new daemon's pool (a pod
// asking for it waits), and when the holder is deleted dummy0 is free again and the waiting pod
// gets it.
func (k *kube) scenarioRolloutRestart(t *testing.T) {
	ctx := context.Background()
	k.apply(t, podManifest("holder", map[string]int{seedResource: 1}))
	t.Cleanup(func() {
		_, _ = k.kubectl(context.Background(), "delete", "pod", "holder", "waiter", "--ignore-not-found")
	})
	holder := k.waitPodReady(t, "default", "holder", readyTimeout)
	if links, out, err := k.execLinks(ctx, "holder"); err != nil || !links["dummy0"].hasAddr(seedAddr) {
		t.Fatalf("holder has no dummy0 with %s: %v\n%s", seedAddr, err, out)
	}
	old := k.pluginPod(t)

	t0 := time.Now()
	k.sh(t, "kubectl -n "+pluginNS+" rollout restart daemonset/"+pluginDS)
	k.sh(t, "kubectl -n "+pluginNS+" rollout status daemonset/"+pluginDS+" --timeout=180s")
	restarted := time.Since(t0)
	k.waitGone(t, time.Minute, "-n", pluginNS, "pod", old.Name)
	cur := k.pluginPod(t)
	if cur.UID == old.UID {
		t.Fatalf("the plugin pod %s was not replaced", cur.Name)
	}

	// the pod kept its link, in the same container
	now, err := k.pod(ctx, "default", "holder")
	if err != nil {
		t.Fatal(err)
	}
	if !podReady(now) || now.Status.ContainerStatuses[0].RestartCount != 0 || now.Status.ContainerStatuses[0].ContainerID != holder.Status.ContainerStatuses[0].ContainerID {
		t.Errorf("holder after the restart: ready %v, container %+v; want the same container, Ready", podReady(now), now.Status.ContainerStatuses)
	}
	if links, out, err := k.execLinks(ctx, "holder"); err != nil || !links["dummy0"].up() || !links["dummy0"].hasAddr(seedAddr) {
		t.Errorf("holder lost dummy0 over the restart: %v\n%s", err, out)
	}
	if onHost("dummy0") {
		t.Error("dummy0 is on the node while the holder has it")
	}
	// still allocated, and Healthy: the node offers it (allocatable counts healthy devices, taken or
	// not), the kubelet has it allocated to the holder, the new daemon serves it healthy
	reoffered := k.waitAllocatable(t, map[string]string{seedResource: "1"}, time.Minute)
	if err := poll(ctx, 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		alloc, err := k.st.Allocatable(ctx)
		if err != nil {
			return err
		}
		used, err := k.st.InUse(ctx)
		if err != nil {
			return err
		}
		if !slices.Equal(alloc[seedResource], []string{"dummy0"}) || !slices.Equal(used[seedResource], []string{"dummy0"}) {
			return fmt.Errorf("kubelet: allocatable %v, allocated %v; want dummy0 both", alloc[seedResource], used[seedResource])
		}
		m, err := k.metrics(ctx, cur.Name)
		if err != nil {
			return err
		}
		for key, want := range map[string]float64{
			`netdevice_plugin_pool_capacity{resource="networking.k8s.io/netdevice"}`:  1,
			`netdevice_plugin_pool_unhealthy{resource="networking.k8s.io/netdevice"}`: 0,
			`netdevice_plugin_registered{resource="networking.k8s.io/netdevice"}`:     1,
		} {
			if v, ok := m[key]; !ok || v != want {
				return fmt.Errorf("new daemon's %s = %v (present %v), want %v", key, v, ok, want)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// a second pod waits for the device: it is taken
	k.apply(t, podManifest("waiter", map[string]int{seedResource: 1}))
	if err := poll(ctx, time.Minute, 100*time.Millisecond, func(ctx context.Context) error {
		w, err := k.pod(ctx, "default", "waiter")
		if err != nil {
			return err
		}
		if c := podCondition(w, corev1.PodScheduled); c.Reason != corev1.PodReasonUnschedulable || !strings.Contains(c.Message, "Insufficient "+seedResource) {
			return fmt.Errorf("waiter PodScheduled = %+v, want Unschedulable: Insufficient %s", c, seedResource)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// free again once the holder is gone: dummy0 comes home (briefly) and the waiter gets it, with
	// its address
	t0 = time.Now()
	k.sh(t, "kubectl delete pod holder")
	k.waitPodReady(t, "default", "waiter", readyTimeout)
	reused := time.Since(t0)
	if links, out, err := k.execLinks(ctx, "waiter"); err != nil || !links["dummy0"].up() || !links["dummy0"].hasAddr(seedAddr) {
		t.Errorf("waiter has no dummy0 up with %s: %v\n%s", seedAddr, err, out)
	}
	home := k.deleteAndWaitHome(t, "kubectl delete pod waiter", homeLink{"dummy0", seedAddr})
	timing("cluster-4-rollout-restart", "restart_ms", restarted, "reoffered_ms", restarted+reoffered, "reused_ms", reused, "home_ms", home)
}

// leftoverRoots are the host folders the plugin writes to; of what it created there, only what the
// README's uninstall section lists may stay after `kubectl delete -k`.
var leftoverRoots = []string{"/opt/netdevice-plugin", "/run/netdevice-plugin", stack.HostCDIDir,
	"/var/lib/kubelet/device-plugins", "/var/lib/kubelet/plugins_registry"}

// kubeletOwn are the kubelet's own files in those folders.
var kubeletOwn = []string{"/var/lib/kubelet/device-plugins/kubelet.sock", "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"}

// scenarioUninstall: the README's uninstall block (`kubectl delete -k deploy/overlays/dev`) takes
// the node's resources to zero, and what the plugin leaves on the node is exactly the README's list.
func (k *kube) scenarioUninstall(t *testing.T, p plugin) {
	ctx := context.Background()
	resources := []string{seedResource, extraRes, wbRes}
	t0 := time.Now()
	for _, line := range readmeBlock(t, k.root, "uninstall") {
		k.sh(t, line)
	}
	deleted := time.Since(t0)
	k.waitGone(t, 2*time.Minute, "namespace", pluginNS)
	zero := map[string]string{}
	for _, r := range resources {
		zero[r] = "0"
	}
	k.waitAllocatable(t, zero, 2*time.Minute)
	zeroed := time.Since(t0)
	if n, err := k.node(ctx); err != nil {
		t.Error(err)
	} else {
		for name, q := range n.Status.Allocatable {
			if strings.HasPrefix(string(name), "networking.k8s.io/") && !q.IsZero() {
				t.Errorf("node allocatable %s = %s after the uninstall", name, q.String())
			}
		}
	}

	// what is left: exactly the README's list, each entry present
	patterns := readmeBlock(t, k.root, "leftovers")
	var left []string
	for _, root := range leftoverRoots {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !slices.Contains(kubeletOwn, path) && !k.st.ExistedBefore(path) {
				left = append(left, path)
			}
			return nil
		})
	}
	k.show(t, "find "+strings.Join(leftoverRoots, " ")+" -type f", strings.Join(left, "\n"))
	matched := make([]bool, len(patterns))
	for _, f := range left {
		ok := false
		for i, line := range patterns {
			pat := strings.Fields(line)[0]
			glob := leftoverGlob(pat)
			if m, _ := filepath.Match(glob, f); m {
				matched[i], ok = true, true
			}
		}
		if !ok {
			t.Errorf("%s is left on the node, and the README's list does not say so", f)
		}
	}
	for i, m := range matched {
		if !m {
			t.Errorf("the README says %q is left on the node; nothing is", patterns[i])
		}
	}
	if got, err := os.ReadFile(hostHook); err == nil {
		if want, _ := os.ReadFile(p.Hook); !bytes.Equal(got, want) {
			t.Errorf("%s is not the installed hook", hostHook)
		}
	}
	timing("cluster-6-uninstall", "delete_ms", deleted, "zero_ms", zeroed)
}

// leftoverGlob turns a README path with <placeholders> into a glob.
func leftoverGlob(p string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(p, '<')
		j := strings.IndexByte(p, '>')
		if i < 0 || j < i {
			b.WriteString(p)
			return b.String()
		}
		b.WriteString(p[:i] + "*")
		p = p[j+1:]
	}
}
