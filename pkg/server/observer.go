package server

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
