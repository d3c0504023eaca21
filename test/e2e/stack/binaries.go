// Package stack brings up and tears down a real single-node Kubernetes stack for the end-to-end
// tests: containerd (CRI, CDI enabled) with Debian's runc, the CNI bridge plugin, and either a
// standalone kubelet running static pods, all on private paths, or a cluster: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on loopback with certificates of its own, and the
// kubelet joined as a node on the host's default kubelet and CDI paths, where a DaemonSet installed
// with kubectl finds them. It refuses a host where another kubelet or
// runtime runs (Preflight), records what it creates on the host in a state file as it goes, and its
// teardown, even one from another process after a killed run, removes only that and then verifies the
// host against a snapshot taken at start.
package stack

import (
	"fmt"
	"os"
	"path/filepath"
)

// Binaries are the programs the stack runs. hack/e2e-deps.sh builds them and prints their folders.
type Binaries struct {
	Kubelet    string // kubelet binary
	Containerd string // containerd binary; containerd-shim-runc-v2 and ctr sit next to it
	Crictl     string // crictl binary
	CNIBinDir  string // folder with bridge, host-local, loopback
	Runc       string // Debian's runc
	Busybox    string // static busybox for the pod image
	Agnhost    string // static test/e2e/agnhost binary
	Pause      string // static test/e2e/pause binary
	// cluster only
	Etcd              string
	APIServer         string // kube-apiserver
	ControllerManager string // kube-controller-manager
	Scheduler         string // kube-scheduler
	Kubectl           string
	Whereabouts       string // whereabouts' CNI IPAM plugin, which the cluster test puts into the host's /opt/cni/bin
	// WhereaboutsModule is whereabouts' module source (in the Go module cache): its CRDs and the
	// RBAC it documents are applied from there.
	WhereaboutsModule string
}

// WhereaboutsFile is a file of whereabouts' module source, by its path there.
func (b Binaries) WhereaboutsFile(rel string) string { return filepath.Join(b.WhereaboutsModule, rel) }

// Whereabouts' files the cluster test applies: its CRDs, and the install manifest whose
// ServiceAccount, ClusterRole and ClusterRoleBinding are the RBAC it documents for its plugin.
const (
	WhereaboutsIPPoolCRD      = "doc/crds/whereabouts.cni.cncf.io_ippools.yaml"
	WhereaboutsReservationCRD = "doc/crds/whereabouts.cni.cncf.io_overlappingrangeipreservations.yaml"
	WhereaboutsInstall        = "doc/crds/daemonset-install.yaml"
)

// Shim is the containerd runc shim next to containerd.
func (b Binaries) Shim() string {
	return filepath.Join(filepath.Dir(b.Containerd), "containerd-shim-runc-v2")
}

// Ctr is containerd's CLI next to containerd.
func (b Binaries) Ctr() string { return filepath.Join(filepath.Dir(b.Containerd), "ctr") }

// BinariesFromEnv reads the binaries' locations from the environment run.sh sets (the output of
// `hack/e2e-deps.sh --print-env` plus E2E_AGNHOST and E2E_PAUSE) and checks that each a standalone
// stack needs exists (a cluster's: CheckCluster).
func BinariesFromEnv() (Binaries, error) {
	env := func(name string) string { return os.Getenv(name) }
	b := Binaries{
		Kubelet:    filepath.Join(env("E2E_BIN_KUBELET"), "kubelet"),
		Containerd: filepath.Join(env("E2E_BIN_CONTAINERD"), "containerd"),
		Crictl:     filepath.Join(env("E2E_BIN_CRICTL"), "crictl"),
		CNIBinDir:  env("E2E_BIN_CNI"),
		Runc:       env("E2E_RUNC"),
		Busybox:    env("E2E_BUSYBOX"),
		Agnhost:    env("E2E_AGNHOST"),
		Pause:      env("E2E_PAUSE"),

		Etcd:              filepath.Join(env("E2E_BIN_ETCD"), "etcd"),
		APIServer:         filepath.Join(env("E2E_BIN_KUBE"), "kube-apiserver"),
		ControllerManager: filepath.Join(env("E2E_BIN_KUBE"), "kube-controller-manager"),
		Scheduler:         filepath.Join(env("E2E_BIN_KUBE"), "kube-scheduler"),
		Kubectl:           filepath.Join(env("E2E_BIN_KUBE"), "kubectl"),
		Whereabouts:       filepath.Join(env("E2E_BIN_WHEREABOUTS"), "whereabouts"),
		WhereaboutsModule: env("E2E_WHEREABOUTS_MODULE"),
	}
	return b, b.Check()
}

// Check reports the first binary a standalone stack needs that is missing, naming it and the
// variable that sets it.
func (b Binaries) Check() error {
	return checkFiles([]struct{ path, what string }{
		{b.Kubelet, "kubelet (E2E_BIN_KUBELET)"},
		{b.Containerd, "containerd (E2E_BIN_CONTAINERD)"},
		{b.Shim(), "containerd-shim-runc-v2 (E2E_BIN_CONTAINERD)"},
		{b.Ctr(), "ctr (E2E_BIN_CONTAINERD)"},
		{b.Crictl, "crictl (E2E_BIN_CRICTL)"},
		{filepath.Join(b.CNIBinDir, "bridge"), "CNI bridge (E2E_BIN_CNI)"},
		{filepath.Join(b.CNIBinDir, "host-local"), "CNI host-local (E2E_BIN_CNI)"},
		{filepath.Join(b.CNIBinDir, "loopback"), "CNI loopback (E2E_BIN_CNI)"},
		{b.Runc, "runc (E2E_RUNC)"},
		{b.Busybox, "busybox (E2E_BUSYBOX)"},
		{b.Agnhost, "agnhost (E2E_AGNHOST)"},
		{b.Pause, "pause (E2E_PAUSE)"},
	})
}

// CheckCluster reports the first file a cluster needs that is missing: the control plane's binaries,
// and whereabouts' plugin and module files (its scenario).
func (b Binaries) CheckCluster() error {
	files := []struct{ path, what string }{
		{b.Etcd, "etcd (E2E_BIN_ETCD)"},
		{b.APIServer, "kube-apiserver (E2E_BIN_KUBE)"},
		{b.ControllerManager, "kube-controller-manager (E2E_BIN_KUBE)"},
		{b.Scheduler, "kube-scheduler (E2E_BIN_KUBE)"},
		{b.Kubectl, "kubectl (E2E_BIN_KUBE)"},
		{b.Whereabouts, "whereabouts (E2E_BIN_WHEREABOUTS)"},
	}
	for _, f := range []string{WhereaboutsIPPoolCRD, WhereaboutsReservationCRD, WhereaboutsInstall} {
		// unset, the path is relative: checkFiles says so
		files = append(files, struct{ path, what string }{b.WhereaboutsFile(f), "whereabouts' " + f + " (E2E_WHEREABOUTS_MODULE)"})
	}
	return checkFiles(files)
}

func checkFiles(files []struct{ path, what string }) error {
	for _, c := range files {
		if c.path == "" || !filepath.IsAbs(c.path) {
			return fmt.Errorf("%s: path %q is not absolute; run test/e2e/run.sh, which builds and sets it", c.what, c.path)
		}
		if _, err := os.Stat(c.path); err != nil {
			return fmt.Errorf("%s: %w; run hack/e2e-deps.sh", c.what, err)
		}
	}
	return nil
}
