//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

// The whereabouts scenario's pool, and whereabouts as its installer lays it out on a node: the
// plugin in the CNI folder, its configuration folder in the CNI configuration folder, with the flat
// file it requires (whereabouts.conf) and a kubeconfig of its ServiceAccount.
const (
	wbPool       = "e2e-wb"
	wbRes        = "networking.k8s.io/" + wbPool
	wbRange      = "10.237.64.0/28"
	wbNamespace  = "kube-system" // whereabouts' objects: its install manifest's, and its kubeconfig's context
	wbAccount    = "whereabouts"
	wbConf       = stack.HostWhereaboutsDir + "/whereabouts.conf"
	wbKubeconfig = stack.HostWhereaboutsDir + "/whereabouts.kubeconfig"
	wbPodIf      = "net1"
)

// whereaboutsPool is the plugin's config with the seed's pool and a pool of two links whose IPAM is
// whereabouts over wbRange.
func whereaboutsPool(tok string) string {
	return fmt.Sprintf(`resourceList:
  - resourceName: netdevice
    selectors:
      - ifNames: ["dummy*"]
  - resourceName: %s
    podIfName: %s
    ipam: {"type": "whereabouts", "range": %q, "kubernetes": {"kubeconfig": %q}}
    selectors:
      - ifNames: ["nd%sw*"]
`, wbPool, wbPodIf, wbRange, wbKubeconfig, tok)
}

