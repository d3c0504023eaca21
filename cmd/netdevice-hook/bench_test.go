package main

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// BenchmarkHookAttachDetach is one container's life as the runtime sees it: the hook binary exec'd
// with the OCI state on stdin, attach (into the pod as net1) then detach, in the real host namespace.
// Compare with BenchmarkNetlinkMove: the same two moves done bare.
func BenchmarkHookAttachDetach(b *testing.B) {
	netnstest.RequireRoot(b)
	pod := netnstest.New(b)
	dev, _ := device(b, netnstest.Own(b), 1)
	h := hook{lockDir: b.TempDir()}
	bdl := bundle(b, pod.Path, true)
	attach, detach := state(b, specs.StateCreating, 1, bdl), state(b, specs.StateStopped, 0, bdl)
	for b.Loop() {
		h.mustRun(b, attach, "attach", "--host-ifname", dev, "--pod-ifname", "net1")
		h.mustRun(b, detach, "detach", "--host-ifname", dev, "--pod-ifname", "net1")
	}
}

// BenchmarkNetlinkMove moves the same kind of veth into a pod namespace and back with netlink alone:
// the floor the hook cannot go below (the kernel waits for RCU on every move).
func BenchmarkNetlinkMove(b *testing.B) {
	netnstest.RequireRoot(b)
	host, pod := netnstest.Own(b), netnstest.New(b)
	dev, _ := device(b, host, 1)
	for b.Loop() {
		if err := host.H.LinkSetNsFd(host.Link(b, dev), pod.FD()); err != nil {
			b.Fatal(err)
		}
		if err := pod.H.LinkSetNsFd(pod.Link(b, dev), host.FD()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHookAttachDetachIPAM is BenchmarkHookAttachDetach for a pool with host-local IPAM, an MTU
// and a route. "same sandbox": a container restarting in its pod (the lease is reused, no plugin
// call after the first); "new sandbox": every attach is a new pod on the device (the old lease is
// released, DEL, and a new one taken, ADD: two plugin executions).
func BenchmarkHookAttachDetachIPAM(b *testing.B) {
	netnstest.RequireRoot(b)
	for _, newSandbox := range []bool{false, true} {
		name := map[bool]string{false: "same sandbox", true: "new sandbox"}[newSandbox]
		b.Run(name, func(b *testing.B) {
			pod := netnstest.New(b)
			dev, _ := device(b, netnstest.Own(b), 1)
			h := hook{lockDir: b.TempDir()}
			ip := newIPAM(b, "host-local")
			args := []string{"--host-ifname", dev, "--pod-ifname", "net1", "--netconf", ip.arg(b)}
			bundles := []string{sandboxBundle(b, pod.Path, "sandbox-a"), sandboxBundle(b, pod.Path, "sandbox-b")}
			i := 0
			for b.Loop() {
				bdl := bundles[0]
				if newSandbox {
					bdl = bundles[i%2]
				}
				i++
				h.mustRun(b, state(b, specs.StateCreating, 1, bdl), append([]string{"attach"}, args...)...)
				h.mustRun(b, state(b, specs.StateStopped, 0, bdl), append([]string{"detach"}, args...)...)
			}
		})
	}
}
