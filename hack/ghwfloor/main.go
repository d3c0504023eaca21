// Command ghwfloor is the floor `netdevice-plugin discover` is measured against: the least a program
// does to list a node's PCI functions with their pci.ids names through ghw, the library sriov-dp and
// most Go node agents use. It loads pci.ids the way ghw does by default (pcidb's search path),
// reads every function under the sysfs root with topology off, and prints one JSON object per
// network function (class 0x02). hack/bench-discover.sh runs it beside discover.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jaypipes/ghw"
)

type fn struct {
	Address    string `json:"address"`
	Vendor     string `json:"vendor"`
	Device     string `json:"device"`
	VendorName string `json:"vendorName"`
	DeviceName string `json:"deviceName"`
	Driver     string `json:"driver"`
}

func main() {
	sysfsRoot := flag.String("sysfs-root", "/sys", "sysfs directory")
	flag.Parse()
	root, err := filepath.Abs(*sysfsRoot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ghwfloor:", err)
		os.Exit(1)
	}
	info, err := ghw.PCI(
		ghw.WithChroot(filepath.Dir(root)),
		ghw.WithPathOverrides(map[string]string{"/sys": "/" + filepath.Base(root)}),
		ghw.WithDisableTopology(),
		ghw.WithDisableWarnings(),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ghwfloor:", err)
		os.Exit(1)
	}
	out := make([]fn, 0, len(info.Devices))
	for _, d := range info.Devices {
		if d.Class == nil || !strings.HasPrefix(d.Class.ID, "02") {
			continue
		}
		f := fn{Address: d.Address, Driver: d.Driver}
		if d.Vendor != nil {
			f.Vendor, f.VendorName = d.Vendor.ID, d.Vendor.Name
		}
		if d.Product != nil {
			f.Device, f.DeviceName = d.Product.ID, d.Product.Name
		}
		out = append(out, f)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "ghwfloor:", err)
		os.Exit(1)
	}
}
