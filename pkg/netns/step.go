package netns

// stepHook, when set, runs at every point between two changes Attach, Detach and ReconcileReturned
// make to a link or a record. Only the fault-injection build sets it (faultinject.go, build tag
// netdevice_faultinject), to kill the process at a chosen point; the hook binary as shipped has none.
var stepHook func(what string)

// step marks a point between two changes.
func step(what string) {
	if stepHook != nil {
		stepHook(what)
	}
}
