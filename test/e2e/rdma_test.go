//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/stack"
)

const rdmaResource = "networking.k8s.io/e2e_rdma"

// rdmaVFs are the RoCE VFs of the fixture's ConnectX-4 port 0 (enp3s0f0), which the pool takes.
var rdmaVFs = []string{"0000:03:00.2", "0000:03:00.3", "0000:03:00.4"}

// TestRDMA (issue 10): a pod gets an RDMA function's character devices from an isRdma pool, as on
// a node in shared RDMA mode with a CNI moving the netdev. This machine has no RDMA subsystem, so
// the daemon reads a sysfs fixture copied from a real ConnectX layout (pcitest's mlx-rdma) and a
// device folder (--dev-root) of nodes made with the numbers that sysfs gives, as the kernel makes
// them; everything from the kubelet on is real: Allocate's device specs and CDI device nodes go
// through containerd and runc into the container, with the _INFO environment and the
// device-information file, which goes when the pod does.
func TestRDMA(t *testing.T) {
	p := pluginBinaries(t)
	st := newStack(t, "rdma")
	ctx := context.Background()
	sysfs, err := pcitest.BuildFixture("mlx-rdma", filepath.Join(st.Paths.Work, "fixture"))
	if err != nil {
		t.Fatal(err)
	}
	devRoot := filepath.Join(st.Paths.Work, "dev")
	nodes := map[string]map[string]string{} // VF -> device name -> "major:minor"
	for _, vf := range rdmaVFs {
		nodes[vf] = mknodLikeSysfs(t, sysfs, devRoot, vf)
	}
	mknod(t, filepath.Join(devRoot, "infiniband", "rdma_cm"), 10, 58)

	cfg := `{"resourceList":[{"resourceName":"e2e_rdma","cniManaged":true,
  "selectors":{"vendors":["15b3"],"devices":["1016"],"pfNames":["enp3s0f0"],"isRdma":true}}]}`
	devinfo := filepath.Join(st.Paths.Work, "devinfo")
	startPlugin(t, st, p, cfg, "--sysfs-root", sysfs, "--dev-root", devRoot)
	if err := waitAllocatable(ctx, st, stack.Devices{rdmaResource: rdmaVFs}, 60*time.Second); err != nil {
		pluginAlive(t, st)
		t.Fatalf("the RDMA pool never became allocatable: %v", err)
	}

	pod := runPod(t, st, "rdma", podManifest("rdma", map[string]int{rdmaResource: 1}))
	var c stack.Container
	if err := poll(ctx, attachTimeout, 100*time.Millisecond, func(ctx context.Context) (err error) {
		c, err = st.RunningContainer(ctx, pod.Name, "app")
		return err
	}); err != nil {
		pluginAlive(t, st)
		t.Fatalf("pod %s never ran: %v", pod.Name, err)
	}
	running := time.Since(pod.written)
	got, err := st.InUse(ctx)
	if err != nil || len(got[rdmaResource]) != 1 {
		t.Fatalf("kubelet allocations %v, %v; want one device of %s", got, err, rdmaResource)
	}
	vf := got[rdmaResource][0]

	// the function's own character devices and the shared rdma_cm, with the host's numbers
	out, err := st.Exec(ctx, c.ID, "ls", "-ln", "/dev/infiniband")
	if err != nil {
		t.Fatalf("ls /dev/infiniband in the pod: %v: %s", err, out)
	}
	want := map[string]string{"rdma_cm": "10:58"}
	for name, num := range nodes[vf] {
		want[name] = num
	}
	if inPod := charDevices(out); !maps.Equal(inPod, want) {
		t.Errorf("/dev/infiniband in the pod holds %v, want %v (the devices of %s):\n%s", inPod, want, vf, out)
	}

	// the environment sriov-dp gives
	env, err := st.Exec(ctx, c.ID, "env")
	if err != nil {
		t.Fatal(err)
	}
	const envName = "PCIDEVICE_NETWORKING_K8S_IO_E2E_RDMA"
	if !slices.Contains(strings.Split(env, "\n"), envName+"="+vf) {
		t.Errorf("the pod's environment lacks %s=%s:\n%s", envName, vf, env)
	}
	var info map[string]struct {
		Generic map[string]string `json:"generic"`
		RDMA    map[string]string `json:"rdma"`
	}
	for _, line := range strings.Split(env, "\n") {
		if v, ok := strings.CutPrefix(line, envName+"_INFO="); ok {
			if err := json.Unmarshal([]byte(v), &info); err != nil {
				t.Errorf("%s_INFO = %q: %v", envName, v, err)
			}
		}
	}
	var uverbs string
	for name := range nodes[vf] {
		if strings.HasPrefix(name, "uverbs") {
			uverbs = "/dev/infiniband/" + name
		}
	}
	if r := info[vf].RDMA; r["uverbs"] != uverbs || r["rdma_cm"] != "/dev/infiniband/rdma_cm" || r["rdma_dev"] == "" {
		t.Errorf("%s_INFO rdma of %s = %v, want uverbs %s, rdma_cm and rdma_dev", envName, vf, r, uverbs)
	}

	// the device-information file Multus would read, while the pod holds the device
	file := filepath.Join(devinfo, strings.ReplaceAll(rdmaResource, "/", "-")+"-"+vf+"-device.json")
	data, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(data), `"rdma-device"`) || !strings.Contains(string(data), vf) {
		t.Errorf("device-information file %s: %q, %v; want one naming %s and its rdma-device", file, data, err, vf)
	}
	removed, err := st.RemoveManifest(pod.file)
	if err != nil {
		t.Fatal(err)
	}
	pod.removed = true
	if err := poll(ctx, releaseTimeout, 200*time.Millisecond, func(context.Context) error {
		if _, err := os.Stat(file); err == nil {
			return fmt.Errorf("%s is still there", file)
		}
		return nil
	}); err != nil {
		t.Errorf("after the pod was deleted: %v", err)
	}
	timing("rdma", "running_ms", running, "devinfo_gone_ms", time.Since(removed))
}

