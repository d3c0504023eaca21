package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/inventory"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netdev"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// runDiscover prints the node's devices and the pool each one lands in, and exits non-zero on a bad
// config or an unreadable sysfs root. It serves nothing and changes nothing.
func runDiscover(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("netdevice-plugin discover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "selector config file (JSON or YAML, sriov-dp config.json format); required")
	sysfsRoot := fs.String("sysfs-root", inventory.DefaultSysfsRoot, "sysfs directory to read PCI devices from")
	prefix := fs.String("resource-prefix", config.DefaultResourcePrefix, "resource prefix for resources that name none")
	pciIDs := fs.String("pci-ids", "", "pci.ids file for vendor/device names (default: the usual system paths)")
	softwareLinks := fs.Bool("software-links", true, "also list software links (veth, dummy, ...) of this network namespace")
	devRoot := fs.String("dev-root", "/dev", "the host's device folder (whether /dev/infiniband/rdma_cm is there)")
	output := fs.String("o", "table", "output format: table or json")
	strict := fs.Bool("strict-config", false, "unknown and repeated config keys are errors, not warnings (for CI pipelines)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: netdevice-plugin discover --config FILE [--sysfs-root DIR] [--resource-prefix P] [--pci-ids FILE] [--software-links=false] [--strict-config] [-o table|json]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "discover: --config is required")
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "discover: -o %q: want table or json\n", *output)
		return 2
	}
	cfg, err := config.LoadWith(*configPath, config.Options{DefaultPrefix: *prefix, Strict: *strict})
	if err != nil {
		fmt.Fprintf(stderr, "discover: %v\n", err)
		return 1
	}
	scanner, err := inventory.New(inventory.Options{SysfsRoot: *sysfsRoot, PCIIDsPath: *pciIDs, SoftwareLinks: *softwareLinks, DevRoot: *devRoot})
	if err != nil {
		fmt.Fprintf(stderr, "discover: %v\n", err)
		return 1
	}
	devs, err := scanner.Scan()
	if err != nil {
		fmt.Fprintf(stderr, "discover: %v\n", err)
		return 1
	}
	result := pool.Assign(devs, cfg)
	rdmaMode, _ := netdev.RDMANetnsMode()
	if *output == "json" {
		err = writeJSON(stdout, result, cfg.Warnings, rdmaMode)
	} else {
		err = writeTable(stdout, result, cfg.Warnings, rdmaMode)
	}
	if err != nil {
		fmt.Fprintf(stderr, "discover: write output: %v\n", err)
		return 1
	}
	return 0
}

// discoverReport is the `-o json` document.
type discoverReport struct {
	Warnings   []string          `json:"warnings"`
	RDMAMode   string            `json:"rdmaNetnsMode"`
	Pools      []discoverPool    `json:"pools"`
	Unassigned []pool.Unassigned `json:"unassigned"`
}

type discoverPool struct {
	Resource  string            `json:"resource"`
	Interface *discoverIfConfig `json:"interface"`
	Devices   []device.Device   `json:"devices"`
}

// discoverIfConfig is a pool's interface settings in the JSON report.
type discoverIfConfig struct {
	PodIfName          string            `json:"podIfName"`
	MTU                int               `json:"mtu"`
	IPAM               json.RawMessage   `json:"ipam"`
	Routes             []netconf.Route   `json:"routes"`
	Sysctls            map[string]string `json:"sysctls"`
	CarryHostAddresses bool              `json:"carryHostAddresses"`
	CNIManaged         bool              `json:"cniManaged"`
}

