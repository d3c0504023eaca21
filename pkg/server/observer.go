package server

import "github.com/netdevice-plugin/netdevice-plugin/pkg/config"

// Observer hears what the servers do, for metrics and health endpoints. Calls come from the
// servers' goroutines and must not block.
type Observer interface {
	// Registration reports a registration attempt with the kubelet (err nil: registered).
	Registration(resource string, err error)
	// Allocation reports an Allocate call (err nil: the devices were handed out).
	Allocation(resource string, ids []string, err error)
}

// NopObserver ignores everything.
type NopObserver struct{}

// Registration implements Observer.
func (NopObserver) Registration(string, error) {}

// Allocation implements Observer.
func (NopObserver) Allocation(string, []string, error) {}

// Recorder hears what leaves the servers' hands, for the daemon's allocation ledger. Calls come
// from the servers' goroutines.
type Recorder interface {
	// Allocated hears the devices of one Allocate before the kubelet gets the answer; an error
	// fails the Allocate (the daemon could not write what the pod needs, such as a
	// device-information file).
	Allocated(res config.Resource, devs []Device) error
	// Offered hears the devices the kubelet offers as free for a new allocation.
	Offered(resource string, free []string)
}

// NopRecorder records nothing.
type NopRecorder struct{}

// Allocated implements Recorder.
func (NopRecorder) Allocated(config.Resource, []Device) error { return nil }

// Offered implements Recorder.
func (NopRecorder) Offered(string, []string) {}
