package pool

import (
	"sort"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// PoolByName returns the pool whose resource full name ("<prefix>/<name>") is full, or nil.
func (r Result) PoolByName(full string) *Pool {
	for i := range r.Pools {
		if r.Pools[i].Resource.FullName() == full {
			return &r.Pools[i]
		}
	}
	return nil
}

// Device returns the pool's device with the given ID (what the kubelet sends back in Allocate), or nil.
func (p *Pool) Device(id string) *device.Device {
	i := sort.Search(len(p.Devices), func(i int) bool { return p.Devices[i].ID >= id })
	if i < len(p.Devices) && p.Devices[i].ID == id {
		return &p.Devices[i]
	}
	return nil
}

// IDs lists the pool's device IDs in order.
func (p *Pool) IDs() []string {
	ids := make([]string, len(p.Devices))
	for i := range p.Devices {
		ids[i] = p.Devices[i].ID
	}
	return ids
}

// Find says where a device ended up: its pool, or nil and the reason it is in none. ok is false
// if the ID is unknown.
func (r Result) Find(id string) (pool *Pool, reason string, ok bool) {
	for i := range r.Pools {
		if r.Pools[i].Device(id) != nil {
			return &r.Pools[i], "", true
		}
	}
	for _, u := range r.Unassigned {
		if u.ID == id {
			return nil, u.Reason, true
		}
	}
	return nil, "", false
}
