// Package cdi writes one CDI spec per pool: the file the container runtime reads to learn which hooks
// (netdevice-hook attach/detach) or device nodes (vfio) an allocated device needs.
package cdi

import (
	"fmt"

	"tags.cncf.io/container-device-interface/pkg/parser"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

// QualifiedName is the CDI device name Allocate answers for a device of the resource:
// "<prefix>/<resourceName>=<id>" (see config.Resource.CDIClass for the rare name CDI cannot take). The
// device name is its ID (PCI address or host interface name), so the kubelet's device ID and the CDI
// name never disagree.
func QualifiedName(res *config.Resource, id string) (string, error) {
	if err := parser.ValidateDeviceName(id); err != nil {
		return "", fmt.Errorf("device %q of resource %s cannot be a CDI device name: %w", id, res.FullName(), err)
	}
	return parser.QualifiedName(res.Prefix, res.CDIClass(), id), nil
}
