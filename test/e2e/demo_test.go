//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestClusterDemo is `make demo`: the seed README's demo, for a person to read, on a cluster built
// from source on this machine. It installs the plugin as the README says (`kubectl apply -k
// deploy/overlays/dev`), creates dummy0 (an ifb where the kernel has no dummy type) with
// 192.168.8.8/32 on the node, shows the node offering networking.k8s.io/netdevice: 1 (`kubectl get
// nodes ... | jq .status.allocatable`), runs the seed's pod, shows `kubectl exec test -- ip a` with
// dummy0 inside, deletes the pod and shows dummy0 back on the node, then tears everything down. It
// is TestCluster's first scenario, printed.
func TestClusterDemo(t *testing.T) {
	p := pluginBinaries(t)
	st := newCluster(t, "demo")
	k := newKube(t, st, true)
	section("A cluster from source on this machine")
	for _, s := range st.StartTimes() {
		fmt.Printf("%-22s %v\n", s.Name, s.D.Round(time.Millisecond))
	}
	fmt.Printf("(kubectl on this cluster: export KUBECONFIG=%s PATH=%s:$PATH)\n", st.Paths.AdminKubeconfig(), filepath.Dir(st.Opts.Bins.Kubectl))
	k.install(t, p)
	k.seedDemo(t)
}

func section(title string) { fmt.Printf("\n=== %s ===\n", title) }
