package server

import (
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// TestInfo pins each info provider's entry, as sriov-dp's GetEnvVal builds it.
func TestInfo(t *testing.T) {
	pci := func(addr, driver string, f func(*device.Device)) device.Device {
		d := device.New()
		d.ID, d.PCIAddress, d.Driver = addr, addr, driver
		if f != nil {
			f(&d)
		}
		return d
	}
	plain := config.Resource{Name: "a", Prefix: "intel.com"}
	extra := config.Resource{Name: "a", Prefix: "intel.com", AdditionalInfo: map[string]map[string]string{
		"*":            {"token": "3e49019f", "vlan": "1"},
		"0000:3b:02.1": {"token": "abc", "vlan": "100"},
	}}
	tests := []struct {
		name string
		dev  device.Device
		res  config.Resource
		want string
	}{
		{"netdev VF", pci("0000:3b:02.1", "iavf", nil), plain, `{"generic":{"deviceID":"0000:3b:02.1"}}`},
		{"vfio VF", pci("0000:3b:02.1", "vfio-pci", func(d *device.Device) { d.IOMMUGroup = 53 }), plain,
			`{"generic":{"deviceID":"0000:3b:02.1"},"vfio":{"dev-mount":"/dev/vfio/53","mount":"/dev/vfio/vfio"}}`},
		{"vfio VF in a no-IOMMU group: the container path", pci("0000:3b:02.1", "vfio-pci", func(d *device.Device) { d.IOMMUGroup, d.VFIONoIOMMU = 0, true }), plain,
			`{"generic":{"deviceID":"0000:3b:02.1"},"vfio":{"dev-mount":"/dev/vfio/0","mount":"/dev/vfio/vfio"}}`},
		{"igb_uio VF", pci("0000:3b:02.3", "igb_uio", func(d *device.Device) { d.UIODevice = "/dev/uio0" }), plain,
			`{"generic":{"deviceID":"0000:3b:02.3"},"uio":{"mount":"/dev/uio0"}}`},
		{"uio_pci_generic VF (sriov-dp leaves uio out)", pci("0000:3b:02.4", "uio_pci_generic", func(d *device.Device) { d.UIODevice = "/dev/uio1" }), plain,
			`{"generic":{"deviceID":"0000:3b:02.4"},"uio":{"mount":"/dev/uio1"}}`},
		{"vhost-net", pci("0000:3b:02.1", "vfio-pci", func(d *device.Device) { d.IOMMUGroup, d.VhostNet = 53, true }), plain,
			`{"generic":{"deviceID":"0000:3b:02.1"},"vfio":{"dev-mount":"/dev/vfio/53","mount":"/dev/vfio/vfio"},"vhost":{"net-mount":"/dev/vhost-net","tun-mount":"/dev/net/tun"}}`},
		{"additionalInfo for this address over *", pci("0000:3b:02.1", "iavf", nil), extra,
			`{"extra":{"token":"abc","vlan":"100"},"generic":{"deviceID":"0000:3b:02.1"}}`},
		{"additionalInfo *", pci("0000:3b:02.2", "iavf", nil), extra,
			`{"extra":{"token":"3e49019f","vlan":"1"},"generic":{"deviceID":"0000:3b:02.2"}}`},
		{"empty additionalInfo still gives extra", pci("0000:3b:02.2", "iavf", nil), config.Resource{AdditionalInfo: map[string]map[string]string{}},
			`{"extra":{},"generic":{"deviceID":"0000:3b:02.2"}}`},
		{"software link", func() device.Device { d := device.New(); d.ID = "dummy0"; return d }(), plain, ""},
	}
	for _, tt := range tests {
		if got := Info(&tt.dev, &tt.res); got != tt.want {
			t.Errorf("%s: Info = %s\nwant %s", tt.name, got, tt.want)
		}
	}
}
