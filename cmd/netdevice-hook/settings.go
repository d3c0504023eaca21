package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"syscall"

	current "github.com/containernetworking/cni/pkg/types/100"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
)

// sandboxAnnotations are where runtimes write a container's pod sandbox ID into its config.json:
// containerd's CRI plugin, then CRI-O.
var sandboxAnnotations = []string{"io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID"}

// containerIDPattern is what the CNI library accepts as CNI_CONTAINERID.
var containerIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// sandboxOf is the pod sandbox ID a runtime wrote into the container's config.json, "" when none
// did (a plain runc bundle). It is checked where it is used (leaseOwner): detach never needs it.
func sandboxOf(spec *specs.Spec) (key, id string) {
	for _, key := range sandboxAnnotations {
		if id, ok := spec.Annotations[key]; ok {
			return key, id
		}
	}
	return "", ""
}

// leaseOwner is who the container's IPAM lease is taken for: its pod sandbox, which every container
// of the pod, and every restart of one, shares (a new sandbox, the pod re-created, gets new
// addresses). Without a sandbox ID it is the network namespace's identity, which a pod's containers
// share too.
func (c container) leaseOwner() (string, error) {
	if c.SandboxKey != "" {
		if len(c.Sandbox) > 256 || !containerIDPattern.MatchString(c.Sandbox) {
			return "", fmt.Errorf("bundle config: annotation %s %q is not a container ID", c.SandboxKey, clip(c.Sandbox))
		}
		return c.Sandbox, nil
	}
	var st syscall.Stat_t
	if err := syscall.Stat(c.NetNS, &st); err != nil {
		return "", fmt.Errorf("network namespace %s: %w", clip(c.NetNS), err)
	}
	return fmt.Sprintf("netns-%d-%d", st.Dev, st.Ino), nil
}

// deviceID is the device's ID as the daemon knows it (kubelet's device ID), which its lease is
// filed under.
func deviceID(t netns.Target) string {
	if t.PCIAddress != "" {
		return t.PCIAddress
	}
	return t.HostName
}

// configure gives the device's interface in the pod what its pool says, after attach: addresses
// from the pool's IPAM plugin (the lease the pod sandbox has, or a new one), then MTU, sysctls,
// the result's and the pool's routes. A function with several netdevs gets them on the first by pod
// name. An error names the pool and what failed; the caller moves the device home.
func configure(s *netconf.Settings, t netns.Target, res netns.Result, c container) error {
	links := append(append(append([]netns.Moved(nil), res.Moved...), res.Finished...), res.InPlace...)
	if len(links) == 0 {
		return fmt.Errorf("pool %s: no link of the device in the pod to configure", s.Pool)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].PodName < links[j].PodName })
	ifName := links[0].PodName
	var result *current.Result
	if s.IPAM != nil {
		owner, err := c.leaseOwner()
		if err != nil {
			return fmt.Errorf("pool %s: %w", s.Pool, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), ipam.DefaultTimeout)
		defer cancel()
		// A hook killed during the ADD leaves the lease on disk; the daemon releases it once no pod
		// holds the device.
		if result, err = ipam.Add(ctx, s, deviceID(t), owner, c.NetNS, ifName); err != nil {
			return err
		}
	}
	if err := ipam.Configure(c.NetNS, ifName, result, s); err != nil {
		return fmt.Errorf("pool %s: %w", s.Pool, err)
	}
	return nil
}
