// Package netns moves a network link from the host's network namespace into a pod's and back: the
// job of the netdevice-hook that the container runtime runs from the CDI spec, and of the daemon's
// reconciler for links the kernel returns when a pod's namespace is destroyed.
//
// A link that this package moved carries its host name (and, for a PCI function, its PCI address) in
// IFLA_IFALIAS, so the way home is known even after the link was renamed inside the pod and even on
// kernels that do not report a link's parent device. That alias replaces whatever alias the link had
// while it is away; the old one is restored when it is home.
//
// What a link must get back (the kernel flushes its addresses, takes it out of its bridge and sets
// it down when it changes namespace) is written down durably before anything changes it, in the
// device's record beside its lock (see record.go), and kept until the link is complete at home. Any
// hook on the device, and the reconciler, reads it first and finishes what a killed hook left half
// way. Our alias on a link marks it as away from home: in a pod, or on its way in or out.
//
// In exclusive RDMA netns mode a function's RDMA devices travel with its netdevs (Options.RDMADevices),
// through the narrow interface of package rdma; the order, the rollback and what the record keeps for
// them are in rdmamove.go.
package netns

import (
	"fmt"
	"iter"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/rdma"
)

// Defaults for Options.
const (
	DefaultLockDir   = "/run/netdevice-plugin/locks"
	DefaultSysfsRoot = "/sys"
)

// AliasPrefix starts the IFLA_IFALIAS of every link this package moved. The full alias is
// "netdevice-plugin:<host name>" for a software link and "netdevice-plugin:<host name>:<PCI address>"
// for a PCI function. Interface names cannot contain ':', so the host name is always the field
// between the first two colons; the prefix makes the alias recognisably ours, so nothing ever touches
// a link an administrator or another tool gave an alias.
const AliasPrefix = "netdevice-plugin:"

// maxIfNameLen is IFNAMSIZ-1: the longest interface name the kernel accepts.
const maxIfNameLen = 15

