package config

// Empty reports whether the selector sets no criterion. Parse never returns an empty selector: it
// would match every device.
func (s *Selector) Empty() bool {
	return len(s.Vendors) == 0 && len(s.Devices) == 0 && len(s.Drivers) == 0 && len(s.PCIAddresses) == 0 &&
		len(s.ACPIIndexes) == 0 && len(s.PFNames) == 0 && len(s.RootDevices) == 0 && len(s.LinkTypes) == 0 &&
		len(s.PKeys) == 0 && !s.IsRdma && len(s.IfNames) == 0 && len(s.LinkKinds) == 0
}

// PCIOnly lists the set fields that only a PCI function can match (software links have no vendor,
// device, driver or PCI address, and are nobody's VF), by their config names.
func (s *Selector) PCIOnly() []string {
	var f []string
	add := func(name string, n int) {
		if n > 0 {
			f = append(f, name)
		}
	}
	add("vendors", len(s.Vendors))
	add("devices", len(s.Devices))
	add("drivers", len(s.Drivers))
	add("pciAddresses", len(s.PCIAddresses))
	add("acpiIndexes", len(s.ACPIIndexes))
	add("pfNames", len(s.PFNames))
	add("rootDevices", len(s.RootDevices))
	add("pKeys", len(s.PKeys))
	if s.IsRdma {
		add("isRdma", 1)
	}
	return f
}
