package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam/ipamtest"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// hookBin is the hook binary, built once for the whole package; faultBin is the same built with fault
// injection (pkg/netns/faultinject.go), which kills itself at a chosen step. cniBinDir holds the IPAM
// plugins the settings tests use: the real host-local (the version go.mod names) and failipam.
var hookBin, faultBin, cniBinDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "netdevice-hook-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hookBin = filepath.Join(dir, "netdevice-hook")
	faultBin = filepath.Join(dir, "netdevice-hook-faults")
	for bin, tags := range map[string]string{hookBin: "", faultBin: "netdevice_faultinject"} {
		if out, err := exec.Command("go", "build", "-tags", tags, "-o", bin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build the hook (tags %q): %v\n%s", tags, err, out)
			os.Exit(1)
		}
	}
	cniBinDir = filepath.Join(dir, "cni")
	if err := ipamtest.BuildPlugins(cniBinDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// NETDEVICE_HOOK_TEST_BIN runs the tests against another build of the hook (an older one, to
	// see which tests it fails).
	if other := os.Getenv("NETDEVICE_HOOK_TEST_BIN"); other != "" {
		hookBin = other
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// hook runs the hook binary as the runtime does: OCI state on stdin. With a named host namespace it
// runs inside it (`ip netns exec`), which stands in for the node's namespace; nil runs it in the
// test's own, the real host's.
type hook struct {
	host    *netnstest.NS
	lockDir string
}

type outcome struct {
	code           int
	stdout, stderr string
}

func (h hook) run(t testing.TB, stdin []byte, args ...string) outcome {
	t.Helper()
	argv := append([]string{hookBin}, args...)
	argv = append(argv, "--lock-dir", h.lockDir)
	if h.host != nil && h.host.Name != "" {
		argv = append([]string{"ip", "netns", "exec", h.host.Name}, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hung hook fails the test
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", argv, err)
	}
	return outcome{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustRun runs the hook and fails the test unless it succeeds silently.
func (h hook) mustRun(t testing.TB, stdin []byte, args ...string) {
	t.Helper()
	if o := h.run(t, stdin, args...); o.code != 0 || o.stdout != "" || o.stderr != "" {
		t.Fatalf("hook %v: exit %d, stdout %q, stderr %q", args, o.code, o.stdout, o.stderr)
	}
}

// bundle writes a container bundle whose config.json gives the network namespace path ("" for a
// namespace the runtime creates for the container itself; absent for none at all).
func bundle(t testing.TB, nsPath string, hasNetNS bool) string {
	t.Helper()
	spec := specs.Spec{Version: specs.Version, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}}}
	if hasNetNS {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: nsPath})
	}
	return writeBundle(t, spec)
}

// writeBundle writes spec as a bundle's config.json and returns the bundle folder.
func writeBundle(t testing.TB, spec specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// state is the OCI state a runtime writes on a hook's stdin.
func state(t testing.TB, status specs.ContainerState, pid int, bundle string) []byte {
	t.Helper()
	data, err := json.Marshal(specs.State{Version: specs.Version, ID: "ctr-" + filepath.Base(bundle), Status: status, Pid: pid, Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// device makes a veth end with IPv4 and IPv6 global addresses and MTU 1400 in ns, removed when the
// test ends wherever it is then (deleting the peer deletes both ends). Some tests run in the real
// host's namespace, so the addresses come from ranges no network uses: 198.18.0.0/15 (RFC 2544,
// benchmarking) and a ULA prefix of our own (RFC 4193, random global ID).
func device(t testing.TB, ns *netnstest.NS, n int) (string, netnstest.LinkState) {
	t.Helper()
	dev, _ := ns.Veth(t)
	if err := ns.H.LinkSetMTU(ns.Link(t, dev), 1400); err != nil {
		t.Fatal(err)
	}
	ns.AddAddr(t, dev, fmt.Sprintf("198.18.%d.1/24", n))
	ns.AddAddr(t, dev, fmt.Sprintf("fdb5:1e6f:7d2a:%x::1/64", n))
	return dev, ns.State(t, dev)
}

// ours lists the pod's links carrying our alias.
func ours(t testing.TB, pod *netnstest.NS) []string {
	t.Helper()
	ls, err := pod.H.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range ls {
		if _, _, ok := netns.ParseAlias(l.Attrs().Alias); ok {
			names = append(names, l.Attrs().Name)
		}
	}
	return names
}

func TestHookLifecycle(t *testing.T) {
	netnstest.RequireRoot(t)
	type podSetup struct {
		pod            *netnstest.NS
		bundle         string
		attach, detach []byte // OCI states
	}
	pods := []struct {
		name  string
		setup func(t *testing.T) podSetup
	}{
		{
			name: "named netns in config.json; poststop with pid 0",
			setup: func(t *testing.T) podSetup {
				pod := netnstest.New(t)
				b := bundle(t, pod.Path, true)
				return podSetup{pod, b, state(t, specs.StateCreating, 4242, b), state(t, specs.StateStopped, 0, b)}
			},
		},
		{
			name: "sandbox /proc/<pid>/ns/net in config.json; poststop with pid 0",
			setup: func(t *testing.T) podSetup {
				pod, _ := netnstest.Unshared(t)
				b := bundle(t, pod.Path, true)
				return podSetup{pod, b, state(t, specs.StateCreating, 4242, b), state(t, specs.StateStopped, 0, b)}
			},
		},
		{
			name: "container's own namespace, from the state's pid",
			setup: func(t *testing.T) podSetup {
				pod, _ := netnstest.Unshared(t)
				pid, _ := strconv.Atoi(strings.Split(pod.Path, "/")[2])
				b := bundle(t, "", true)
				return podSetup{pod, b, state(t, specs.StateCreating, pid, b), state(t, specs.StateRunning, pid, b)}
			},
		},
	}
	for _, p := range pods {
		for _, podIfName := range []string{"", "net1"} {
			t.Run(fmt.Sprintf("%s, pod-ifname %q", p.name, podIfName), func(t *testing.T) {
				host := netnstest.New(t)
				ps := p.setup(t)
				h := hook{host: host, lockDir: t.TempDir()}
				dev, before := device(t, host, 1)
				args := []string{"--host-ifname", dev}
				podName := dev
				if podIfName != "" {
					args = append(args, "--pod-ifname", podIfName)
					podName = podIfName
				}
				inPod := before
				inPod.Alias, inPod.Up = netns.Alias(dev, ""), true

				// attach, attach again, detach, detach again; then the container restarts: again.
				for round := range 2 {
					for try := range 2 {
						h.mustRun(t, ps.attach, append([]string{"attach"}, args...)...)
						if host.Has(dev) {
							t.Fatalf("round %d attach %d: %s still on the host", round, try, dev)
						}
						if got := ps.pod.State(t, podName); !got.Equal(inPod) {
							t.Errorf("round %d attach %d: %s in the pod is %+v, want %+v", round, try, podName, got, inPod)
						}
						if got := ours(t, ps.pod); !slices.Equal(got, []string{podName}) {
							t.Errorf("round %d attach %d: our links in the pod = %v", round, try, got)
						}
					}
					for try := range 2 {
						h.mustRun(t, ps.detach, append([]string{"detach"}, args...)...)
						if got := host.State(t, dev); !got.Equal(before) {
							t.Errorf("round %d detach %d: %s home is %+v, want %+v", round, try, dev, got, before)
						}
						if got := ours(t, ps.pod); len(got) != 0 {
							t.Errorf("round %d detach %d: still in the pod: %v", round, try, got)
						}
					}
				}
			})
		}
	}
}

func TestHookTwoDevicesBecomeNet1Net2(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	b := bundle(t, pod.Path, true)
	attach, detach := state(t, specs.StateCreating, 4242, b), state(t, specs.StateStopped, 0, b)
	dev1, before1 := device(t, host, 1)
	dev2, before2 := device(t, host, 2)

	// The runtime runs one container's createRuntime hooks one after the other.
	h.mustRun(t, attach, "attach", "--host-ifname", dev1, "--pod-ifname", "net1")
	h.mustRun(t, attach, "attach", "--host-ifname", dev2, "--pod-ifname", "net1")
	for name, want := range map[string]string{"net1": dev1, "net2": dev2} {
		if a := pod.Link(t, name).Attrs().Alias; a != netns.Alias(want, "") {
			t.Errorf("%s in the pod has alias %q, want the one of %s", name, a, want)
		}
	}
	h.mustRun(t, detach, "detach", "--host-ifname", dev1, "--pod-ifname", "net1")
	h.mustRun(t, detach, "detach", "--host-ifname", dev2, "--pod-ifname", "net1")
	if got := host.State(t, dev1); !got.Equal(before1) {
		t.Errorf("%s home is %+v, want %+v", dev1, got, before1)
	}
	if got := host.State(t, dev2); !got.Equal(before2) {
		t.Errorf("%s home is %+v, want %+v", dev2, got, before2)
	}
}

// TestHookPCIAddress finds the device through a sysfs fixture whose net/ folder names a real test
// link (directly, and one level down as virtio-net does).
func TestHookPCIAddress(t *testing.T) {
	netnstest.RequireRoot(t)
	const addr = "0000:00:03.0"
	for _, layout := range []string{"net", "virtio0/net"} {
		t.Run(layout, func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			h := hook{host: host, lockDir: t.TempDir()}
			dev, before := device(t, host, 1)
			sysfs := t.TempDir()
			real := filepath.Join(sysfs, "devices", "pci0000:00", addr)
			if err := os.MkdirAll(filepath.Join(real, layout, dev), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(sysfs, "bus", "pci", "devices"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../../../devices/pci0000:00/"+addr, filepath.Join(sysfs, "bus", "pci", "devices", addr)); err != nil {
				t.Fatal(err)
			}
			b := bundle(t, pod.Path, true)
			args := []string{"--pci-address", addr, "--pod-ifname", "net1", "--sysfs-root", sysfs}

			h.mustRun(t, state(t, specs.StateCreating, 1, b), append([]string{"attach"}, args...)...)
			want := before
			want.Alias, want.Up = netns.Alias(dev, addr), true
			if got := pod.State(t, "net1"); !got.Equal(want) {
				t.Errorf("net1 in the pod is %+v, want %+v", got, want)
			}
			// Again: sysfs no longer lists it (it is in the pod); found there by its alias.
			h.mustRun(t, state(t, specs.StateCreating, 1, b), append([]string{"attach"}, args...)...)
			h.mustRun(t, state(t, specs.StateStopped, 0, b), append([]string{"detach"}, args...)...)
			if got := host.State(t, dev); !got.Equal(before) {
				t.Errorf("%s home is %+v, want %+v", dev, got, before)
			}
			h.mustRun(t, state(t, specs.StateStopped, 0, b), append([]string{"detach"}, args...)...)
		})
	}
}

func TestHookFailuresLeaveTheLinkAlone(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	dev, before := device(t, host, 1)
	// The "node's" default routes, each of which keeps a link from moving.
	router, _ := host.Veth(t) // holds the main table's default routes
	host.AddAddr(t, router, "10.89.0.2/24")
	host.AddAddr(t, router, "fd00:89::2/64")
	host.Exec(t, "ip", "route", "add", "default", "via", "10.89.0.1", "dev", router)
	host.Exec(t, "ip", "-6", "route", "add", "default", "via", "fd00:89::1", "dev", router)
	br := host.Bridge(t) // a second IPv4 default route on a bridge: its port carries it
	port, _ := host.Veth(t)
	host.Exec(t, "ip", "link", "set", port, "master", br)
	host.AddAddr(t, br, "198.19.1.2/24")
	host.Exec(t, "ip", "route", "add", "default", "via", "198.19.1.1", "dev", br, "metric", "100")
	parent, _ := host.Veth(t) // a second IPv6 default route on a macvlan: its parent carries it
	mv := host.Macvlan(t, parent)
	host.AddAddr(t, mv, "fdb5:1e6f:7d2a:f1::2/64")
	host.Exec(t, "ip", "-6", "route", "add", "default", "via", "fdb5:1e6f:7d2a:f1::1", "dev", mv, "metric", "100")
	policy, _ := host.Veth(t) // the default route of table 100, which an ip rule selects
	host.AddAddr(t, policy, "198.19.2.2/24")
	host.Exec(t, "ip", "route", "add", "default", "via", "198.19.2.1", "dev", policy, "table", "100")
	host.Exec(t, "ip", "rule", "add", "from", "198.19.2.2", "table", "100")
	// The node cut off: a vxlan holds the default route; its lower device is pooled.
	underlay, _ := host.Veth(t)
	host.AddAddr(t, underlay, "198.19.3.2/24")
	vx := netnstest.Name("ndv")
	host.Exec(t, "ip", "link", "add", vx, "type", "vxlan", "id", "5", "dev", underlay, "dstport", "4789", "remote", "198.19.3.1")
	host.Exec(t, "ip", "link", "set", vx, "up")
	host.AddAddr(t, vx, "198.19.4.2/24")
	host.Exec(t, "ip", "route", "add", "default", "via", "198.19.4.1", "dev", vx, "metric", "200")
	split, _ := host.Veth(t) // a VPN-style split default route
	host.AddAddr(t, split, "198.19.5.2/24")
	host.Exec(t, "ip", "route", "add", "0.0.0.0/1", "via", "198.19.5.1", "dev", split)
	host.Exec(t, "ip", "route", "add", "128.0.0.0/1", "via", "198.19.5.1", "dev", split)
	lower, _ := host.Veth(t) // a macvlan on it, no default route anywhere near
	host.Macvlan(t, lower)
	protected := map[string]netnstest.LinkState{}
	for _, l := range []string{router, port, parent, policy, underlay, vx, split, lower} {
		protected[l] = host.State(t, l)
	}
	sysfs := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	plainFile := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plainFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifoConfig := t.TempDir() // its config.json is a FIFO nobody writes
	if err := unix.Mkfifo(filepath.Join(fifoConfig, "config.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	hugeConfig := t.TempDir()
	if err := os.WriteFile(filepath.Join(hugeConfig, "config.json"), bytes.Repeat([]byte(" "), 16<<20+1), 0o644); err != nil {
		t.Fatal(err)
	}
	hugeState := append(state(t, specs.StateCreating, 1, bundle(t, pod.Path, true)), bytes.Repeat([]byte(" "), 1<<20)...)

	good := bundle(t, pod.Path, true)
	type failCase struct {
		name    string
		stdin   []byte
		args    []string
		wantErr string
	}
	tests := []failCase{
		{name: "bad stdin", stdin: []byte("{not json"), args: []string{"attach", "--host-ifname", dev}, wantErr: "OCI state on stdin"},
		{name: "state without bundle", stdin: []byte(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":1}`), args: []string{"attach", "--host-ifname", dev}, wantErr: "no bundle"},
		{name: "missing bundle", stdin: state(t, specs.StateCreating, 1, filepath.Join(t.TempDir(), "gone")), args: []string{"attach", "--host-ifname", dev}, wantErr: "bundle config"},
		{name: "missing bundle on detach", stdin: state(t, specs.StateStopped, 0, filepath.Join(t.TempDir(), "gone")), args: []string{"detach", "--host-ifname", dev}, wantErr: "bundle config"},
		{name: "missing namespace", stdin: state(t, specs.StateCreating, 1, bundle(t, "/run/netns/"+netnstest.Name("absent"), true)), args: []string{"attach", "--host-ifname", dev}, wantErr: "network namespace is gone"},
		{name: "container without its own network namespace", stdin: state(t, specs.StateCreating, 1, bundle(t, "", false)), args: []string{"attach", "--host-ifname", dev}, wantErr: "shares the runtime's network namespace"},
		{name: "unknown link", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", "nosuch0"}, wantErr: "link nosuch0: no link"},
		{name: "unknown PCI device", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--pci-address", "0000:99:00.0", "--sysfs-root", sysfs}, wantErr: "PCI device 0000:99:00.0"},
		{name: "default route link, IPv4 and IPv6", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", router}, wantErr: "carries the host's default route"},
		{name: "port of the default route's bridge", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", port}, wantErr: "refusing to move " + port + ": it carries the host's default route"},
		{name: "parent of the default route's macvlan", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", parent}, wantErr: "refusing to move " + parent + ": it carries the host's default route"},
		{name: "default route of table 100", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", policy}, wantErr: "refusing to move " + policy + ": it carries the host's default route"},
		{name: "lower device of the vxlan with the default route", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", underlay, "--allow-upper-devices"}, wantErr: "refusing to move " + underlay + ": it carries the host's default route"},
		{name: "split default route", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", split}, wantErr: "refusing to move " + split + ": it carries the host's default route"},
		{name: "a macvlan on it", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", lower}, wantErr: "refusing to move " + lower + ": other links are bound to it (ndm"},
		{name: "namespace path is a FIFO", stdin: state(t, specs.StateCreating, 1, bundle(t, fifo, true)), args: []string{"attach", "--host-ifname", dev}, wantErr: "not a namespace file"},
		{name: "namespace path is a plain file", stdin: state(t, specs.StateCreating, 1, bundle(t, plainFile, true)), args: []string{"attach", "--host-ifname", dev}, wantErr: "not a namespace file"},
		{name: "namespace path is a mount namespace", stdin: state(t, specs.StateCreating, 1, bundle(t, "/proc/self/ns/mnt", true)), args: []string{"attach", "--host-ifname", dev}, wantErr: "not a network namespace"},
		{name: "namespace path is relative", stdin: state(t, specs.StateCreating, 1, bundle(t, "run/netns/x", true)), args: []string{"attach", "--host-ifname", dev}, wantErr: "is not absolute"},
		{name: "config.json is a FIFO", stdin: state(t, specs.StateCreating, 1, fifoConfig), args: []string{"attach", "--host-ifname", dev}, wantErr: "not a regular file"},
		{name: "config.json over 16 MiB", stdin: state(t, specs.StateCreating, 1, hugeConfig), args: []string{"attach", "--host-ifname", dev}, wantErr: "larger than 16777216 bytes"},
		{name: "OCI state over 1 MiB", stdin: hugeState, args: []string{"attach", "--host-ifname", dev}, wantErr: "larger than 1048576 bytes"},
		{name: "no device named", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach"}, wantErr: "neither a PCI address nor a host interface"},
		{name: "unknown flag", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", dev, "--colour", "red"}, wantErr: "flag provided but not defined: -colour"},
		{name: "unknown verb", stdin: state(t, specs.StateCreating, 1, good), args: []string{"move", "--host-ifname", dev}, wantErr: "usage"},
		{name: "bad pod-side name", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", dev, "--pod-ifname", "net/1"}, wantErr: "pod interface name"},
		{name: "bad RDMA device name", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", dev, "--rdma-device", "mlx5/2"}, wantErr: `RDMA device name "mlx5/2"`},
		{name: "RDMA device named twice", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", dev, "--rdma-device", "mlx5_2", "--rdma-device", "mlx5_2"}, wantErr: "RDMA device mlx5_2 is named twice"},
	}
	if _, err := os.Stat("/sys/class/infiniband"); err != nil { // the shipped hook talks to the kernel
		tests = append(tests,
			failCase{name: "RDMA device on a kernel without RDMA", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", dev, "--rdma-device", "mlx5_2"}, wantErr: "list the RDMA devices in the host namespace: RDMA netlink: protocol not supported (this kernel has no RDMA subsystem"},
			failCase{name: "RDMA device on a kernel without RDMA, detach", stdin: state(t, specs.StateStopped, 0, good), args: []string{"detach", "--host-ifname", dev, "--rdma-device", "mlx5_2"}, wantErr: "no RDMA subsystem"},
		)
	}
	h := hook{host: host, lockDir: t.TempDir()}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := h.run(t, tt.stdin, tt.args...)
			if o.code != 1 {
				t.Errorf("exit %d, want 1", o.code)
			}
			if o.stdout != "" {
				t.Errorf("stdout %q, want nothing", o.stdout)
			}
			if !strings.Contains(o.stderr, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", o.stderr, tt.wantErr)
			}
			if !strings.HasPrefix(o.stderr, "netdevice-hook: ") || strings.Count(o.stderr, "\n") != 1 || !strings.HasSuffix(o.stderr, "\n") {
				t.Errorf("stderr %q is not one line", o.stderr)
			}
			if got := host.State(t, dev); !got.Equal(before) {
				t.Errorf("%s changed: %+v, was %+v", dev, got, before)
			}
			for l, want := range protected {
				if got := host.State(t, l); !got.Equal(want) {
					t.Errorf("%s changed: %+v, was %+v", l, got, want)
				}
			}
			if got := ours(t, pod); len(got) != 0 {
				t.Errorf("the pod got %v", got)
			}
		})
	}
}

// TestHookDetachAfterThePodIsGone: a pod namespace that no longer exists, or a container whose own
// namespace died with it, leaves nothing to do: success.
func TestHookDetachAfterThePodIsGone(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	pod, kill := netnstest.Unshared(t)
	dev, _ := device(t, host, 1)
	b := bundle(t, pod.Path, true)
	h.mustRun(t, state(t, specs.StateCreating, 1, b), "attach", "--host-ifname", dev)
	kill() // the kernel destroys the namespace and the veth in it
	h.mustRun(t, state(t, specs.StateStopped, 0, b), "detach", "--host-ifname", dev)
	h.mustRun(t, state(t, specs.StateStopped, 0, bundle(t, "", true)), "detach", "--host-ifname", dev)
	h.mustRun(t, state(t, specs.StateStopped, 0, bundle(t, "", false)), "detach", "--host-ifname", dev)
}

// TestHookConcurrentAttach defines what concurrent hooks on one device do. They serialize on the
// device's lock. Into one pod: all succeed and the link moves once. Into two pods: the first to get
// the lock wins; the other finds no link on the host and fails cleanly, leaving the winner's link
// where it is.
func TestHookConcurrentAttach(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Run("one pod", func(t *testing.T) {
		host, pod := netnstest.New(t), netnstest.New(t)
		h := hook{host: host, lockDir: t.TempDir()}
		dev, _ := device(t, host, 1)
		st := state(t, specs.StateCreating, 1, bundle(t, pod.Path, true))
		outs := make([]outcome, 4)
		var wg sync.WaitGroup
		for i := range outs {
			wg.Go(func() { outs[i] = h.run(t, st, "attach", "--host-ifname", dev, "--pod-ifname", "net1") })
		}
		wg.Wait()
		for i, o := range outs {
			if o.code != 0 || o.stderr != "" {
				t.Errorf("hook %d: exit %d, stderr %q", i, o.code, o.stderr)
			}
		}
		if got := ours(t, pod); !slices.Equal(got, []string{"net1"}) {
			t.Errorf("our links in the pod = %v, want [net1]", got)
		}
	})
	// Two devices of one container, attached at once: each hook picks the first free pod-side name,
	// so one of them loses net1 to the other and must take net2.
	t.Run("two devices, one pod", func(t *testing.T) {
		host := netnstest.New(t)
		h := hook{host: host, lockDir: t.TempDir()}
		for round := range 5 {
			pod := netnstest.New(t)
			b := bundle(t, pod.Path, true)
			attach, detach := state(t, specs.StateCreating, 1, b), state(t, specs.StateStopped, 0, b)
			devs := make([]string, 2)
			before := make([]netnstest.LinkState, 2)
			for i := range devs {
				devs[i], before[i] = device(t, host, 2*round+i+1)
			}
			// Hold both devices' lock files (pkg/netns: <lock dir>/link-<name>.lock) while the hooks
			// start and let go of both at once, so that the two race from the same point.
			release := holdLocks(t, h.lockDir, devs)
			outs := make([]outcome, 2)
			var wg sync.WaitGroup
			for i, dev := range devs {
				wg.Go(func() { outs[i] = h.run(t, attach, "attach", "--host-ifname", dev, "--pod-ifname", "net1") })
			}
			time.Sleep(100 * time.Millisecond) // time to reach the lock; later is still correct, just less of a race
			release()
			wg.Wait()
			for i, o := range outs {
				if o.code != 0 || o.stderr != "" {
					t.Errorf("round %d: attach %s: exit %d, stderr %q", round, devs[i], o.code, o.stderr)
				}
			}
			if got := ours(t, pod); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"net1", "net2"}) {
				t.Fatalf("round %d: our links in the pod = %v, want [net1 net2]", round, got)
			}
			holders := []string{pod.Link(t, "net1").Attrs().Alias, pod.Link(t, "net2").Attrs().Alias}
			slices.Sort(holders)
			want := []string{netns.Alias(devs[0], ""), netns.Alias(devs[1], "")}
			slices.Sort(want)
			if !slices.Equal(holders, want) {
				t.Errorf("round %d: net1 and net2 carry %v, want %v", round, holders, want)
			}
			for i, dev := range devs {
				h.mustRun(t, detach, "detach", "--host-ifname", dev, "--pod-ifname", "net1")
				if got := host.State(t, dev); !got.Equal(before[i]) {
					t.Errorf("round %d: %s home is %+v, want %+v", round, dev, got, before[i])
				}
			}
		}
	})
	t.Run("two pods", func(t *testing.T) {
		host, podA, podB := netnstest.New(t), netnstest.New(t), netnstest.New(t)
		h := hook{host: host, lockDir: t.TempDir()}
		dev, _ := device(t, host, 1)
		pods := []*netnstest.NS{podA, podB}
		outs := make([]outcome, 2)
		var wg sync.WaitGroup
		for i := range outs {
			st := state(t, specs.StateCreating, 1, bundle(t, pods[i].Path, true))
			wg.Go(func() { outs[i] = h.run(t, st, "attach", "--host-ifname", dev) })
		}
		wg.Wait()
		winners := 0
		for i, o := range outs {
			got := ours(t, pods[i])
			switch o.code {
			case 0:
				winners++
				if !slices.Equal(got, []string{dev}) {
					t.Errorf("winner pod %d holds %v, want [%s]", i, got, dev)
				}
			case 1:
				if !strings.Contains(o.stderr, "no link in the host namespace") {
					t.Errorf("loser stderr %q", o.stderr)
				}
				if len(got) != 0 {
					t.Errorf("loser pod %d holds %v", i, got)
				}
			default:
				t.Errorf("hook %d: exit %d, stderr %q", i, o.code, o.stderr)
			}
		}
		if winners != 1 {
			t.Errorf("%d hooks succeeded, want exactly 1: %+v", winners, outs)
		}
		if host.Has(dev) {
			t.Errorf("%s still on the host", dev)
		}
	})
}

// TestHookContainerRestart: the runtime runs attach again when a container restarts, or when the
// previous attach failed.
func TestHookContainerRestart(t *testing.T) {
	netnstest.RequireRoot(t)
	// A hook killed half way leaves a record of what the link had (the kill tests cover that); one
	// from before records left none, and the addresses are lost: attach must fail, not succeed
	// with an interface without them. Detach brings the link home, and it can be attached again.
	t.Run("a half-done attach with no record", func(t *testing.T) {
		host, pod := netnstest.New(t), netnstest.New(t)
		h := hook{host: host, lockDir: t.TempDir()}
		dev, before := device(t, host, 1)
		b := bundle(t, pod.Path, true)
		// An attach killed after the move: our alias, the travel name, down, no addresses.
		if err := host.H.LinkSetAlias(host.Link(t, dev), netns.Alias(dev, "")); err != nil {
			t.Fatal(err)
		}
		host.Move(t, dev, pod, "ndp99")

		o := h.run(t, state(t, specs.StateCreating, 1, b), "attach", "--host-ifname", dev, "--pod-ifname", "net1")
		if o.code != 1 || !strings.Contains(o.stderr, "no record says what addresses it had") {
			t.Fatalf("attach: exit %d, stderr %q; want a failure naming the lost addresses", o.code, o.stderr)
		}
		h.mustRun(t, state(t, specs.StateStopped, 0, b), "detach", "--host-ifname", dev, "--pod-ifname", "net1")
		want := before
		want.Addrs = nil // they died with the killed hook
		if got := host.State(t, dev); !got.Equal(want) {
			t.Errorf("%s home is %+v, want %+v", dev, got, want)
		}
		h.mustRun(t, state(t, specs.StateCreating, 1, b), "attach", "--host-ifname", dev, "--pod-ifname", "net1")
		if got := pod.State(t, "net1"); !got.Up || got.Alias != netns.Alias(dev, "") {
			t.Errorf("net1 in the pod is %+v, want up with our alias", got)
		}
	})
	t.Run("a link re-created on the host stays there", func(t *testing.T) {
		host, pod := netnstest.New(t), netnstest.New(t)
		h := hook{host: host, lockDir: t.TempDir()}
		dev, _ := device(t, host, 1)
		st := state(t, specs.StateCreating, 1, bundle(t, pod.Path, true))
		h.mustRun(t, st, "attach", "--host-ifname", dev, "--pod-ifname", "net1")
		inPod := pod.State(t, "net1")
		// systemd-networkd re-creates a link it manages under the same name.
		host.Exec(t, "ip", "link", "add", "name", dev, "type", "ifb")
		t.Cleanup(func() { _ = exec.Command("ip", "-n", host.Name, "link", "del", dev).Run() })
		newcomer := host.Link(t, dev).Attrs().Index
		hostBefore := host.State(t, dev)

		h.mustRun(t, st, "attach", "--host-ifname", dev, "--pod-ifname", "net1")
		if !host.Has(dev) || host.Link(t, dev).Attrs().Index != newcomer {
			t.Fatalf("the host's new %s was moved", dev)
		}
		if got := host.State(t, dev); !got.Equal(hostBefore) {
			t.Errorf("the host's new %s is %+v, was %+v", dev, got, hostBefore)
		}
		if got := ours(t, pod); !slices.Equal(got, []string{"net1"}) {
			t.Errorf("our links in the pod = %v, want [net1]", got)
		}
		if got := pod.State(t, "net1"); !got.Equal(inPod) {
			t.Errorf("net1 in the pod is %+v, was %+v", got, inPod)
		}
	})
}

// holdLocks takes the device locks of the named links the way the hook does (an exclusive flock) and
// returns how to drop them all at once.
func holdLocks(t *testing.T, dir string, links []string) (release func()) {
	t.Helper()
	var files []*os.File
	release = func() {
		for _, f := range files {
			_ = f.Close()
		}
		files = nil
	}
	t.Cleanup(release)
	for _, l := range links {
		f, err := os.OpenFile(filepath.Join(dir, "link-"+l+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	}
	return release
}

// TestHookInTheRealHostNamespace runs the hook as the runtime does, in the test's own namespace,
// moving a uniquely named veth of the real host into a pod and back.
func TestHookInTheRealHostNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.Own(t), netnstest.New(t)
	h := hook{lockDir: t.TempDir()}
	dev, before := device(t, host, 1)
	b := bundle(t, pod.Path, true)
	h.mustRun(t, state(t, specs.StateCreating, 1, b), "attach", "--host-ifname", dev, "--pod-ifname", "net1")
	if host.Has(dev) || !pod.Has("net1") {
		t.Fatalf("after attach: on host %v, net1 in pod %v", host.Has(dev), pod.Has("net1"))
	}
	h.mustRun(t, state(t, specs.StateStopped, 0, b), "detach", "--host-ifname", dev, "--pod-ifname", "net1")
	if got := host.State(t, dev); !got.Equal(before) {
		t.Errorf("%s home is %+v, want %+v", dev, got, before)
	}
}

// TestHookBoundsWhatItPrints: values from outside (flags, the OCI state, config.json) are repeated
// in the error line clipped, never whole.
func TestHookBoundsWhatItPrints(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	big := strings.Repeat("x", 100<<10) // an argument's limit is 128 KiB
	huge := strings.Repeat("y", 10<<20)
	dev, _ := device(t, host, 1)
	withState := func(id, bundle string) []byte {
		data, err := json.Marshal(specs.State{Version: specs.Version, ID: id, Status: specs.StateCreating, Pid: 1, Bundle: bundle})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	good := bundle(t, netnstest.New(t).Path, true)
	tests := []struct {
		name    string
		stdin   []byte
		lockDir string
		args    []string
		wantErr string
	}{
		{name: "long host name", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", big}, wantErr: "is longer than 15 bytes"},
		{name: "long pod name", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", dev, "--pod-ifname", big}, wantErr: "is longer than 15 bytes"},
		{name: "long PCI address", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--pci-address", big}, wantErr: "is not of the form"},
		{name: "long unknown flag", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--" + big}, wantErr: "flag provided but not defined"},
		{name: "long stray argument", stdin: state(t, specs.StateCreating, 1, good), args: []string{"attach", "--host-ifname", dev, big}, wantErr: "unexpected argument"},
		{name: "long lock directory", stdin: state(t, specs.StateCreating, 1, good), lockDir: "/proc/" + big, args: []string{"attach", "--host-ifname", dev}, wantErr: "lock directory"},
		{name: "long container ID", stdin: withState(strings.Repeat("i", 900<<10), filepath.Join(t.TempDir(), "gone")), args: []string{"attach", "--host-ifname", dev}, wantErr: "bundle config"},
		{name: "long bundle path", stdin: withState("c1", "/"+strings.Repeat("b/", 400<<10)), args: []string{"attach", "--host-ifname", dev}, wantErr: "bundle config"},
		{name: "long namespace path", stdin: state(t, specs.StateCreating, 1, bundle(t, "/run/netns/"+huge, true)), args: []string{"attach", "--host-ifname", dev}, wantErr: "open pod network namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h
			if tt.lockDir != "" {
				h.lockDir = tt.lockDir
			}
			o := h.run(t, tt.stdin, tt.args...)
			if o.code != 1 || o.stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", o.code, o.stdout)
			}
			if len(o.stderr) > 4097 || strings.Count(o.stderr, "\n") != 1 {
				t.Errorf("stderr is %d bytes, %d lines; want one line of at most 4096 bytes", len(o.stderr), strings.Count(o.stderr, "\n"))
			}
			if len(o.stderr) > 1024 {
				t.Errorf("stderr is %d bytes: a value was repeated whole: %.200q", len(o.stderr), o.stderr)
			}
			if !strings.Contains(o.stderr, tt.wantErr) {
				t.Errorf("stderr %.300q lacks %q", o.stderr, tt.wantErr)
			}
		})
	}
}

func TestErrorLine(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string // the whole line, or its start when clipped
		max  int
	}{
		{name: "folds white space", err: errors.New("a\n\tb  c"), want: "netdevice-hook: a b c"},
		{name: "clips", err: errors.New(strings.Repeat("éé ", 5000)), want: "netdevice-hook: éé éé", max: 4096},
		{name: "invalid UTF-8 replaced", err: errors.New("bad \xff name"), want: "netdevice-hook: bad ? name"},
		{name: "a long word is clipped", err: errors.New("flag: -" + strings.Repeat("x", 300) + " end"), want: "netdevice-hook: flag: -" + strings.Repeat("x", 63) + "...(301 bytes) end"},
	}
	for _, tt := range tests {
		got := errorLine(tt.err)
		if tt.max > 0 {
			if len(got) > tt.max || !strings.HasPrefix(got, tt.want) || !strings.HasSuffix(got, "(message clipped)") || !utf8.ValidString(got) {
				t.Errorf("%s: errorLine is %d bytes, %.40q...%q", tt.name, len(got), got, got[len(got)-30:])
			}
			continue
		}
		if got != tt.want {
			t.Errorf("%s: errorLine = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestHookBridgePort: a bridge port moves only with --allow-upper-devices, and comes home into its
// bridge, in the admin state it had.
func TestHookBridgePort(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t), netnstest.New(t)
	h := hook{host: host, lockDir: t.TempDir()}
	dev, _ := device(t, host, 1)
	br := host.Bridge(t)
	host.Exec(t, "ip", "link", "set", dev, "master", br)
	host.Exec(t, "ip", "link", "set", dev, "down")
	before := host.State(t, dev)
	b := bundle(t, pod.Path, true)
	args := []string{"--host-ifname", dev, "--pod-ifname", "net1"}

	o := h.run(t, state(t, specs.StateCreating, 1, b), append([]string{"attach"}, args...)...)
	if o.code != 1 || !strings.Contains(o.stderr, br+" (its master)") {
		t.Fatalf("attach without --allow-upper-devices: exit %d, stderr %q", o.code, o.stderr)
	}
	args = append(args, "--allow-upper-devices")
	h.mustRun(t, state(t, specs.StateCreating, 1, b), append([]string{"attach"}, args...)...)
	if got := pod.State(t, "net1"); !got.Up || !slices.Equal(got.Addrs, before.Addrs) {
		t.Errorf("net1 in the pod is %+v, want up with %v", got, before.Addrs)
	}
	h.mustRun(t, state(t, specs.StateStopped, 0, b), append([]string{"detach"}, args...)...)
	if got := host.State(t, dev); !got.Equal(before) {
		t.Errorf("%s home is %+v, want %+v", dev, got, before)
	}
	if m := host.Link(t, dev).Attrs().MasterIndex; m != host.Link(t, br).Attrs().Index {
		t.Errorf("%s came home outside its bridge %s (master %d)", dev, br, m)
	}
}
