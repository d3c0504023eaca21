package daemon

import (
	"errors"
	"sync"

	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/devinfo"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/server"
)

// Recorder is what the pool servers tell of allocations (server.Options.Recorder): it writes the
// device-information files an allocation brings and records it in the ledger; the daemon loop
// releases both when the kubelet no longer holds the device. One lock orders the two, so a
// release never removes the file of a device allocated again meanwhile.
type Recorder struct {
	ledger *allocation.Ledger
	files  *devinfo.Dir // nil: none written

	mu sync.Mutex
}

// NewRecorder returns a recorder for the ledger, writing device-information files into files
// (nil: none).
func NewRecorder(l *allocation.Ledger, files *devinfo.Dir) *Recorder {
	return &Recorder{ledger: l, files: files}
}

// Allocated implements server.Recorder: the device-information file of every PCI device, then
// the ledger. If a file cannot be written, the files written so far are removed and the error
// fails the Allocate: Multus would not find the device.
func (r *Recorder) Allocated(res config.Resource, devs []server.Device) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := res.FullName()
	ids := make([]string, 0, len(devs))
	var written []string
	for _, d := range devs {
		ids = append(ids, d.ID)
		if r.files == nil || d.PCIAddress == "" {
			continue // a software link has nothing the spec can describe
		}
		if err := r.files.Write(name, d.ID, devinfo.PCI(d.PCIAddress, d.RDMADevices)); err != nil {
			for _, id := range written {
				err = errors.Join(err, r.files.Remove(name, id))
			}
			return err
		}
		written = append(written, d.ID)
	}
	r.ledger.Allocated(name, ids)
	return nil
}

// Offered implements server.Recorder.
func (r *Recorder) Offered(resource string, free []string) { r.ledger.Offered(resource, free) }

// release removes what the released allocations brought, unless the device was allocated again
// since. It reports the keys it released.
func (r *Recorder) release(keys []allocation.Key) []allocation.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	var done []allocation.Key
	for _, k := range keys {
		if r.ledger.Holds(k.Resource, k.ID) {
			continue
		}
		if r.files != nil {
			if err := r.files.Remove(k.Resource, k.ID); err != nil {
				klog.ErrorS(err, "Removing a device-information file failed", "pool", k.Resource, "device", k.ID)
			}
		}
		done = append(done, k)
	}
	return done
}

// removeStale removes the device-information files of the resource's devices the ledger does not
// hold: files a previous run left for pods that are gone.
func (r *Recorder) removeStale(resource string, isID func(string) bool) {
	if r.files == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids, err := r.files.Devices(resource, isID)
	if err != nil {
		klog.ErrorS(err, "Listing device-information files failed", "dir", r.files.Path())
		return
	}
	for _, id := range ids {
		if r.ledger.Holds(resource, id) {
			continue
		}
		if err := r.files.Remove(resource, id); err != nil {
			klog.ErrorS(err, "Removing a stale device-information file failed", "pool", resource, "device", id)
			continue
		}
		klog.InfoS("Removed the device-information file of a device no pod holds", "pool", resource, "device", id)
	}
}
