package pool

import (
	"slices"
	"strings"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// Assign places each device in the first resource (file order) with a matching selector. Devices
// with d.ExclusionReason() != "" are never placed (Unassigned with that reason), nor is a PF with VFs
// enabled (d.HasVFsEnabled(): Unassigned with device.ReasonPFWithVFs), as in sriov-dp. A device with upper links
// (d.Uppers) is placed only in a resource with AllowUpperDevices. Everything else unmatched is
// Unassigned with device.ReasonNoSelector. Every resource yields a Pool even with zero devices.
// Deterministic: pools in config order, devices sorted by ID, unassigned sorted by ID. Pure: no I/O;
// the Devices are copies, sharing only their IfNames slices with devs.
func Assign(devs []device.Device, cfg *config.Config) Result {
	// Sort indexes, not the (large) structs; pools then fill in ID order.
	order := make([]int, len(devs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(devs[a].ID, devs[b].ID) })

	// First decide, then copy each device once into slices of the right size.
	where := make([]int, len(devs)) // pool index, or unassigned
	sels := make([]*config.Selector, len(devs))
	counts := make([]int, len(cfg.Resources)+1)
	for _, i := range order {
		p := unassigned
		if devs[i].ExclusionReason() == "" {
			p, sels[i] = place(&devs[i], cfg)
		}
		where[i] = p
		if p == unassigned {
			p = len(cfg.Resources)
		}
		counts[p]++
	}
	res := Result{Pools: make([]Pool, len(cfg.Resources)), Unassigned: make([]Unassigned, 0, counts[len(cfg.Resources)])}
	for p := range cfg.Resources {
		res.Pools[p] = Pool{Resource: cfg.Resources[p], Devices: make([]device.Device, 0, counts[p])}
	}
	for _, i := range order {
		d := &devs[i]
		if p := where[i]; p != unassigned {
			placed := *d
			placed.VhostNet = sels[i].NeedVhostNet
			placed.RDMA = sels[i].IsRdma
			res.Pools[p].Devices = append(res.Pools[p].Devices, placed)
			continue
		}
		res.Unassigned = append(res.Unassigned, Unassigned{Device: *d, Reason: reason(d, cfg)})
	}
	return res
}

const unassigned = -1

// reason says why an unplaced device is in no pool.
func reason(d *device.Device, cfg *config.Config) string {
	if r := d.ExclusionReason(); r != "" {
		return r
	}
	if d.HasVFsEnabled() {
		return device.ReasonPFWithVFs
	}
	if len(d.Uppers) > 0 && matchesAny(d, cfg) {
		return device.ReasonUppers + " " + strings.Join(d.Uppers, ", ") + " (allowUpperDevices: true takes it)"
	}
	return device.ReasonNoSelector
}

// matchesAny reports whether some selector matches the device, pools' other rules aside.
func matchesAny(d *device.Device, cfg *config.Config) bool {
	for r := range cfg.Resources {
		for s := range cfg.Resources[r].Selectors {
			if Match(&cfg.Resources[r].Selectors[s], d) {
				return true
			}
		}
	}
	return false
}

// place returns the index of the first resource that takes d and the selector that matched, or
// unassigned.
func place(d *device.Device, cfg *config.Config) (int, *config.Selector) {
	if d.HasVFsEnabled() {
		// A PF with VFs carries its VFs' traffic (its link state is theirs): never offered, as in
		// sriov-dp, whatever the selectors say.
		return unassigned, nil
	}
	for r := range cfg.Resources {
		// Moving a netdev others are bound to deletes or detaches them: only a pool that says so
		// takes it (userspace-bound functions have no netdev, so no upper links).
		if len(d.Uppers) > 0 && !cfg.Resources[r].AllowUpperDevices {
			continue
		}
		for s := range cfg.Resources[r].Selectors {
			sel := &cfg.Resources[r].Selectors[s]
			if Match(sel, d) {
				return r, sel
			}
		}
	}
	return unassigned, nil
}
