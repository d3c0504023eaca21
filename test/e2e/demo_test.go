//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

// TestDemo is `make demo`: the seed demo on a real kubelet, for a person to read. It creates dummy0
// (an ifb where the kernel has no dummy type) with 192.168.8.8/32, serves it as
// networking.k8s.io/netdevice, runs the seed's pod, prints what the kubelet can allocate and
// `ip addr` inside the pod, deletes the pod and shows dummy0 back on the host.
func TestDemo(t *testing.T) {
	p := pluginBinaries(t)
	st := newStack(t, "demo")
	ctx := context.Background()
	addHostLink(t, st, hostLink{Name: "dummy0", Addr: seedAddr})
	const config = `{"resourceList":[{"resourceName":"netdevice","selectors":[{"ifNames":["dummy*"]}]}]}`
	startPlugin(t, st, p, config)
	if err := waitAllocatable(ctx, st, stack.Devices{seedResource: {"dummy0"}}, 60*time.Second); err != nil {
		pluginAlive(t, st)
		t.Fatalf("networking.k8s.io/netdevice never became allocatable: %v", err)
	}

	section("plugin config")
	fmt.Println(config)
	section("allocatable devices as the kubelet sees them (pod-resources API, GetAllocatableResources)")
	printDevices(ctx, t, st)

	manifest := seedManifest(t)
	section("pod spec (the seed demo's, with the local image)")
	fmt.Print(string(manifest))
	pod := runPod(t, st, "test", manifest)
	c, _, attach := pod.attach(t, "nginx", linkWant{Name: "dummy0", Addr: seedAddr})

	section(fmt.Sprintf("ip addr inside pod %s (container nginx), %d ms after the manifest was written", pod.Name, attach.Milliseconds()))
	out, err := st.Exec(ctx, c.ID, "ip", "addr")
	if err != nil {
		t.Fatalf("ip addr in the pod: %v", err)
	}
	fmt.Print(out)
	section("devices in use (pod-resources API, List)")
	used, err := st.InUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sortedKeys(used) {
		fmt.Printf("%s: %s\n", r, strings.Join(used[r], ", "))
	}
	section("host: is dummy0 there?")
	fmt.Printf("dummy0 on the host: %v\n", onHost("dummy0"))

	holdForPerson(st, pod.Name)
	home := pod.remove(t, homeLink{"dummy0", seedAddr})
	section("pod deleted")
	fmt.Printf("dummy0 back on the host after %d ms\n", home.Milliseconds())
	timing("demo", "attach_ms", attach, "home_ms", home)
}

func section(title string) { fmt.Printf("\n=== %s ===\n", title) }

func printDevices(ctx context.Context, t *testing.T, st *stack.Stack) {
	t.Helper()
	alloc, err := st.Allocatable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sortedKeys(alloc) {
		fmt.Printf("%s: %d (%s)\n", r, len(alloc[r]), strings.Join(alloc[r], ", "))
	}
}

func sortedKeys(d stack.Devices) []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
