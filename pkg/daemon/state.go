package daemon

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/atomicfile"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/safefile"
)

// stateVersion changes when savedState does; an older file is ignored, not misread.
const stateVersion = 2

// maxStateBytes bounds the state file: a device takes a few hundred bytes, so 16 MiB is room for
// tens of thousands; anything larger is not a state this daemon wrote.
const maxStateBytes = 16 << 20

// savedState is what the daemon must remember across its own restarts (an upgrade, an OOM kill):
// the devices it pooled, the host names of PCI functions and the allocations it knows of. A
// software link or a VF netdev inside a pod is absent from the host; without this, a restarted
// daemon would drop it from its pool and from the CDI spec, and the pod's container could not
// restart. Gob keeps every exported field of device.Device (JSON would drop the internal ones the
// pools match on).
type savedState struct {
	Version     int
	Pooled      []savedDevice // sorted by ID
	HostNames   []savedHostNames
	Allocations []allocation.Entry
}

type savedDevice struct {
	Resource string
	Device   device.Device
}

type savedHostNames struct {
	PCIAddress string
	Names      []string
	LinkType   string
	Driver     string
	RDMA       []string
	RDMAChars  []string
}

// loadState restores what a previous run saved. A missing file is a first start; an unreadable or
// foreign one is logged and ignored (the scan rebuilds what it can); an entry that is not valid is
// dropped with a log line. The file is read only if it is a regular file (no FIFO, no device, no
// symlink) of at most maxStateBytes, so nothing put in its place can hang the start or fill memory.
func (d *Daemon) loadState() {
	path := d.opts.StateFile
	if path == "" {
		return
	}
	data, err := safefile.Read(path, maxStateBytes, safefile.Options{NoFollow: true})
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var st *savedState
	if err == nil {
		st, err = decodeState(data)
	}
	if err != nil {
		klog.ErrorS(err, "Ignoring the saved state of a previous run", "file", path)
		return
	}
	for _, p := range st.Pooled {
		d.pooled[p.Device.ID] = pooledDevice{dev: p.Device, resource: p.Resource}
	}
	for _, h := range st.HostNames {
		d.hostNames[h.PCIAddress] = hostNames{names: h.Names, linkType: h.LinkType, driver: h.Driver, rdma: h.RDMA, rdmaChars: h.RDMAChars}
	}
	d.opts.Ledger.Restore(st.Allocations)
	d.savedState = data
	klog.InfoS("Restored the state of a previous run", "file", path, "pooledDevices", len(st.Pooled), "allocations", len(st.Allocations))
}

// decodeState decodes a state file and keeps only the entries that can be true of some host: each
// device and name list is checked the way discovery would have produced it. Dropped entries are
// logged. It never panics, whatever the bytes.
func decodeState(data []byte) (*savedState, error) {
	var st savedState
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&st); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state version %d, want %d", st.Version, stateVersion)
	}
	st.Pooled = slices.DeleteFunc(st.Pooled, func(p savedDevice) bool {
		if err := validDevice(&p.Device, p.Resource); err != nil {
			klog.InfoS("Dropping a saved device", "device", clip(p.Device.ID), "reason", err.Error())
			return true
		}
		return false
	})
	st.HostNames = slices.DeleteFunc(st.HostNames, func(h savedHostNames) bool {
		if err := validHostNames(&h); err != nil {
			klog.InfoS("Dropping saved host names", "pciAddress", clip(h.PCIAddress), "reason", err.Error())
			return true
		}
		return false
	})
	st.Allocations = slices.DeleteFunc(st.Allocations, func(a allocation.Entry) bool {
		if a.ID == "" || !strings.Contains(a.Resource, "/") || len(a.ID) > 256 || len(a.Resource) > 256 {
			klog.InfoS("Dropping a saved allocation", "pool", clip(a.Resource), "device", clip(a.ID))
			return true
		}
		return false
	})
	return &st, nil
}

// validDevice checks a saved device: an ID that is its PCI address or a valid interface name, and
// valid interface names.
func validDevice(dev *device.Device, resource string) error {
	if !strings.Contains(resource, "/") {
		return fmt.Errorf("pool %q is not a resource name", clip(resource))
	}
	switch {
	case dev.PCIAddress != "":
		if a, err := config.ParsePCIAddress(dev.PCIAddress); err != nil || a != dev.PCIAddress || dev.ID != dev.PCIAddress {
			return fmt.Errorf("PCI device with ID %q and address %q", clip(dev.ID), clip(dev.PCIAddress))
		}
	default:
		if err := config.ValidateIfName(dev.ID); err != nil {
			return fmt.Errorf("software link: %w", err)
		}
	}
	for _, n := range dev.IfNames {
		if err := config.ValidateIfName(n); err != nil {
			return err
		}
	}
	if dev.IfName != "" && !slices.Contains(dev.IfNames, dev.IfName) && dev.IfName != dev.ID {
		return fmt.Errorf("interface %q is not among its names", clip(dev.IfName))
	}
	return nil
}

func validHostNames(h *savedHostNames) error {
	if a, err := config.ParsePCIAddress(h.PCIAddress); err != nil || a != h.PCIAddress {
		return fmt.Errorf("not a PCI address")
	}
	if len(h.Names) == 0 && len(h.RDMA) == 0 {
		return fmt.Errorf("no interface names and no RDMA devices")
	}
	for _, n := range h.Names {
		if err := config.ValidateIfName(n); err != nil {
			return err
		}
	}
	for _, r := range h.RDMA {
		if r == "" || strings.ContainsAny(r, "/ \n") {
			return fmt.Errorf("RDMA device name %q", clip(r))
		}
	}
	for _, c := range h.RDMAChars {
		if !strings.HasPrefix(c, "/dev/infiniband/") || strings.Contains(c, "..") {
			return fmt.Errorf("RDMA character device %q", clip(c))
		}
	}
	return nil
}

// clip shortens a value for a log line.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// saveState writes the state when it changed, atomically (a new file renamed over the old).
func (d *Daemon) saveState() {
	path := d.opts.StateFile
	if path == "" {
		return
	}
	st := savedState{Version: stateVersion, Allocations: d.opts.Ledger.Entries()}
	for _, p := range d.pooled {
		st.Pooled = append(st.Pooled, savedDevice{Resource: p.resource, Device: p.dev})
	}
	slices.SortFunc(st.Pooled, func(a, b savedDevice) int { return strings.Compare(a.Device.ID, b.Device.ID) })
	for addr, h := range d.hostNames {
		st.HostNames = append(st.HostNames, savedHostNames{PCIAddress: addr, Names: h.names, LinkType: h.linkType, Driver: h.driver,
			RDMA: h.rdma, RDMAChars: h.rdmaChars})
	}
	slices.SortFunc(st.HostNames, func(a, b savedHostNames) int { return strings.Compare(a.PCIAddress, b.PCIAddress) })
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
		klog.ErrorS(err, "Encoding the daemon state failed")
		return
	}
	if bytes.Equal(buf.Bytes(), d.savedState) {
		return
	}
	if err := atomicfile.Write(path, bytes.NewReader(buf.Bytes()), 0o644); err != nil {
		klog.ErrorS(err, "Saving the daemon state failed; a restart would forget devices inside pods", "file", path)
		return
	}
	d.savedState = buf.Bytes()
}