// scenarioWhereabouts (issue 13): whereabouts, the IPAM plugin that keeps its allocations in the API
// server, installed as its docs say (its CRDs and its RBAC from its own module, its plugin and a
// kubeconfig of its ServiceAccount on the node) and named by a pool of two links. Two pods get
// distinct addresses of the range, which the IPPool records with their pod and sandbox; a restarted
// container keeps its address; a deleted pod's allocation goes (the daemon's DEL, in the DaemonSet's
// container), and when both are gone the IPPool holds nothing and no lease is left on the node.
func (k *kube) scenarioWhereabouts(t *testing.T, tok string) {
	ctx := context.Background()
	bins := k.st.Opts.Bins

	t0 := time.Now()
	k.shIn(t, bins.WhereaboutsModule, "kubectl apply -f "+stack.WhereaboutsIPPoolCRD+" -f "+stack.WhereaboutsReservationCRD)
	k.sh(t, "kubectl wait --for=condition=Established --timeout=60s crd/ippools.whereabouts.cni.cncf.io crd/overlappingrangeipreservations.whereabouts.cni.cncf.io")
	rbac, err := whereaboutsRBAC(bins.WhereaboutsFile(stack.WhereaboutsInstall))
	if err != nil {
		t.Fatal(err)
	}
	k.apply(t, rbac)
	for _, verb := range []string{"create", "update", "delete"} {
		out := k.sh(t, fmt.Sprintf("kubectl auth can-i %s ippools.whereabouts.cni.cncf.io -n %s --as=system:serviceaccount:%s:%s", verb, wbNamespace, wbNamespace, wbAccount))
		if strings.TrimSpace(out) != "yes" {
			t.Fatalf("whereabouts' ServiceAccount may not %s IPPools: %q", verb, out)
		}
	}
	token, err := k.kubectl(ctx, "-n", wbNamespace, "create", "token", wbAccount, "--duration=2h")
	if err != nil {
		t.Fatal(err)
	}
	k.show(t, "kubectl -n "+wbNamespace+" create token "+wbAccount+" --duration=2h", "(a token of "+strconv.Itoa(len(strings.TrimSpace(token)))+" bytes)")
	ca, err := os.ReadFile(k.st.Paths.PKIFile("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := os.ReadFile(bins.Whereabouts)
	if err != nil {
		t.Fatal(err)
	}
	flat := fmt.Sprintf("{\n  \"datastore\": \"kubernetes\",\n  \"kubernetes\": {\"kubeconfig\": %q}\n}\n", wbKubeconfig)
	hostWrite(t, k.st, stack.HostWhereabouts, plugin, 0o755)
	hostWrite(t, k.st, wbKubeconfig, whereaboutsKubeconfig(k.st.APIServerURL(), ca, strings.TrimSpace(token)), 0o600)
	hostWrite(t, k.st, wbConf, []byte(flat), 0o600)
	k.show(t, "cat "+wbConf, flat)
	installed := time.Since(t0)

	// the pool, over two links of its own
	links := []string{"nd" + tok + "w0", "nd" + tok + "w1"}
	for _, l := range links {
		addHostLink(t, k.st, hostLink{Name: l})
	}
	t0 = time.Now()
	k.apply(t, configMap(whereaboutsPool(tok)))
	k.waitAllocatable(t, map[string]string{seedResource: "1", wbRes: "2"}, 2*time.Minute)
	offered := time.Since(t0)

	// two pods, one device each: distinct addresses of the range on net1, and the IPPool says whose
	t.Cleanup(func() {
		_, _ = k.kubectl(context.Background(), "delete", "pod", "wba", "wbb", "--ignore-not-found", "--wait=false")
	})
	t0 = time.Now()
	k.apply(t, podManifest("wba", map[string]int{wbRes: 1}))
	k.apply(t, podManifest("wbb", map[string]int{wbRes: 1}))
	k.waitPodReady(t, "default", "wba", readyTimeout)
	k.waitPodReady(t, "default", "wbb", readyTimeout)
	ready := time.Since(t0)
	ipA, ipB := k.poolAddr(t, "wba"), k.poolAddr(t, "wbb")
	if ipA.Equal(ipB) {
		t.Fatalf("both pods have %s on %s", ipA, wbPodIf)
	}
	for _, l := range links {
		if onHost(l) {
			t.Errorf("%s is still on the node while both pods hold a device of the pool", l)
		}
	}
	sbA, sbB := k.sandboxID(t, "wba"), k.sandboxID(t, "wbb")
	want := []wbAllocation{{IP: ipA.String(), PodRef: "default/wba", ContainerID: sbA, IfName: wbPodIf},
		{IP: ipB.String(), PodRef: "default/wbb", ContainerID: sbB, IfName: wbPodIf}}
	k.wantAllocations(t, want, 0)
	k.wantLeases(t, map[string]string{sbA: ipA.String(), sbB: ipB.String()}, 0)

	// the container restarted: the same address, nothing allocated anew
	before, err := k.pod(ctx, "default", "wba")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(before.Status.ContainerStatuses[0].ContainerID, "containerd://")
	pid, err := k.st.ContainerPID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill wba's container process %d: %v", pid, err)
	}
	k.show(t, fmt.Sprintf("kill -KILL %d   # wba's container process, on the node", pid), "")
	if err := poll(ctx, readyTimeout, 100*time.Millisecond, func(ctx context.Context) error {
		p, err := k.pod(ctx, "default", "wba")
		if err != nil {
			return err
		}
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].RestartCount != 1 || cs[0].ContainerID == before.Status.ContainerStatuses[0].ContainerID || !podReady(p) {
			return fmt.Errorf("pod wba: ready %v, containers %+v; want its container restarted once and Ready", podReady(p), cs)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	restart := time.Since(killed)
	if again := k.poolAddr(t, "wba"); !again.Equal(ipA) {
		t.Errorf("wba has %s on %s after its container restarted, had %s", again, wbPodIf, ipA)
	}
	if sb := k.sandboxID(t, "wba"); sb != sbA {
		t.Errorf("wba's sandbox changed from %s to %s: want only its container restarted", sbA, sb)
	}
	k.wantAllocations(t, want, 0)
	k.wantLeases(t, map[string]string{sbA: ipA.String(), sbB: ipB.String()}, 0)

	// a pod deleted: the daemon releases its address (DEL) once the kubelet no longer reports its
	// device held (a fresh allocation is kept 30 s); the other's stays
	t0 = time.Now()
	k.sh(t, "kubectl delete pod wba")
	k.wantAllocations(t, []wbAllocation{want[1]}, releaseTimeout)
	k.wantLeases(t, map[string]string{sbB: ipB.String()}, 10*time.Second)
	release := time.Since(t0)
	t0 = time.Now()
	k.sh(t, "kubectl delete pod wbb")
	k.wantAllocations(t, nil, releaseTimeout)
	k.wantLeases(t, nil, 10*time.Second)
	empty := time.Since(t0)
	if files := leaseFiles(t); len(files) != 0 {
		t.Errorf("lease files left on the node: %v", files)
	}
	k.show(t, "kubectl get ippools.whereabouts.cni.cncf.io -A", k.quiet(ctx, "get", "ippools.whereabouts.cni.cncf.io", "-A"))

	// the install's config back: the pool goes
	k.sh(t, readmeBlock(t, k.root, "install")[0])
	k.waitAllocatable(t, map[string]string{seedResource: "1", wbRes: "0"}, 2*time.Minute)
	timing("cluster-5-whereabouts", "install_ms", installed, "offered_ms", offered, "ready_ms", ready, "restart_ms", restart,
		"release_ms", release, "empty_ms", empty)
}

// whereaboutsRBAC returns the ServiceAccount, ClusterRole and ClusterRoleBinding of whereabouts'
// install manifest: the RBAC it documents for its plugin, without the DaemonSet (whose image would
// come from a registry) that writes the node's files the test writes itself.
func whereaboutsRBAC(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("whereabouts' RBAC: %w", err)
	}
	var out bytes.Buffer
	var kinds []string
	for _, doc := range strings.Split(string(data), "\n---") {
		var obj struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, fmt.Errorf("whereabouts' RBAC: %s: %w", file, err)
		}
		switch obj.Kind {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			kinds = append(kinds, obj.Kind)
			out.WriteString("---\n" + strings.TrimLeft(doc, "\n") + "\n")
		}
	}
	sort.Strings(kinds)
	if !slices.Equal(kinds, []string{"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}) {
		return nil, fmt.Errorf("whereabouts' RBAC: %s holds %v, want one ServiceAccount, ClusterRole and ClusterRoleBinding", file, kinds)
	}
	return out.Bytes(), nil
}

// whereaboutsKubeconfig is the kubeconfig whereabouts' installer writes for its plugin (its
// script/lib.sh): the API server, the cluster's CA, the ServiceAccount's token, its namespace.
func whereaboutsKubeconfig(server string, ca []byte, token string) []byte {
	return []byte(fmt.Sprintf(`# Kubeconfig file for the Whereabouts CNI plugin.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: whereabouts
  user:
    token: %q
contexts:
- name: whereabouts-context
  context:
    cluster: local
    user: whereabouts
    namespace: %s
current-context: whereabouts-context
`, server, base64.StdEncoding.EncodeToString(ca), token, wbNamespace))
}

// hostWrite writes a file on the host, creating its missing folders, each recorded first as the
// stack's (TrackPath: the teardown removes them whatever happens); they go when the test ends.
func hostWrite(t *testing.T, st *stack.Stack, path string, data []byte, mode os.FileMode) {
	t.Helper()
	var created []string
	t.Cleanup(func() {
		for i := len(created) - 1; i >= 0; i-- {
			if err := os.Remove(created[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remove %s: %v", created[i], err)
			}
		}
	})
	var missing []string
	for d := filepath.Dir(path); d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
	}
	for _, d := range missing {
		if err := st.TrackPath(d); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("create %s: %v", d, err)
		}
		created = append(created, d)
	}
	if err := st.TrackPath(path); err != nil {
		t.Fatal(err)
	}
	created = append(created, path)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// quiet runs kubectl for the log, returning its output or its error as text.
func (k *kube) quiet(ctx context.Context, args ...string) string {
	out, err := k.kubectl(ctx, args...)
	if err != nil {
		return out + err.Error()
	}
	return out
}

// poolAddr is the address of wbRange on the pod's net1, as `ip -o addr` in the pod shows it.
func (k *kube) poolAddr(t *testing.T, pod string) net.IP {
	t.Helper()
	out, err := k.kubectl(context.Background(), "exec", pod, "--", "ip", "-o", "addr", "show", "dev", wbPodIf)
	k.show(t, "kubectl exec "+pod+" -- ip -o addr show dev "+wbPodIf, out)
	if err != nil {
		t.Fatal(err)
	}
	_, subnet, _ := net.ParseCIDR(wbRange)
	var found []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" {
				continue
			}
			found = append(found, f[i+1])
			ip, n, err := net.ParseCIDR(f[i+1])
			if err == nil && n.String() == subnet.String() && !ip.Equal(subnet.IP) && !ip.Equal(broadcast(subnet)) {
				return ip.To4()
			}
		}
	}
	t.Fatalf("pod %s: %s has %v, no host address of %s", pod, wbPodIf, found, wbRange)
	return nil
}

