package health

import (
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

func TestProblem(t *testing.T) {
	pf := func(addr, carrier string) device.Device {
		d := device.New()
		d.ID, d.PCIAddress, d.IfName, d.Driver, d.Carrier, d.SriovNumVFs = addr, addr, "ens1f0", "ice", carrier, 4
		return d
	}
	vf := func(addr, pfAddr, driver, carrier string) device.Device {
		d := device.New()
		d.ID, d.PCIAddress, d.PFPCIAddress, d.Driver, d.Carrier = addr, addr, pfAddr, driver, carrier
		return d
	}
	link := func(name, carrier string) device.Device {
		d := device.New()
		d.ID, d.IfName, d.Kind, d.Carrier = name, name, "veth", carrier
		return d
	}
	pfUp, pfDown := pf("0000:3b:00.0", device.CarrierUp), pf("0000:86:00.0", device.CarrierDown)
	inv := map[string]*device.Device{pfUp.ID: &pfUp, pfDown.ID: &pfDown}
	tests := []struct {
		name string
		dev  device.Device
		want string
	}{
		{"VF of a PF with carrier, VF admin-down", vf("0000:3b:02.0", pfUp.ID, "iavf", device.CarrierDown), ""},
		{"VF of a PF without carrier", vf("0000:86:02.0", pfDown.ID, "iavf", device.CarrierUp), "PF 0000:86:00.0 (ens1f0) carrier down"},
		{"VF with no driver", vf("0000:3b:02.1", pfUp.ID, "", device.CarrierUnknown), "driver unbound"},
		{"vfio-pci VF (no netdev)", vf("0000:3b:02.2", pfUp.ID, device.VFIODriver, device.CarrierUnknown), ""},
		{"VF whose PF is not in the inventory", vf("0000:5e:02.0", "0000:5e:00.0", "iavf", device.CarrierUnknown), ""},
		{"PF without carrier", pfDown, "carrier down"},
		{"PF with carrier", pfUp, ""},
		{"software link without carrier", link("veth1", device.CarrierDown), "carrier down"},
		{"software link with carrier", link("veth1", device.CarrierUp), ""},
		{"software link of unknown carrier", link("veth1", device.CarrierUnknown), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Problem(&tt.dev, inv); got != tt.want {
				t.Errorf("Problem(%s) = %q, want %q", tt.dev.ID, got, tt.want)
			}
		})
	}
}
