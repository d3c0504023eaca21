//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/pluginimage"
	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

// The plugin as deploy/ installs it.
const (
	pluginNS       = "netdevice-plugin"
	pluginDS       = "netdevice-plugin"
	pluginSelector = "app.kubernetes.io/name=netdevice-plugin"
	pluginCM       = "netdevice-plugin-config"
	metricsPort    = 9402
)

// kube drives a cluster the way a person does: kubectl as the administrator, commands run in the
// repository root (kubectl apply -k deploy/...), the README's blocks word for word. Every command
// and its output is shown: on stdout for the demo, in the test log for the scenarios.
type kube struct {
	st   *stack.Stack
	root string // the repository root
	demo bool
}

func newKube(t *testing.T, st *stack.Stack, demo bool) *kube {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, pluginimage.LayoutFile)); err != nil {
		t.Fatalf("repository root %s: %v (run the test from test/e2e, as run.sh does)", root, err)
	}
	return &kube{st: st, root: root, demo: demo}
}

// show prints a command and its output as a terminal would.
func (k *kube) show(t *testing.T, line, out string) {
	t.Helper()
	out = strings.TrimRight(out, "\n")
	if k.demo {
		fmt.Printf("$ %s\n", line)
		if out != "" {
			fmt.Println(out)
		}
		return
	}
	t.Logf("$ %s\n%s", line, out)
}

// sh runs one command line in the repository root, shows it, and fails the test when it fails.
func (k *kube) sh(t *testing.T, line string, env ...string) string {
	t.Helper()
	return k.shIn(t, k.root, line, env...)
}

// shIn is sh in another folder.
func (k *kube) shIn(t *testing.T, dir, line string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := k.st.Shell(ctx, dir, line, env...)
	k.show(t, line, out)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// try runs a command line and shows it; it returns the error instead of failing.
func (k *kube) try(t *testing.T, line string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := k.st.Shell(ctx, k.root, line)
	k.show(t, line, out)
	return out, err
}

// kubectl runs kubectl quietly (the test's own look at the cluster) and returns stdout.
func (k *kube) kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return k.st.Kubectl(ctx, args...)
}

// get decodes `kubectl get ... -o json` into into.
func (k *kube) get(ctx context.Context, into any, args ...string) error {
	out, err := k.kubectl(ctx, append(append([]string{"get"}, args...), "-o", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), into); err != nil {
		return fmt.Errorf("decode kubectl get %v: %w", args, err)
	}
	return nil
}

// node returns the cluster's one node.
func (k *kube) node(ctx context.Context) (corev1.Node, error) {
	var n corev1.Node
	err := k.get(ctx, &n, "node", k.st.Opts.NodeName)
	return n, err
}