func broadcast(n *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(n.IP.To4())|^binary.BigEndian.Uint32(net.IP(n.Mask).To4()))
	return ip
}

// sandboxID is the ID of the pod's ready sandbox: what the hook passes whereabouts as
// CNI_CONTAINERID.
func (k *kube) sandboxID(t *testing.T, pod string) string {
	t.Helper()
	sbs, err := k.st.Sandboxes(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		if sb.State == "SANDBOX_READY" {
			return sb.ID
		}
	}
	t.Fatalf("pod %s has no ready sandbox (%d sandboxes)", pod, len(sbs))
	return ""
}

// wbAllocation is one address whereabouts holds, with its owner.
type wbAllocation struct {
	IP, PodRef, ContainerID, IfName string
}

// allocations reads whereabouts' IPPool of wbRange (kubectl get ippools -A -o json) and its
// cluster-wide reservations, and returns what they hold, by address. A reservation without its
// allocation, or one naming another pod, is an error.
func (k *kube) allocations(ctx context.Context) ([]wbAllocation, error) {
	var pools struct {
		Items []struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				Range       string `json:"range"`
				Allocations map[string]struct {
					ID     string `json:"id"`
					PodRef string `json:"podref"`
					IfName string `json:"ifname"`
				} `json:"allocations"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := k.get(ctx, &pools, "ippools.whereabouts.cni.cncf.io", "-A"); err != nil {
		return nil, err
	}
	var out []wbAllocation
	found := 0
	for _, p := range pools.Items {
		if p.Spec.Range != wbRange {
			continue
		}
		found++
		if p.Metadata.Namespace != wbNamespace {
			return nil, fmt.Errorf("IPPool %s of %s is in namespace %s, want whereabouts' %s", p.Metadata.Name, wbRange, p.Metadata.Namespace, wbNamespace)
		}
		_, subnet, _ := net.ParseCIDR(p.Spec.Range)
		for offset, a := range p.Spec.Allocations {
			n, err := strconv.ParseUint(offset, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("IPPool %s: allocation key %q is no offset", p.Metadata.Name, offset)
			}
			ip := make(net.IP, 4)
			binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(subnet.IP.To4())+uint32(n))
			out = append(out, wbAllocation{IP: ip.String(), PodRef: a.PodRef, ContainerID: a.ID, IfName: a.IfName})
		}
	}
	if found != 1 {
		return nil, fmt.Errorf("%d IPPools of %s, want one", found, wbRange)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP < out[j].IP })

	var res struct {
		Items []struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				PodRef string `json:"podref"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := k.get(ctx, &res, "overlappingrangeipreservations.whereabouts.cni.cncf.io", "-A"); err != nil {
		return nil, err
	}
	if len(res.Items) != len(out) {
		return out, fmt.Errorf("%d overlapping-range reservations for %d allocations", len(res.Items), len(out))
	}
	for _, r := range res.Items {
		i := slices.IndexFunc(out, func(a wbAllocation) bool { return a.IP == r.Metadata.Name })
		if i < 0 || out[i].PodRef != r.Spec.PodRef || r.Metadata.Namespace != wbNamespace {
			return out, fmt.Errorf("reservation %s/%s of %s does not match the IPPool's allocations %+v", r.Metadata.Namespace, r.Metadata.Name, r.Spec.PodRef, out)
		}
	}
	return out, nil
}

// wantAllocations waits (up to timeout; 0: checks once) until whereabouts holds exactly want.
func (k *kube) wantAllocations(t *testing.T, want []wbAllocation, timeout time.Duration) {
	t.Helper()
	want = slices.Clone(want)
	sort.Slice(want, func(i, j int) bool { return want[i].IP < want[j].IP })
	check := func(context.Context) error {
		// a context of its own: the last error poll reports is whereabouts' state, not a kubectl
		// killed at poll's deadline
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := k.allocations(ctx)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			return fmt.Errorf("whereabouts holds %+v, want %+v", got, want)
		}
		return nil
	}
	err := checkOrPoll(timeout, check)
	k.show(t, "kubectl get ippools.whereabouts.cni.cncf.io -A -o jsonpath='{.items[*].spec}'",
		k.quiet(context.Background(), "get", "ippools.whereabouts.cni.cncf.io", "-A", "-o", "jsonpath={.items[*].spec}"))
	if err != nil {
		t.Fatal(err)
	}
}

