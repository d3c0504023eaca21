// Package inventory is discovery as one call: every PCI network function of a sysfs root, the
// switchdev representors, and the software links and loopback of the current network namespace,
// with the facts that keep a device out of every pool (default route, loopback, representor) set.
package inventory

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci"
)

// DefaultSysfsRoot is where a real host mounts sysfs.
const DefaultSysfsRoot = "/sys"

// Options say where to look.
type Options struct {
	SysfsRoot     string // sysfs directory; "" means /sys. Fixture trees pass their own.
	PCIIDsPath    string // pci.ids file; "" searches the usual places. Missing means empty names.
	SoftwareLinks bool   // list software links of the current namespace (and find default routes)
	DevRoot       string // where the host's device nodes are ("" = /dev): whether rdma_cm is there
}

// Scanner discovers devices; pci.ids is found when the scanner is made, and read only for the
// vendor:device pairs the scans meet.
type Scanner struct {
	root    string
	ids     *pci.IDs
	links   bool
	devRoot string
}

// New loads pci.ids and returns a scanner.
func New(opts Options) (*Scanner, error) {
	root := opts.SysfsRoot
	if root == "" {
		root = DefaultSysfsRoot
	}
	ids, err := pci.OpenIDs(opts.PCIIDsPath)
	if err != nil {
		return nil, fmt.Errorf("load pci.ids: %w", err)
	}
	devRoot := opts.DevRoot
	if devRoot == "" {
		devRoot = "/dev"
	}
	return &Scanner{root: root, ids: ids, links: opts.SoftwareLinks, devRoot: devRoot}, nil
}

// SysfsRoot is the sysfs directory the scanner reads.
func (s *Scanner) SysfsRoot() string { return s.root }

// Scan returns every device, sorted by ID.
func (s *Scanner) Scan() ([]device.Device, error) {
	devs, err := pci.Scan(s.root, s.ids)
	if err != nil {
		return nil, fmt.Errorf("scan PCI devices under %s: %w", s.root, err)
	}
	s.markRDMACM(devs)
	if !s.links {
		return devs, nil
	}
	ns, err := netdev.Current()
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	soft, facts, err := ns.Scan()
	if err != nil {
		return nil, fmt.Errorf("scan software links and default routes: %w", err)
	}
	markLinkFacts(devs, facts)
	devs = append(devs, withoutPCINetdevs(soft, devs)...)
	device.SortByID(devs)
	return devs, nil
}

// withoutPCINetdevs drops the links that are netdevs of a PCI function: some drivers give theirs a
// netlink kind (IPoIB's are "ipoib"), and one netdev must not be two devices.
func withoutPCINetdevs(soft, pciDevs []device.Device) []device.Device {
	pciNames := map[string]bool{}
	for _, d := range pciDevs {
		for _, n := range d.IfNames {
			pciNames[n] = true
		}
	}
	out := soft[:0]
	for _, d := range soft {
		if !pciNames[d.IfName] {
			out = append(out, d)
		}
	}
	return out
}

// markLinkFacts flags the PCI devices one of whose netdevs carries a default route, and lists the
// links bound to their netdevs.
func markLinkFacts(devs []device.Device, facts netdev.Facts) {
	for i := range devs {
		for _, name := range devs[i].IfNames {
			if facts.Routed[name] {
				devs[i].DefaultRoute = true
			}
			devs[i].Uppers = append(devs[i].Uppers, facts.Uppers[name]...)
		}
	}
}

// markRDMACM notes on RDMA functions whether the host has the shared RDMA connection manager node,
// which their pods get with their own character devices (sriov-dp hands it out only when it is
// there).
func (s *Scanner) markRDMACM(devs []device.Device) {
	_, err := os.Stat(filepath.Join(s.devRoot, "infiniband", "rdma_cm"))
	for i := range devs {
		devs[i].RDMACM = err == nil && len(devs[i].RDMADevices) > 0
	}
}
