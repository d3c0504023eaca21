//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSmoke needs no device plugin: a static pod from the local image runs on the pod network,
// `crictl exec` into it works, its agnhost stand-in serves, the kubelet's APIs the scenarios read
// answer, and the teardown (in newStack's cleanup) restores the host.
func TestSmoke(t *testing.T) {
	st := newStack(t, "smoke")
	ctx := context.Background()

	const manifest = "smoke.yaml"
	written, err := st.WriteManifest(manifest, podManifest("smoke", nil))
	if err != nil {
		t.Fatal(err)
	}
	pod := st.PodName("smoke")
	_, subnet, _ := net.ParseCIDR(st.Opts.Subnet)
	var eth0 string
	c, links, seen, err := waitPodLinks(ctx, st, pod, "app", []linkWant{{Name: "eth0"}}, 90*time.Second)
	if err != nil {
		t.Fatalf("pod %s never ran with eth0: %v", pod, err)
	}
	for _, a := range links["eth0"].Addrs {
		if ip, _, err := net.ParseCIDR(a); err == nil && subnet.Contains(ip) {
			eth0 = a
		}
	}
	if eth0 == "" {
		t.Errorf("eth0 in the pod has %v, want an address in the pod network %s", links["eth0"].Addrs, subnet)
	}
	if !links["lo"].up() {
		t.Errorf("lo in the pod is not up: %+v", links["lo"])
	}
	timing("smoke", "running_ms", seen.Sub(written))

	// a static pod's hostname is its pod name
	out, err := st.Exec(ctx, c.ID, "wget", "-q", "-O", "-", "http://127.0.0.1:80/hostname")
	if err != nil || strings.TrimSpace(out) != pod {
		t.Errorf("agnhost netexec /hostname inside the pod = %q, %v; want the pod's hostname %q", out, err, pod)
	}

	err = poll(ctx, 30*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		kp, err := st.KubeletPod(ctx, pod)
		if err == nil && kp.Status.Phase != "Running" {
			err = fmt.Errorf("kubelet /pods: %s phase %q, want Running", pod, kp.Status.Phase)
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
	alloc, err := st.Allocatable(ctx)
	if err != nil {
		t.Fatalf("pod-resources API: %v", err)
	}
	if len(alloc) != 0 {
		t.Errorf("allocatable devices without any plugin = %v, want none", alloc)
	}

	holdForPerson(st, pod)
	removed, err := st.RemoveManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	err = poll(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		if c, err := st.RunningContainer(ctx, pod, "app"); err == nil {
			return fmt.Errorf("container %s still runs", c.ID)
		}
		sbs, err := st.Sandboxes(ctx, pod)
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			if sb.State == "SANDBOX_READY" {
				return fmt.Errorf("sandbox %s still ready", sb.ID)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pod %s still runs after its manifest was removed: %v", pod, err)
	}
	timing("smoke", "stopped_ms", time.Since(removed))
}
