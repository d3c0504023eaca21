package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"syscall"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
)

// sandboxAnnotations are where runtimes write a container's pod sandbox ID into its config.json:
// containerd's CRI plugin, then CRI-O.
var sandboxAnnotations = []string{"io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID"}

// podAnnotations are where they write the pod's namespace, name and UID: containerd's CRI plugin,
// then the kubelet's container labels, which CRI-O copies into annotations.
var podAnnotations = [3][2]string{
	{"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"},
	{"io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"},
	{"io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"},
}

// containerIDPattern is what the CNI library accepts as CNI_CONTAINERID.
var containerIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// podNamePattern is what a pod's namespace, name and UID may hold (DNS subdomains, UUIDs): nothing
// that could break CNI_ARGS (';', '=').
var podNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// attachment is the IPAM request for the device in this container: the lease is for its pod
// sandbox, which every container of the pod, and every restart of one, shares (a new sandbox, the
// pod re-created, gets new addresses); without a sandbox ID (a plain runc bundle) for the network
// namespace's identity, which a pod's containers share too. The pod's namespace, name and UID go to
// the plugin as CNI_ARGS when the runtime wrote them.
func (c container) attachment(device, ifName string) (ipam.Attachment, error) {
	a := ipam.Attachment{Device: device, NetNS: c.NetNS, IfName: ifName}
	for _, key := range sandboxAnnotations {
		if id, ok := c.Annotations[key]; ok {
			if len(id) > 256 || !containerIDPattern.MatchString(id) {
				return a, fmt.Errorf("bundle config: annotation %s %q is not a container ID", key, clip(id))
			}
			a.ContainerID = id
			break
		}
	}
	if a.ContainerID == "" {
		var st syscall.Stat_t
		if err := syscall.Stat(c.NetNS, &st); err != nil {
			return a, fmt.Errorf("network namespace %s: %w", clip(c.NetNS), err)
		}
		a.ContainerID = fmt.Sprintf("netns-%d-%d", st.Dev, st.Ino)
	}
	for i, dst := range []*string{&a.PodNamespace, &a.PodName, &a.PodUID} {
		for _, key := range podAnnotations[i] {
			if v, ok := c.Annotations[key]; ok {
				if !podNamePattern.MatchString(v) {
					return a, fmt.Errorf("bundle config: annotation %s %q is not a Kubernetes name or UID", key, clip(v))
				}
				*dst = v
				break
			}
		}
	}
	return a, nil
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
		a, err := c.attachment(deviceID(t), ifName)
		if err != nil {
			return fmt.Errorf("pool %s: %w", s.Pool, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), ipam.DefaultTimeout)
		defer cancel()
		// A hook killed during the ADD leaves the lease on disk; the daemon releases it once no pod
		// holds the device.
		if result, err = ipam.Add(ctx, s, a); err != nil {
			return err
		}
	}
	if err := ipam.Configure(c.NetNS, ifName, result, s); err != nil {
		return fmt.Errorf("pool %s: %w", s.Pool, err)
	}
	return nil
}
