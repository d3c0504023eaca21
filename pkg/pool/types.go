// Package pool decides which pool each device belongs to: a pure function of the devices and the
// config. The first resource (in file order) with a matching selector wins a device.
package pool

import (
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// Pool is one resource and the devices it serves, sorted by ID. A resource that matches nothing is
// still a Pool, with no devices.
type Pool struct {
	Resource config.Resource
	Devices  []device.Device
}

// Unassigned is a device in no pool and why. It marshals as the DEVICE object plus "reason".
type Unassigned struct {
	device.Device
	Reason string `json:"reason"`
}

// Result is the whole decision: pools in config order, then the devices left out, sorted by ID.
type Result struct {
	Pools      []Pool
	Unassigned []Unassigned
}