// wantLeases waits (up to timeout; 0: checks once) until the node's leases of the pool are exactly
// one per sandbox of want, each with the address whereabouts gave it (sandbox ID -> address).
func (k *kube) wantLeases(t *testing.T, want map[string]string, timeout time.Duration) {
	t.Helper()
	check := func(context.Context) error {
		leases, err := ipam.Leases(ipam.DefaultLeaseDir)
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, l := range leases {
			if l.Pool != wbRes {
				continue
			}
			var res struct {
				IPs []struct {
					Address string `json:"address"`
				} `json:"ips"`
			}
			if err := yaml.Unmarshal(l.Result, &res); err != nil || len(res.IPs) != 1 {
				return fmt.Errorf("lease of %s: result %s (%v), want one address", l.Device, l.Result, err)
			}
			ip, _, _ := net.ParseCIDR(res.IPs[0].Address)
			got[l.ContainerID] = ip.String()
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("leases on the node (sandbox -> address) %v, want %v", got, want)
		}
		return nil
	}
	err := checkOrPoll(timeout, check)
	if err != nil {
		t.Fatal(err)
	}
}

// leaseFiles lists every file below the node's IPAM lease folder.
func leaseFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(ipam.DefaultLeaseDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("list %s: %v", ipam.DefaultLeaseDir, err)
	}
	return out
}