// mknodLikeSysfs makes, under devRoot/infiniband, the character devices sysfs lists for the PCI
// function (infiniband_verbs/uverbsN, infiniband_mad/umadN and issmN), with the numbers of their dev
// files, and returns them by name.
func mknodLikeSysfs(t *testing.T, sysfs, devRoot, addr string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, class := range []string{"infiniband_verbs", "infiniband_mad"} {
		dir := filepath.Join(sysfs, "bus", "pci", "devices", addr, class)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "dev"))
			if os.IsNotExist(err) {
				continue // abi_version and the like
			}
			if err != nil {
				t.Fatal(err)
			}
			num := strings.TrimSpace(string(raw))
			maj, min, ok := strings.Cut(num, ":")
			ma, err1 := strconv.Atoi(maj)
			mi, err2 := strconv.Atoi(min)
			if !ok || err1 != nil || err2 != nil {
				t.Fatalf("%s/%s/dev = %q", dir, e.Name(), num)
			}
			mknod(t, filepath.Join(devRoot, "infiniband", e.Name()), ma, mi)
			out[e.Name()] = num
		}
	}
	if len(out) == 0 {
		t.Fatalf("the fixture gives %s no RDMA character devices", addr)
	}
	return out
}

func mknod(t *testing.T, path string, major, minor int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(uint32(major), uint32(minor)))); err != nil {
		t.Fatalf("mknod %s: %v", path, err)
	}
}

// charDevices reads `ls -ln` output: character devices by name, as "major:minor".
func charDevices(ls string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(ls, "\n") {
		f := strings.Fields(line)
		// crw-rw-rw- 1 0 0 231, 200 Dec 1 12:00 uverbs8
		if len(f) < 6 || !strings.HasPrefix(f[0], "c") {
			continue
		}
		out[f[len(f)-1]] = strings.TrimSuffix(f[4], ",") + ":" + f[5]
	}
	return out
}
