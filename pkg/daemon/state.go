package daemon

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/atomicfile"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// stateVersion changes when savedState does; an older file is ignored, not misread.
const stateVersion = 1

// savedState is what the daemon must remember across its own restarts (an upgrade, an OOM kill):
// the devices it pooled and the host names of PCI functions. A software link or a VF netdev inside
// a pod is absent from the host; without this, a restarted daemon would drop it from its pool and
// from the CDI spec, and the pod's container could not restart. Gob keeps every exported field of
// device.Device (JSON would drop the internal ones the pools match on).
type savedState struct {
	Version   int
	Pooled    []device.Device // sorted by ID
	HostNames []savedHostNames
}

type savedHostNames struct {
	PCIAddress string
	Names      []string
	LinkType   string
	Driver     string
}

// loadState restores the pooled devices and host names a previous run saved. A missing file is a
// first start; an unreadable or foreign one is logged and ignored (the scan rebuilds what it can).
func (d *Daemon) loadState() {
	path := d.opts.StateFile
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var st savedState
	if err == nil {
		err = gob.NewDecoder(bytes.NewReader(data)).Decode(&st)
	}
	if err == nil && st.Version != stateVersion {
		err = fmt.Errorf("state version %d, want %d", st.Version, stateVersion)
	}
	if err != nil {
		klog.ErrorS(err, "Ignoring the saved state of a previous run", "file", path)
		return
	}
	for _, dev := range st.Pooled {
		d.pooled[dev.ID] = dev
		d.restored[dev.ID] = true
	}
	for _, h := range st.HostNames {
		d.hostNames[h.PCIAddress] = hostNames{names: h.Names, linkType: h.LinkType, driver: h.Driver}
	}
	d.savedState = data
	klog.InfoS("Restored the state of a previous run", "file", path, "pooledDevices", len(st.Pooled))
}

// saveState writes the state when it changed, atomically (a new file renamed over the old).
func (d *Daemon) saveState() {
	path := d.opts.StateFile
	if path == "" {
		return
	}
	st := savedState{Version: stateVersion}
	for _, dev := range d.pooled {
		st.Pooled = append(st.Pooled, dev)
	}
	device.SortByID(st.Pooled)
	for addr, h := range d.hostNames {
		st.HostNames = append(st.HostNames, savedHostNames{PCIAddress: addr, Names: h.names, LinkType: h.linkType, Driver: h.driver})
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
