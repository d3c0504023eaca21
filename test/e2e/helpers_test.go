//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

// seedPod is the seed demo's pod spec, verbatim from network-device-plugin's README.
const seedPod = `apiVersion: v1
kind: Pod
metadata:
  name: test
spec:
  containers:
  - name: nginx
    args: [ "netexec","--http-port=80"]
    image: registry.k8s.io/e2e-test-images/agnhost:2.40
    ports:
    - containerPort: 80
    resources:
      limits:
         networking.k8s.io/netdevice: 1
`

// podManifest is a pod like the seed's (agnhost netexec on port 80) with the given limits.
func podManifest(name string, limits map[string]int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  containers:\n  - name: app\n", name)
	fmt.Fprintf(&b, "    args: [\"netexec\", \"--http-port=80\"]\n    image: %s\n    imagePullPolicy: Never\n", stack.PodImage)
	if len(limits) > 0 {
		b.WriteString("    resources:\n      limits:\n")
		names := make([]string, 0, len(limits))
		for n := range limits {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "        %s: %d\n", n, limits[n])
		}
	}
	return []byte(b.String())
}

// token is a short random hex string that makes this run's link names unique on a shared machine.
func token(t *testing.T) string {
	t.Helper()
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// hostLink describes a link the test creates on the host.
type hostLink struct {
	Name  string
	Addr  string // CIDR, "" for none
	Peer  string // veth peer name (stays on the host), "" for a single link
	PAddr string // the peer's address
}

// addHostLink creates a link standing in for a dummy device: a dummy where the kernel has the type,
// else an ifb (this machine's kernel has no dummy); or a veth pair when Peer is set. It is up, has its
// address, and is deleted when the test ends and by the stack's teardown whatever happens.
func addHostLink(t *testing.T, st *stack.Stack, l hostLink) {
	t.Helper()
	for _, n := range []string{l.Name, l.Peer} {
		if n == "" {
			continue
		}
		if _, err := netlink.LinkByName(n); err == nil {
			t.Fatalf("link %s already exists on the host; delete it or pick another name", n)
		}
		if err := st.TrackLink(n); err != nil {
			t.Fatal(err)
		}
	}
	attrs := netlink.LinkAttrs{Name: l.Name}
	kind := "veth"
	if l.Peer != "" {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: l.Peer}); err != nil {
			t.Fatalf("create veth %s/%s: %v", l.Name, l.Peer, err)
		}
	} else {
		kind = "dummy"
		if derr := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs}); derr != nil {
			kind = "ifb" // this kernel has no dummy type: an ifb moves between namespaces the same way
			if err := netlink.LinkAdd(&netlink.Ifb{LinkAttrs: attrs}); err != nil {
				t.Fatalf("create link %s: as dummy: %v; as ifb: %v", l.Name, derr, err)
			}
		}
	}
	t.Cleanup(func() {
		for _, n := range []string{l.Name, l.Peer} {
			if link, err := netlink.LinkByName(n); err == nil {
				_ = netlink.LinkDel(link)
			}
		}
	})
	for _, c := range []struct{ name, addr string }{{l.Name, l.Addr}, {l.Peer, l.PAddr}} {
		if c.name == "" {
			continue
		}
		link, err := netlink.LinkByName(c.name)
		if err != nil {
			t.Fatalf("link %s: %v", c.name, err)
		}
		if c.addr != "" {
			a, err := netlink.ParseAddr(c.addr)
			if err != nil {
				t.Fatalf("address %s for %s: %v", c.addr, c.name, err)
			}
			if err := netlink.AddrAdd(link, a); err != nil {
				t.Fatalf("add address %s to %s: %v", c.addr, c.name, err)
			}
		}
		if err := netlink.LinkSetUp(link); err != nil {
			t.Fatalf("set %s up: %v", c.name, err)
		}
	}
	logf("host link %s (%s) created", l.Name, kind)
}

// hostMAC returns a host link's hardware address.
func hostMAC(t *testing.T, name string) string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l.Attrs().HardwareAddr.String()
}

// onHost reports whether a link of that name is in the host network namespace.
func onHost(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// podLink is a link as `ip -o link` / `ip -o addr` inside a container show it.
type podLink struct {
	Flags []string
	Addrs []string
	MAC   string
}

func (l podLink) up() bool {
	for _, f := range l.Flags {
		if f == "UP" {
			return true
		}
	}
	return false
}

func (l podLink) hasAddr(cidr string) bool {
	for _, a := range l.Addrs {
		if a == cidr {
			return true
		}
	}
	return false
}

// podLinks returns the links inside a container, by name, from busybox ip's one-line output.
func podLinks(ctx context.Context, st *stack.Stack, containerID string) (map[string]podLink, string, error) {
	out, err := st.Exec(ctx, containerID, "sh", "-c", "ip -o link; echo '#'; ip -o addr")
	if err != nil {
		return nil, out, err
	}
	links := map[string]podLink{}
	linkPart, addrPart, _ := strings.Cut(out, "#\n")
	for _, line := range strings.Split(linkPart, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		l := links[name]
		l.Flags = strings.Split(strings.Trim(f[2], "<>"), ",")
		for i := 3; i+1 < len(f); i++ {
			if f[i] == "link/ether" {
				l.MAC = f[i+1]
			}
		}
		links[name] = l
	}
	for _, line := range strings.Split(addrPart, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[2] != "inet" && f[2] != "inet6") {
			continue
		}
		l := links[f[1]]
		l.Addrs = append(l.Addrs, f[3])
		links[f[1]] = l
	}
	return links, out, nil
}

