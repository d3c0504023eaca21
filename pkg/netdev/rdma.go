package netdev

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// RDMA network-namespace modes, as `rdma system show` prints them.
const (
	RDMAShared      = "shared"    // every RDMA device is visible in every namespace: pods need only the character devices
	RDMAExclusive   = "exclusive" // an RDMA device lives in one namespace: it must move into the pod with its netdev
	RDMAUnavailable = "unavailable"
)

// RDMANetnsMode asks the kernel's RDMA netlink interface which network-namespace mode the RDMA
// subsystem is in. Without the subsystem (no ib_core) the mode is RDMAUnavailable and the error
// says why.
func RDMANetnsMode() (string, error) {
	mode, err := netlink.RdmaSystemGetNetnsMode()
	if err != nil {
		return RDMAUnavailable, fmt.Errorf("RDMA netns mode: %w", err)
	}
	switch mode {
	case RDMAShared, RDMAExclusive:
		return mode, nil
	}
	return RDMAUnavailable, fmt.Errorf("RDMA netns mode: the kernel answered %q", mode)
}
