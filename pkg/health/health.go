// Package health decides whether a device that is on the host can be used, from the facts a scan
// found: the rules the device-plugin servers report to the kubelet as Healthy or Unhealthy.
package health

import "github.com/netdevice-plugin/netdevice-plugin/pkg/device"

// Problem says why the device cannot be used now, or "" when it can. byID is the whole inventory
// of the scan (PFs in no pool included), for the VF rule:
//
//   - a PCI function with no driver bound is unusable ("driver unbound");
//   - a VF follows its PF: no carrier on the PF means none for the VF. The VF's own carrier is not
//     used: an idle VF on the host is administratively down, which reads as no carrier;
//   - any other device is unusable when its own netdev has no carrier (CarrierDown). An unknown
//     carrier (no netdev on the host: a vfio-pci device, a netdev inside a pod) is no problem.
func Problem(d *device.Device, byID map[string]*device.Device) string {
	if d.IsPCI() && d.Driver == "" {
		return "driver unbound"
	}
	if d.IsVF() {
		pf, ok := byID[d.PFPCIAddress]
		if ok && pf.Carrier == device.CarrierDown {
			return "PF " + d.PFPCIAddress + pfName(pf) + " carrier down"
		}
		return ""
	}
	if d.Carrier == device.CarrierDown {
		return "carrier down"
	}
	return ""
}

func pfName(pf *device.Device) string {
	if pf.IfName == "" {
		return ""
	}
	return " (" + pf.IfName + ")"
}