// poll runs check every interval until it returns nil or timeout passes; it returns the last error.
func poll(ctx context.Context, timeout, interval time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", timeout, err)
		case <-time.After(interval):
		}
	}
}

// checkOrPoll runs check once when timeout is 0, else polls it every 200 ms until timeout.
func checkOrPoll(timeout time.Duration, check func(context.Context) error) error {
	if timeout == 0 {
		return check(context.Background())
	}
	return poll(context.Background(), timeout, 200*time.Millisecond, check)
}

// linkWant is what a test expects of a link inside the pod.
type linkWant struct {
	Name string
	Addr string // CIDR that must be on it, "" for any
}

// waitPodLinks waits until the pod's running container shows every wanted link up (with its
// address), and returns the container, its links and the time that was first seen.
func waitPodLinks(ctx context.Context, st *stack.Stack, pod, container string, want []linkWant, timeout time.Duration) (stack.Container, map[string]podLink, time.Time, error) {
	var c stack.Container
	var links map[string]podLink
	err := poll(ctx, timeout, 50*time.Millisecond, func(ctx context.Context) error {
		var err error
		if c, err = st.RunningContainer(ctx, pod, container); err != nil {
			return err
		}
		var out string
		if links, out, err = podLinks(ctx, st, c.ID); err != nil {
			return err
		}
		for _, w := range want {
			l, ok := links[w.Name]
			switch {
			case !ok:
				return fmt.Errorf("pod %s has no link %s; ip shows:\n%s", pod, w.Name, out)
			case !l.up():
				return fmt.Errorf("pod %s: link %s is not up (flags %v)", pod, w.Name, l.Flags)
			case w.Addr != "" && !l.hasAddr(w.Addr):
				return fmt.Errorf("pod %s: link %s lacks address %s (has %v)", pod, w.Name, w.Addr, l.Addrs)
			}
		}
		return nil
	})
	return c, links, time.Now(), err
}

// waitOnHost waits until every named link is back in the host namespace and returns when.
func waitOnHost(ctx context.Context, names []string, timeout time.Duration) (time.Time, error) {
	err := poll(ctx, timeout, 10*time.Millisecond, func(context.Context) error {
		for _, n := range names {
			if !onHost(n) {
				return fmt.Errorf("link %s is not back on the host", n)
			}
		}
		return nil
	})
	return time.Now(), err
}

// hostLinkReady reports whether a host link is administratively up and carries addr (when set).
func hostLinkReady(name, addr string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("link %s is down on the host", name)
	}
	if addr == "" {
		return nil
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", name, err)
	}
	var have []string
	for _, a := range addrs {
		if a.IPNet.String() == addr {
			return nil
		}
		have = append(have, a.IPNet.String())
	}
	return fmt.Errorf("link %s on the host lacks %s (has %v)", name, addr, have)
}

// waitAllocatableStable waits until the wanted devices have been allocatable without a break for
// the stable period. It reports whether they dropped out after first being seen: a health flap a
// pod admitted at that moment would be rejected for.
func waitAllocatableStable(ctx context.Context, st *stack.Stack, want stack.Devices, timeout, stable time.Duration) (flapped bool, err error) {
	var since time.Time
	err = poll(ctx, timeout, 50*time.Millisecond, func(ctx context.Context) error {
		got, err := st.Allocatable(ctx)
		if err != nil {
			return err
		}
		for res, ids := range want {
			if !reflect.DeepEqual(got[res], ids) {
				if !since.IsZero() {
					flapped = true
				}
				since = time.Time{}
				return fmt.Errorf("kubelet allocatable %s = %v, want %v", res, got[res], ids)
			}
		}
		if since.IsZero() {
			since = time.Now()
		}
		if held := time.Since(since); held < stable {
			return fmt.Errorf("allocatable for only %v of %v", held, stable)
		}
		return nil
	})
	return flapped, err
}

// waitAllocatable waits until the kubelet's allocatable devices of each wanted resource are exactly
// the wanted IDs.
func waitAllocatable(ctx context.Context, st *stack.Stack, want stack.Devices, timeout time.Duration) error {
	return poll(ctx, timeout, 100*time.Millisecond, func(ctx context.Context) error {
		got, err := st.Allocatable(ctx)
		if err != nil {
			return err
		}
		for res, ids := range want {
			if !reflect.DeepEqual(got[res], ids) {
				return fmt.Errorf("kubelet allocatable %s = %v, want %v (all: %v)", res, got[res], ids, got)
			}
		}
		return nil
	})
}

