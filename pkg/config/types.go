// Package config parses and validates the resource-selector config (the ConfigMap), in the format of
// the SR-IOV network device plugin's config.json plus this project's additions. Parsing is strict:
// every error names the field path, and nothing is half-loaded.
package config

import (
	"encoding/json"
	"strings"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"

	"tags.cncf.io/container-device-interface/pkg/parser"
)

// DefaultResourcePrefix is the prefix of a resource whose config names none and whose daemon was
// given no --resource-prefix: the seed demo's `networking.k8s.io/netdevice`.
const DefaultResourcePrefix = "networking.k8s.io"

// DeviceTypeNetDevice is the only deviceType served: network devices (PCI functions, software links).
const DeviceTypeNetDevice = "netDevice"

// Config is a parsed, validated selector config.
type Config struct {
	Resources []Resource // in file order; the first matching resource wins a device
	// Warnings are the problems sriov-dp would have passed over in silence ("<path>: unknown
	// field, ignored (did you mean ...)"), in document order; Load puts the file name in front.
	Warnings []string `json:",omitempty"`
}

// Resource is one pool: one extended resource served by its own device-plugin server.
type Resource struct {
	Name            string // resourceName, e.g. "netdevice"
	Prefix          string // resourcePrefix, or the default prefix
	DeviceType      string // DeviceTypeNetDevice
	ExcludeTopology bool   // do not report NUMA topology to the kubelet
	PodIfName       string // interface name inside the pod ("net1"); "" keeps the host name
	Selectors       []Selector
	// AdditionalInfo is sriov-dp's additionalInfo: "*" or a PCI address -> key -> value, given to
	// the pod under "extra" in PCIDEVICE_<...>_INFO. nil when the config has none.
	AdditionalInfo map[string]map[string]string
	// CNIManaged leaves the netdev to a CNI (sriov-cni through Multus), as with sriov-dp: the CDI
	// spec has no hook for it, and the plugin only allocates and writes the device-information file.
	CNIManaged bool `json:",omitempty"`
	// AllowUpperDevices lets the pool take a netdev other links are bound to (a vlan, macvlan or
	// vxlan on it, its bridge or bond): moving it deletes or detaches them. Off, such a netdev is in
	// no pool and the hook refuses to move it.
	AllowUpperDevices bool `json:",omitempty"`
	// Interface says how the interface is set up in the pod (our additions: mtu, ipam, routes,
	// sysctls, carryHostAddresses).
	Interface Interface
}

// Interface is a pool's interface settings.
type Interface struct {
	MTU  int             `json:",omitempty"` // 0 keeps the link's own
	IPAM json.RawMessage `json:",omitempty"` // a CNI IPAM plugin's config, canonical JSON (sorted keys); nil = none
	// Routes through the interface in the pod, after those the IPAM plugin returns.
	Routes []netconf.Route `json:",omitempty"`
	// Sysctls of the interface in the pod: "net.ipv4.conf.IFNAME.arp_ignore" -> "1".
	Sysctls map[string]string `json:",omitempty"`
	// DropHostAddresses leaves the link's host addresses behind: the default with ipam
	// (carryHostAddresses: false in the file), so the zero value is today's behaviour.
	DropHostAddresses bool `json:",omitempty"`
}

// IPAMType is the IPAM plugin's name, "" without IPAM.
func (i *Interface) IPAMType() string {
	if i.IPAM == nil {
		return ""
	}
	t, _ := netconf.IPAMType(i.IPAM) // checked by Parse
	return t
}

// FullName is the extended-resource name the kubelet sees: "<prefix>/<name>".
func (r *Resource) FullName() string { return r.Prefix + "/" + r.Name }

// CDIClass is the class of the pool's CDI kind "<prefix>/<class>": the resource name, unless CDI
// cannot take it as a class, which must start with a letter (sriov-dp allows "700VF"): then
// "x-<name>". Parse refuses two resources whose kinds would clash.
func (r *Resource) CDIClass() string {
	if parser.ValidateClassName(r.Name) == nil {
		return r.Name
	}
	return "x-" + r.Name
}

// CDIKind is the pool's CDI kind, "<prefix>/<class>".
func (r *Resource) CDIKind() string { return r.Prefix + "/" + r.CDIClass() }

// Selector is one selector object. Every field that is set must match (AND); within a field any
// listed value may match (OR). Values are normalised at parse time (hex IDs lower-case without 0x,
// PCI addresses in full "0000:3b:02.0" form).
type Selector struct {
	Vendors      []string
	Devices      []string
	Drivers      []string
	PCIAddresses []string
	ACPIIndexes  []string     // the function's acpi_index, decimal as sysfs prints it
	PFNames      []PFSelector // PF interface name with an optional VF index set: "ens1f0#0-3,7"
	RootDevices  []PFSelector // PF PCI address with an optional VF index set: "0000:86:00.0#0-3"
	LinkTypes    []string     // compared exactly, as sriov-dp does: "ether", "infiniband"
	PKeys        []string     // InfiniBand partition key of port 1, as the kernel prints it ("0x7fff")
	IfNames      []string     // glob patterns (path.Match syntax) on the host interface name
	LinkKinds    []string     // netlink kinds: "dummy", "veth", ...
	// IsRdma selects only functions with an RDMA device, and gives them its character devices.
	IsRdma bool `json:",omitempty"`
	// NeedVhostNet gives the devices this selector places /dev/vhost-net and /dev/net/tun too.
	NeedVhostNet bool `json:",omitempty"`
}

// PFSelector selects VFs of one PF, all of them or those in VFs.
type PFSelector struct {
	PF  string       // PF interface name (pfNames) or PF PCI address (rootDevices)
	VFs []IndexRange // nil: every VF of the PF
	// Invalid: the entry's VF ranges did not parse, so it selects nothing (sriov-dp loads such an
	// entry and it selects no VF of its PF); PF holds what came before '#', Raw the entry.
	Invalid bool   `json:",omitempty"`
	Raw     string `json:",omitempty"`
}

// IndexRange is an inclusive range of VF indexes.
type IndexRange struct{ First, Last int }

// HasVF reports whether the VF index is selected.
func (p PFSelector) HasVF(index int) bool {
	if p.Invalid {
		return false
	}
	if p.VFs == nil {
		return true
	}
	for _, r := range p.VFs {
		if index >= r.First && index <= r.Last {
			return true
		}
	}
	return false
}

// EnvName is the PCIDEVICE_<PREFIX>_<NAME> variable sriov-dp sets for this resource: prefix and
// name joined by '_', every '.' turned into '_', upper case; '-' stays ("intel.com/intel-vf" gives
// PCIDEVICE_INTEL_COM_INTEL-VF), exactly as sriov-dp's pool GetEnvs builds it.
func (r *Resource) EnvName() string {
	return strings.ToUpper(strings.ReplaceAll("PCIDEVICE_"+r.Prefix+"_"+r.Name, ".", "_"))
}

// InfoEnvName is the variable with the JSON description of the devices: EnvName + "_INFO".
func (r *Resource) InfoEnvName() string { return r.EnvName() + "_INFO" }