// allocatable returns the node's allocatable count of each resource ("" when the node lacks it).
func (k *kube) allocatable(ctx context.Context, resources ...string) (map[string]string, error) {
	n, err := k.node(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range resources {
		if q, ok := n.Status.Allocatable[corev1.ResourceName(r)]; ok {
			out[r] = q.String()
		} else {
			out[r] = ""
		}
	}
	return out, nil
}

// waitAllocatable waits until the node's allocatable counts are the wanted ones ("0" also matches
// a resource the node does not list) and returns how long that took.
func (k *kube) waitAllocatable(t *testing.T, want map[string]string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	names := make([]string, 0, len(want))
	for r := range want {
		names = append(names, r)
	}
	sort.Strings(names)
	err := poll(context.Background(), timeout, 100*time.Millisecond, func(ctx context.Context) error {
		got, err := k.allocatable(ctx, names...)
		if err != nil {
			return err
		}
		for _, r := range names {
			if got[r] != want[r] && !(want[r] == "0" && got[r] == "") {
				return fmt.Errorf("node allocatable %s = %q, want %q (all asked: %v)", r, got[r], want[r], got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s: %v", k.st.Opts.NodeName, err)
	}
	return time.Since(start)
}

// pod returns a pod.
func (k *kube) pod(ctx context.Context, ns, name string) (corev1.Pod, error) {
	var p corev1.Pod
	err := k.get(ctx, &p, "-n", ns, "pod", name)
	return p, err
}

// podReady reports a pod's Ready condition.
func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podCondition returns a pod's condition of that type (zero when it has none).
func podCondition(p corev1.Pod, typ corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.PodCondition{}
}

// waitPodReady waits until the pod is Ready and returns it.
func (k *kube) waitPodReady(t *testing.T, ns, name string, timeout time.Duration) corev1.Pod {
	t.Helper()
	var p corev1.Pod
	err := poll(context.Background(), timeout, 100*time.Millisecond, func(ctx context.Context) error {
		var err error
		if p, err = k.pod(ctx, ns, name); err != nil {
			return err
		}
		if !podReady(p) {
			return fmt.Errorf("pod %s/%s is %s, not Ready (%+v)", ns, name, p.Status.Phase, p.Status.Conditions)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitGone waits until the object no longer exists.
func (k *kube) waitGone(t *testing.T, timeout time.Duration, args ...string) {
	t.Helper()
	err := poll(context.Background(), timeout, 200*time.Millisecond, func(ctx context.Context) error {
		out, err := k.kubectl(ctx, append(append([]string{"get"}, args...), "--ignore-not-found", "-o", "name")...)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("%s still exists", strings.TrimSpace(out))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pluginPods returns the DaemonSet's pods that are not being deleted.
func (k *kube) pluginPods(ctx context.Context) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := k.get(ctx, &list, "-n", pluginNS, "pods", "-l", pluginSelector); err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// pluginPod returns the DaemonSet's one pod on the node, once it is Ready.
func (k *kube) pluginPod(t *testing.T) corev1.Pod {
	t.Helper()
	var p corev1.Pod
	err := poll(context.Background(), 2*time.Minute, 200*time.Millisecond, func(ctx context.Context) error {
		pods, err := k.pluginPods(ctx)
		if err != nil {
			return err
		}
		if len(pods) != 1 || !podReady(pods[0]) {
			return fmt.Errorf("want one Ready plugin pod, have %d", len(pods))
		}
		p = pods[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// nodeLocal GETs a path of the plugin's metrics address on the node, where the DaemonSet binds it
// (127.0.0.1: it is not authenticated), as a person on the node can.
func nodeLocal(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", metricsPort, path), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), nil
}

// metrics scrapes the plugin's /metrics on the node and returns each sample ("name{labels}" ->
// value). pod names the daemon's pod, for the errors.
func (k *kube) metrics(ctx context.Context, pod string) (map[string]float64, error) {
	out, err := nodeLocal(ctx, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", pod, err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// pluginLogs returns the plugin pod's daemon log.
func (k *kube) pluginLogs(ctx context.Context, pod string) (string, error) {
	return k.kubectl(ctx, "-n", pluginNS, "logs", pod, "-c", "netdevice-plugin")
}

// execLinks runs `ip a` in a pod's container through kubectl exec and parses what it shows.
func (k *kube) execLinks(ctx context.Context, pod string) (map[string]podLink, string, error) {
	out, err := k.kubectl(ctx, "exec", pod, "--", "ip", "a")
	if err != nil {
		return nil, out, err
	}
	return parseIPAddr(out), out, nil
}

var ipLinkLine = regexp.MustCompile(`^\d+: ([^:@ ]+)(@[^:]*)?: <([^>]*)>`)

// parseIPAddr reads `ip a` output (iproute2's and busybox's) into links by name.
func parseIPAddr(out string) map[string]podLink {
	links := map[string]podLink{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		if m := ipLinkLine.FindStringSubmatch(line); m != nil {
			cur = m[1]
			links[cur] = podLink{Flags: strings.Split(m[3], ",")}
			continue
		}
		f := strings.Fields(line)
		if cur == "" || len(f) < 2 {
			continue
		}
		l := links[cur]
		switch f[0] {
		case "inet", "inet6":
			l.Addrs = append(l.Addrs, f[1])
		case "link/ether":
			l.MAC = f[1]
		}
		links[cur] = l
	}
	return links
}

// readmeBlock returns the command lines of the README's code block marked <!-- e2e:NAME -->: the
// block the test runs word for word, so that what the README tells a person is what was tested.
func readmeBlock(t *testing.T, root, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- e2e:" + name
	_, rest, ok := strings.Cut(string(data), marker+" ")
	if !ok {
		t.Fatalf("README.md has no %s ... -->", marker)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: no code block after %s", marker)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the fence's language
	body, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: the code block after %s does not end", marker)
	}
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("README.md: the code block after %s is empty", marker)
	}
	return lines
}

// clusterDiagnostics is the cluster's view for a failure report: nodes, pods, events, the plugin's
// pods described and their logs (the previous container's too), whereabouts' allocations.
func clusterDiagnostics(st *stack.Stack) string {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var b strings.Builder
	run := func(args ...string) {
		out, err := st.Kubectl(ctx, args...)
		fmt.Fprintf(&b, "===== kubectl %s =====\n%s", strings.Join(args, " "), out)
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
		}
	}
	run("get", "nodes", "-o", "wide")
	run("get", "pods", "-A", "-o", "wide")
	run("get", "events", "-A", "--sort-by=.lastTimestamp")
	run("-n", pluginNS, "describe", "pods")
	run("-n", "default", "describe", "pods")
	run("-n", pluginNS, "logs", "-l", pluginSelector, "--all-containers", "--prefix", "--tail=100")
	run("-n", pluginNS, "logs", "-l", pluginSelector, "-c", "netdevice-plugin", "--previous", "--prefix", "--tail=50")
	// whereabouts' allocations (scenario 5; before its CRDs exist kubectl says so)
	run("get", "ippools.whereabouts.cni.cncf.io,overlappingrangeipreservations.whereabouts.cni.cncf.io", "-A", "-o", "yaml")
	return b.String()
}
