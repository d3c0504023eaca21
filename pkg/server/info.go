package server

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// Info is a PCI device's entry of PCIDEVICE_<PREFIX>_<NAME>_INFO, built as sriov-dp's info
// providers build it, as JSON with sorted keys:
//
//	generic  {"deviceID": <PCI address>}                            always
//	vfio     {"mount": "/dev/vfio/vfio", "dev-mount": <group node>}  vfio-pci
//	uio      {"mount": "/dev/uioN"}                                  igb_uio, uio, and uio_pci_generic (which sriov-dp misses)
//	rdma     {"issm", "umad", "uverbs", "rdma_cm": container paths, "rdma_dev": first RDMA device}  isRdma
//	vhost    {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"}  needVhostNet
//	extra    additionalInfo["*"], overridden by additionalInfo[<address>]  when the pool has additionalInfo
//
// Container paths throughout: a no-IOMMU group's dev-mount is /dev/vfio/<group>. sriov-dp fills
// vfio's dev-mount and uio's mount only after a device's first Allocate (a bug fixed on its master
// for vfio); here they are always there. "" for software links.
func Info(d *device.Device, res *config.Resource) string {
	if !d.IsPCI() {
		return ""
	}
	providers := map[string]map[string]string{"generic": {"deviceID": d.PCIAddress}}
	switch {
	case d.IsVFIO() && d.IOMMUGroup >= 0:
		providers["vfio"] = map[string]string{"mount": device.VFIOContainerNode, "dev-mount": d.VFIOContainerGroupNode()}
	case d.IsUIO() && d.UIODevice != "":
		providers["uio"] = map[string]string{"mount": d.UIODevice}
	}
	if d.RDMA && len(d.RDMADevices) > 0 {
		providers["rdma"] = rdmaInfo(d)
	}
	if d.VhostNet {
		providers["vhost"] = map[string]string{"net-mount": device.VhostNetNode, "tun-mount": device.TunNode}
	}
	if res.AdditionalInfo != nil {
		extra := map[string]string{}
		maps.Copy(extra, res.AdditionalInfo["*"])
		maps.Copy(extra, res.AdditionalInfo[d.PCIAddress])
		providers["extra"] = extra
	}
	data, _ := json.Marshal(providers) // maps of strings always encode
	return string(data)
}

// rdmaInfo is sriov-dp's rdma provider: each character device under the key its path contains
// (with several of a kind, the last one wins, as there), and the first RDMA device's name.
func rdmaInfo(d *device.Device) map[string]string {
	out := map[string]string{"rdma_dev": d.RDMADevices[0]}
	paths := slices.Clone(d.RDMACharDevices)
	if d.RDMACM && len(paths) > 0 {
		paths = append(paths, device.RDMACMNode)
	}
	for _, p := range paths {
		for _, key := range []string{"uverbs", "umad", "issm", "rdma_cm"} {
			if strings.Contains(p, key) {
				out[key] = p
				break
			}
		}
	}
	return out
}
