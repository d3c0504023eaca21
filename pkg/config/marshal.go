package config

import (
	"encoding/json"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
)

// The config file format, for Marshal. Parse does not use these: it walks the document itself so
// that every problem gets a path.
type fileConfig struct {
	ResourceList []fileResource `json:"resourceList"`
}

type fileResource struct {
	ResourceName    string         `json:"resourceName"`
	ResourcePrefix  string         `json:"resourcePrefix"`
	DeviceType      string         `json:"deviceType,omitempty"`
	ExcludeTopology bool           `json:"excludeTopology,omitempty"`
	PodIfName       string         `json:"podIfName,omitempty"`
	Selectors       []fileSelector `json:"selectors"`
	// nil stays absent; an empty map is kept (sriov-dp then still adds an empty "extra").
	AdditionalInfo    *map[string]map[string]string `json:"additionalInfo,omitempty"`
	CNIManaged        bool                          `json:"cniManaged,omitempty"`
	AllowUpperDevices bool                          `json:"allowUpperDevices,omitempty"`
	MTU               int                           `json:"mtu,omitempty"`
	IPAM              json.RawMessage               `json:"ipam,omitempty"`
	Routes            []netconf.Route               `json:"routes,omitempty"`
	Sysctls           map[string]string             `json:"sysctls,omitempty"`
	CarryHostAddrs    *bool                         `json:"carryHostAddresses,omitempty"`
}

type fileSelector struct {
	Vendors      []string `json:"vendors,omitempty"`
	Devices      []string `json:"devices,omitempty"`
	Drivers      []string `json:"drivers,omitempty"`
	PCIAddresses []string `json:"pciAddresses,omitempty"`
	ACPIIndexes  []string `json:"acpiIndexes,omitempty"`
	PFNames      []string `json:"pfNames,omitempty"`
	RootDevices  []string `json:"rootDevices,omitempty"`
	LinkTypes    []string `json:"linkTypes,omitempty"`
	PKeys        []string `json:"pKeys,omitempty"`
	IfNames      []string `json:"ifNames,omitempty"`
	LinkKinds    []string `json:"linkKinds,omitempty"`
	IsRdma       bool     `json:"isRdma,omitempty"`
	NeedVhostNet bool     `json:"needVhostNet,omitempty"`
}

// Marshal writes a config back in the file format (JSON), in canonical form: every prefix spelled
// out, selectors always a list, values normalised. Parse(Marshal(c)) gives c again.
func Marshal(c *Config) ([]byte, error) {
	f := fileConfig{ResourceList: make([]fileResource, 0, len(c.Resources))}
	for _, r := range c.Resources {
		fr := fileResource{
			ResourceName:      r.Name,
			ResourcePrefix:    r.Prefix,
			DeviceType:        r.DeviceType,
			ExcludeTopology:   r.ExcludeTopology,
			PodIfName:         r.PodIfName,
			Selectors:         make([]fileSelector, 0, len(r.Selectors)),
			CNIManaged:        r.CNIManaged,
			AllowUpperDevices: r.AllowUpperDevices,
			MTU:               r.Interface.MTU,
			IPAM:              r.Interface.IPAM,
			Routes:            r.Interface.Routes,
			Sysctls:           r.Interface.Sysctls,
		}
		if carry := !r.Interface.DropHostAddresses; carry != (r.Interface.IPAM == nil) { // not the default
			fr.CarryHostAddrs = &carry
		}
		if r.AdditionalInfo != nil {
			fr.AdditionalInfo = &r.AdditionalInfo
		}
		for _, s := range r.Selectors {
			fr.Selectors = append(fr.Selectors, fileSelector{
				Vendors:      s.Vendors,
				Devices:      s.Devices,
				Drivers:      s.Drivers,
				PCIAddresses: s.PCIAddresses,
				ACPIIndexes:  s.ACPIIndexes,
				PFNames:      pfStrings(s.PFNames),
				RootDevices:  pfStrings(s.RootDevices),
				LinkTypes:    s.LinkTypes,
				PKeys:        s.PKeys,
				IfNames:      s.IfNames,
				LinkKinds:    s.LinkKinds,
				IsRdma:       s.IsRdma,
				NeedVhostNet: s.NeedVhostNet,
			})
		}
		f.ResourceList = append(f.ResourceList, fr)
	}
	return json.MarshalIndent(f, "", "  ")
}

func pfStrings(sels []PFSelector) []string {
	if sels == nil {
		return nil
	}
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.String()
	}
	return out
}
