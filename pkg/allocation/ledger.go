// Package allocation keeps which devices the kubelet has handed to containers. A device plugin hears
// Allocate and nothing else: no call says a pod is gone. The ledger therefore joins what the
// plugin saw (Allocate, and the free devices the kubelet offers in GetPreferredAllocation) with
// what the kubelet reports through its pod-resources API, so the daemon knows when a device inside
// a pod must stay in its pool and when what an allocation brought (a device-information file, IP
// addresses) must be released.
package allocation

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/podresources"
)

// DefaultGrace is how long a fresh allocation is kept though the kubelet does not report it: the
// kubelet records an allocation only after Allocate answers, and its pod may take a moment to show.
const DefaultGrace = 30 * time.Second

// Key names one device of one resource.
type Key struct{ Resource, ID string }

func (k Key) String() string { return k.Resource + "=" + k.ID }

// Entry is one allocation as the state file keeps it.
type Entry struct {
	Resource string
	ID       string
	Since    time.Time // when Allocate handed it out, or when the kubelet was first seen holding it
}

// Ledger is safe for concurrent use: Allocate runs on gRPC goroutines, the daemon loop syncs.
type Ledger struct {
	mu       sync.Mutex
	held     map[Key]time.Time
	released []Key // released since the last Released call
	grace    time.Duration
	now      func() time.Time
	changed  chan struct{} // one pending signal: the ledger changed since the last Changed receive
}

// New returns an empty ledger; grace <= 0 takes DefaultGrace.
func New(grace time.Duration) *Ledger {
	if grace <= 0 {
		grace = DefaultGrace
	}
	return &Ledger{held: map[Key]time.Time{}, grace: grace, now: time.Now, changed: make(chan struct{}, 1)}
}

// SetClock replaces the clock, for tests.
func (l *Ledger) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

// Changed is signalled (once, coalesced) whenever the ledger changes, so its owner can save it.
func (l *Ledger) Changed() <-chan struct{} { return l.changed }

func (l *Ledger) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Allocated records devices Allocate handed out.
func (l *Ledger) Allocated(resource string, ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, id := range ids {
		l.held[Key{resource, id}] = now
	}
	l.signal()
}

// Offered hears the devices the kubelet offers as free for a new allocation (GetPreferredAllocation):
// whatever the ledger holds of them is no longer held, and is returned as released.
func (l *Ledger) Offered(resource string, free []string) []Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	var released []Key
	for _, id := range free {
		k := Key{resource, id}
		if _, ok := l.held[k]; ok {
			delete(l.held, k)
			released = append(released, k)
		}
	}
	if len(released) > 0 {
		l.released = append(l.released, released...)
		l.signal()
	}
	return released
}

// Released drains the keys released since the last call (by Offered, Sync or Forget), sorted, for
// the owner to release what came with them. A key allocated again since is still listed: check
// Holds before releasing.
func (l *Ledger) Released() []Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.released
	l.released = nil
	sortKeys(out)
	return out
}

// Sync makes the ledger agree with the kubelet for the given resources (the ones served): devices
// the kubelet holds are held (an allocation made before a restart of the daemon whose state was
// lost), and devices it does not hold are released, unless allocated less than the grace period
// ago. Entries of other resources are left alone. It returns what was released, sorted.
func (l *Ledger) Sync(held podresources.Held, resources []string) []Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	served := make(map[string]bool, len(resources))
	changed := false
	for _, r := range resources {
		served[r] = true
		for id := range held[r] {
			k := Key{r, id}
			if _, ok := l.held[k]; !ok {
				l.held[k] = now
				changed = true
			}
		}
	}
	var released []Key
	for k, since := range l.held {
		if !served[k.Resource] || held.Holds(k.Resource, k.ID) || now.Sub(since) < l.grace {
			continue
		}
		delete(l.held, k)
		released = append(released, k)
	}
	l.released = append(l.released, released...)
	if changed || len(released) > 0 {
		l.signal()
	}
	sortKeys(released)
	return released
}

// Holds reports whether the device is allocated as far as the ledger knows.
func (l *Ledger) Holds(resource, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.held[Key{resource, id}]
	return ok
}

// Forget drops entries of resources that are no longer served, returning them (sorted): a removed
// pool's allocations are released with it.
func (l *Ledger) Forget(keep []string) []Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gone []Key
	for k := range l.held {
		if !slices.Contains(keep, k.Resource) {
			delete(l.held, k)
			gone = append(gone, k)
		}
	}
	if len(gone) > 0 {
		l.released = append(l.released, gone...)
		l.signal()
	}
	sortKeys(gone)
	return gone
}

// Entries lists the allocations, sorted, for the state file.
func (l *Ledger) Entries() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Entry, 0, len(l.held))
	for k, since := range l.held {
		out = append(out, Entry{Resource: k.Resource, ID: k.ID, Since: since})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Resource, b.Resource); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Restore adds entries a previous run saved.
func (l *Ledger) Restore(entries []Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range entries {
		l.held[Key{e.Resource, e.ID}] = e.Since
	}
}

func sortKeys(keys []Key) {
	slices.SortFunc(keys, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
}