// pciAddressRE is a full PCI address, domain included (VMD domains have more than 4 digits).
var pciAddressRE = regexp.MustCompile(`^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// Target names the device to move: a PCI function by address (all of its netdevs move) or a link
// by its host name. Exactly one is set.
type Target struct {
	PCIAddress string // "0000:3b:01.0"
	HostName   string // "dummy0"
}

// Validate checks that exactly one field is set and well formed.
func (t Target) Validate() error {
	switch {
	case t.PCIAddress != "" && t.HostName != "":
		return fmt.Errorf("target names both PCI address %q and host interface %q: give one", Clip(t.PCIAddress), Clip(t.HostName))
	case t.PCIAddress != "":
		if !pciAddressRE.MatchString(t.PCIAddress) {
			return fmt.Errorf("PCI address %q is not of the form 0000:3b:01.0", Clip(t.PCIAddress))
		}
	case t.HostName != "":
		if err := validIfName(t.HostName); err != nil {
			return fmt.Errorf("host interface name: %w", err)
		}
	default:
		return fmt.Errorf("target names neither a PCI address nor a host interface")
	}
	return nil
}

// String is the device as messages name it.
func (t Target) String() string {
	if t.PCIAddress != "" {
		return "PCI device " + t.PCIAddress
	}
	return "link " + t.HostName
}

// lockKey names the per-device lock file. The reconciler derives the same key from the alias.
func (t Target) lockKey() string {
	if t.PCIAddress != "" {
		return "pci-" + t.PCIAddress
	}
	return "link-" + t.HostName
}

// Options tune Attach, Detach and ReconcileReturned. The zero value is the production setting.
type Options struct {
	// PodIfName is the name inside the pod ("net1"). When taken there by another link, the next free
	// name with a higher trailing number is used (net1 -> net2 -> ...), so several devices of one
	// container become net1, net2, ... "" keeps the host name (with the same rule on a clash).
	PodIfName string
	// SysfsRoot is where /sys is mounted, for finding a PCI function's netdevs. Default /sys.
	SysfsRoot string
	// LockDir holds one lock file per device; hooks on one device serialize on it. Default
	// DefaultLockDir.
	LockDir string
	// HostNS is the path of the host network namespace. "" means the caller's own (the hook runs in
	// the runtime's namespace, which is the host's).
	HostNS string
	// AllowUpperDevices lets Attach move a link that other links are bound to: a vxlan, macvlan or
	// VLAN on it, or its bridge or bond. The kernel deletes the links on it and takes it out of its
	// master when it leaves; Detach puts it back into its bridge or bond. Never set, such a link is
	// refused. Links that carry the default route are refused either way.
	AllowUpperDevices bool
	// RDMADevices are the target's RDMA devices (mlx5_2, ...), by their host names, that travel
	// with its netdevs: the daemon names them only when the node's RDMA netns mode is exclusive.
	// Attach moves them into the pod before the netdevs, Detach brings them home after the netdevs
	// (see Attach). Empty: nothing RDMA is done, unless the device's record lists RDMA devices that a
	// killed hook left away (those are finished).
	RDMADevices []string
	// DropHostAddresses: the link's host addresses stay behind (in its record, for its way home)
	// instead of going into the pod with it: the pool gives the pod its own (IPAM).
	DropHostAddresses bool
	// RDMA is how RDMA devices are listed, moved and renamed. nil: the kernel's, through netlink
	// (rdma.Netlink). Tests use a recording fake (package rdmafake).
	RDMA rdma.Links
}

// kernelRDMA is Options.RDMA's default. The fault-injection build replaces it with a fake whose
// state is in a file (faultinject.go), so that the kill tests can run on kernels without RDMA.
var kernelRDMA rdma.Links = rdma.Netlink{}

func (o Options) withDefaults() (Options, error) {
	if o.SysfsRoot == "" {
		o.SysfsRoot = DefaultSysfsRoot
	}
	if o.LockDir == "" {
		o.LockDir = DefaultLockDir
	}
	if o.PodIfName != "" {
		if err := validIfName(o.PodIfName); err != nil {
			return o, fmt.Errorf("pod interface name: %w", err)
		}
	}
	for i, name := range o.RDMADevices {
		if err := validRDMAName(name); err != nil {
			return o, err
		}
		if slices.Contains(o.RDMADevices[:i], name) {
			return o, fmt.Errorf("RDMA device %s is named twice", name)
		}
	}
	if o.RDMA == nil {
		o.RDMA = kernelRDMA
	}
	return o, nil
}

// Alias is the IFLA_IFALIAS a moved link carries.
func Alias(hostName, pciAddress string) string {
	if pciAddress == "" {
		return AliasPrefix + hostName
	}
	return AliasPrefix + hostName + ":" + pciAddress
}

// ParseAlias reads an alias written by Alias. ok is false for any alias that is not ours, so callers
// (the daemon's link-event loop) can cheaply skip every other link.
func ParseAlias(alias string) (hostName, pciAddress string, ok bool) {
	rest, found := strings.CutPrefix(alias, AliasPrefix)
	if !found {
		return "", "", false
	}
	hostName, pciAddress, hasPCI := strings.Cut(rest, ":")
	if validIfName(hostName) != nil {
		return "", "", false
	}
	if hasPCI && !pciAddressRE.MatchString(pciAddress) { // "name:" is not what Alias writes
		return "", "", false
	}
	return hostName, pciAddress, true
}

// validIfName applies the kernel's dev_valid_name rules: 1 to 15 bytes, not "." or "..", no '/',
// ':', NUL or white space, where the kernel's isspace also counts the byte 0xa0.
func validIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > maxIfNameLen:
		return fmt.Errorf("interface name %q is longer than %d bytes", Clip(name), maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\r\v\f\x00") || strings.IndexByte(name, 0xa0) >= 0:
		return fmt.Errorf("interface name %q contains '/', ':', NUL or white space", name)
	}
	return nil
}

// rdmaNameRE is what RDMA device names look like: mlx5_2, rocep134s0f0, ibp75s0, rdmaP23800p0s2,
// smi1. The kernel allows up to IB_DEVICE_NAME_MAX-1 (63) bytes; names here are letters, digits,
// '_', '-' and '.', which every driver and rdma-core's udev rules use.
var rdmaNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)

// validRDMAName checks an RDMA device name (see rdmaNameRE).
func validRDMAName(name string) error {
	if !rdmaNameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("RDMA device name %q is not 1 to 63 letters, digits, '_', '-' or '.'", Clip(name))
	}
	return nil
}

// maxShown bounds how much of a value from outside (a name, a path) a message repeats: a 50 MB
// name must not make a 50 MB log line.
const maxShown = 64

// Clip is s, or its first 64 bytes (whole UTF-8 characters) and how long it was: how this package,
// and the hook, quote a value from outside in a message.
func Clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], len(s))
}

// nameCandidates yields want, then want's trailing number counted up (net1 -> net2 -> ...; a name
// without a number gets one: eth -> eth1), skipping names too long for the kernel.
func nameCandidates(want string) iter.Seq[string] {
	return func(yield func(string) bool) {
		if !yield(want) {
			return
		}
		stem := strings.TrimRight(want, "0123456789")
		n := 0
		if digits := want[len(stem):]; digits != "" {
			n, _ = strconv.Atoi(digits) // at most 15 digits: fits
		}
		for i := n + 1; i < n+4096; i++ {
			name := stem + strconv.Itoa(i)
			if len(name) > maxIfNameLen || !yield(name) {
				return
			}
		}
	}
}