func writeJSON(w io.Writer, r pool.Result, warnings []string, rdmaMode string) error {
	report := discoverReport{Warnings: append([]string{}, warnings...), RDMAMode: rdmaMode, Pools: []discoverPool{}, Unassigned: []pool.Unassigned{}}
	for _, p := range r.Pools {
		devs := make([]device.Device, len(p.Devices))
		for i := range p.Devices {
			devs[i] = listsNotNull(p.Devices[i])
		}
		in := p.Resource.Interface
		ifc := &discoverIfConfig{PodIfName: p.Resource.PodIfName, MTU: in.MTU, IPAM: in.IPAM, Routes: in.Routes, Sysctls: in.Sysctls,
			CarryHostAddresses: !in.DropHostAddresses, CNIManaged: p.Resource.CNIManaged}
		if ifc.Routes == nil {
			ifc.Routes = []netconf.Route{}
		}
		if ifc.Sysctls == nil {
			ifc.Sysctls = map[string]string{}
		}
		report.Pools = append(report.Pools, discoverPool{Resource: p.Resource.FullName(), Interface: ifc, Devices: devs})
	}
	for _, u := range r.Unassigned {
		u.Device = listsNotNull(u.Device)
		report.Unassigned = append(report.Unassigned, u)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(report)
}

// interfaceLine says how the pool sets its interfaces up in the pod, "" for as they are.
func interfaceLine(r *config.Resource) string {
	in := &r.Interface
	var parts []string
	if r.PodIfName != "" {
		parts = append(parts, "named "+r.PodIfName)
	}
	if in.MTU > 0 {
		parts = append(parts, "mtu "+strconv.Itoa(in.MTU))
	}
	if t := in.IPAMType(); t != "" {
		parts = append(parts, "ipam "+t)
	}
	for _, rt := range in.Routes {
		via := ""
		if rt.GW != "" {
			via = " via " + rt.GW
		}
		parts = append(parts, "route "+rt.Dst+via)
	}
	keys := make([]string, 0, len(in.Sysctls))
	for k := range in.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+in.Sysctls[k])
	}
	if in.DropHostAddresses {
		parts = append(parts, "host addresses stay")
	}
	if r.CNIManaged {
		parts = append(parts, "moved by the CNI")
	}
	return strings.Join(parts, ", ")
}

// listsNotNull gives a device's absent lists as [] in JSON, as absent strings are "".
func listsNotNull(d device.Device) device.Device {
	if d.RDMADevices == nil {
		d.RDMADevices = []string{}
	}
	if d.RDMACharDevices == nil {
		d.RDMACharDevices = []string{}
	}
	return d
}

var tableHeader = []string{"ID", "IFNAME", "KIND", "VENDOR:DEVICE", "DRIVER", "PF", "VF", "NUMA", "LINK", "STATE", "RDMA"}

// writeTable prints the config's warnings, one section per pool, in config order, then the devices
// in no pool with the reason. Absent values print as "-".
func writeTable(w io.Writer, r pool.Result, warnings []string, rdmaMode string) error {
	for _, warn := range warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	fmt.Fprintf(w, "RDMA netns mode: %s\n", rdmaMode)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range r.Pools {
		fmt.Fprintf(tw, "%s: %s\n", p.Resource.FullName(), plural(len(p.Devices), "device"))
		if line := interfaceLine(&p.Resource); line != "" {
			fmt.Fprintf(tw, "  interface: %s\n", line)
		}
		if len(p.Devices) == 0 {
			continue
		}
		fmt.Fprintf(tw, "  %s\n", strings.Join(tableHeader, "\t"))
		for i := range p.Devices {
			fmt.Fprintf(tw, "  %s\n", strings.Join(tableRow(&p.Devices[i]), "\t"))
		}
	}
	fmt.Fprintf(tw, "not in any pool: %s\n", plural(len(r.Unassigned), "device"))
	if len(r.Unassigned) > 0 {
		fmt.Fprintf(tw, "  %s\tREASON\n", strings.Join(tableHeader, "\t"))
		for i := range r.Unassigned {
			u := &r.Unassigned[i]
			fmt.Fprintf(tw, "  %s\t%s\n", strings.Join(tableRow(&u.Device), "\t"), u.Reason)
		}
	}
	return tw.Flush()
}

func tableRow(d *device.Device) []string {
	vendorDevice := ""
	if d.Vendor != "" || d.Device != "" {
		vendorDevice = d.Vendor + ":" + d.Device
	}
	pf := d.PFName
	if pf == "" {
		pf = d.PFPCIAddress
	}
	cells := []string{d.ID, strings.Join(d.IfNames, ","), d.Kind, vendorDevice, d.Driver, pf,
		number(d.VFIndex), number(d.NUMANode), d.LinkType, d.OperState, strings.Join(d.RDMADevices, ",")}
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	return cells
}

func number(n int) string {
	if n < 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