// timing prints the line the lead's tooling parses: E2E-TIMING scenario=... key=ms ...
func timing(scenario string, kv ...any) {
	var b strings.Builder
	fmt.Fprintf(&b, "E2E-TIMING scenario=%s", scenario)
	for i := 0; i+1 < len(kv); i += 2 {
		d, _ := kv[i+1].(time.Duration)
		fmt.Fprintf(&b, " %s=%d", kv[i], d.Milliseconds())
	}
	fmt.Println(b.String())
}

// httpGet fetches a URL with a short timeout and returns the body.
func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{}).DialContext}}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

// plugin is the daemon under test and the hook it names in its CDI specs.
type plugin struct {
	Daemon, Hook string
}

// pluginBinaries returns the daemon and hook run.sh built, or fails the test with why they are missing.
func pluginBinaries(t *testing.T) plugin {
	t.Helper()
	if msg := os.Getenv("E2E_PLUGIN_BUILD_ERROR"); msg != "" {
		t.Fatalf("netdevice-plugin / netdevice-hook do not build (go build -o bin/ ./cmd/...), so no scenario can run:\n%s", msg)
	}
	p := plugin{Daemon: os.Getenv("E2E_PLUGIN"), Hook: os.Getenv("E2E_HOOK")}
	for _, f := range []struct{ path, env string }{{p.Daemon, "E2E_PLUGIN"}, {p.Hook, "E2E_HOOK"}} {
		if !filepath.IsAbs(f.path) {
			t.Fatalf("%s=%q: want the absolute path of the built binary (run test/e2e/run.sh)", f.env, f.path)
		}
		if _, err := os.Stat(f.path); err != nil {
			t.Fatalf("%s: %v (run test/e2e/run.sh, which builds it)", f.env, err)
		}
	}
	return p
}

// startPlugin copies the hook into the work folder (the CDI spec names its absolute path), writes
// the config and starts the daemon against the stack's kubelet, with its CDI specs, state file,
// device-information files and IPAM leases in the work folder too (the host's /var/run/cdi,
// /run/netdevice-plugin, /var/run/k8s.cni.cncf.io and /var/lib/netdevice-plugin may hold a real
// installation's); IPAM plugins come from the stack's CNI plugins. It asks the kubelet which devices
// pods hold every second, so that released devices give their addresses back quickly. extra flags
// follow these (a later one wins).
func startPlugin(t *testing.T, st *stack.Stack, p plugin, config string, extra ...string) {
	t.Helper()
	binDir := filepath.Join(st.Paths.Work, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(binDir, "netdevice-hook")
	data, err := os.ReadFile(p.Hook)
	if err != nil {
		t.Fatalf("read hook: %v", err)
	}
	if err := os.WriteFile(hook, data, 0o755); err != nil {
		t.Fatalf("copy hook: %v", err)
	}
	cfg := filepath.Join(st.Paths.Work, "netdevice-plugin.json")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--config", cfg,
		"--cdi-dir", st.Paths.CDIDir,
		"--state-file", filepath.Join(st.Paths.Work, "netdevice-plugin-state.gob"),
		"--hook-path", hook,
		"--device-plugin-dir", "/var/lib/kubelet/device-plugins",
		"--plugins-registry-dir", st.Paths.PluginsRegistryDir(),
		"--devinfo-dir", filepath.Join(st.Paths.Work, "devinfo"),
		"--cni-bin-dir", st.Opts.Bins.CNIBinDir,
		"--ipam-lease-dir", leaseDir(st),
		"--pod-resources-socket", st.Paths.PodResourcesSocket(),
		"--kubelet-sync-interval", "1s",
		"-v=4",
	}
	args = append(args, extra...)
	if _, err := st.StartProcess("netdevice-plugin", p.Daemon, args...); err != nil {
		t.Fatalf("start netdevice-plugin: %v", err)
	}
	logf("netdevice-plugin started: %s %s", p.Daemon, strings.Join(args, " "))
}

// leaseDir is where the daemon and the hook keep IPAM leases; ipamStore is host-local's store.
func leaseDir(st *stack.Stack) string  { return filepath.Join(st.Paths.Work, "ipam-leases") }
func ipamStore(st *stack.Stack) string { return filepath.Join(st.Paths.Work, "ipam-store") }

// pluginAlive fails the test when the daemon exited.
func pluginAlive(t *testing.T, st *stack.Stack) {
	t.Helper()
	exited, werr := st.Exited("netdevice-plugin")
	select {
	case <-exited:
		t.Fatalf("netdevice-plugin exited: %v", werr())
	default:
	}
}
