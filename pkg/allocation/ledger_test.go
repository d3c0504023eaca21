package allocation_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/allocation"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/podresources"
)

const (
	sriov = "intel.com/sriov"
	links = "networking.k8s.io/netdevice"
	other = "example.com/not-served"
)

func held(entries map[string][]string) podresources.Held {
	h := podresources.Held{}
	for res, ids := range entries {
		h[res] = map[string][]podresources.Pod{}
		for _, id := range ids {
			h[res][id] = []podresources.Pod{{Namespace: "default", Name: "p"}}
		}
	}
	return h
}

func TestLedger(t *testing.T) {
	now := time.Unix(1000, 0)
	l := allocation.New(30 * time.Second)
	l.SetClock(func() time.Time { return now })
	served := []string{sriov, links}

	l.Allocated(sriov, []string{"0000:3b:01.0", "0000:3b:01.1"})
	l.Allocated(links, []string{"dummy0"})
	select {
	case <-l.Changed():
	default:
		t.Fatal("Allocated did not signal a change")
	}

	// Fresh allocations survive a kubelet that does not list them yet.
	if got := l.Sync(held(nil), served); got != nil {
		t.Fatalf("Sync within the grace period released %v", got)
	}
	// Past the grace period, what the kubelet does not hold is released; what it holds stays, and
	// what it holds that the ledger never saw (state lost in a restart) joins.
	now = now.Add(time.Minute)
	got := l.Sync(held(map[string][]string{sriov: {"0000:3b:01.0", "0000:3b:01.5"}, other: {"x"}}), served)
	want := []allocation.Key{{Resource: sriov, ID: "0000:3b:01.1"}, {Resource: links, ID: "dummy0"}}
	if !sameKeys(got, want) {
		t.Errorf("Sync released %v, want %v", got, want)
	}
	for _, c := range []struct {
		res, id string
		want    bool
	}{{sriov, "0000:3b:01.0", true}, {sriov, "0000:3b:01.5", true}, {sriov, "0000:3b:01.1", false}, {links, "dummy0", false}, {other, "x", false}} {
		if l.Holds(c.res, c.id) != c.want {
			t.Errorf("Holds(%s, %s) = %v, want %v", c.res, c.id, !c.want, c.want)
		}
	}

	// The kubelet offering a device as free releases it at once.
	if got := l.Offered(sriov, []string{"0000:3b:01.5", "0000:3b:01.7"}); !sameKeys(got, []allocation.Key{{Resource: sriov, ID: "0000:3b:01.5"}}) {
		t.Errorf("Offered released %v", got)
	}

	// Everything released so far is queued for its owner, once.
	if got := l.Released(); !sameKeys(got, []allocation.Key{{Resource: sriov, ID: "0000:3b:01.1"}, {Resource: links, ID: "dummy0"}, {Resource: sriov, ID: "0000:3b:01.5"}}) {
		t.Errorf("Released = %v", got)
	}
	if got := l.Released(); got != nil {
		t.Errorf("second Released = %v, want nothing", got)
	}

	// Entries round-trip through the state file form.
	entries := l.Entries()
	again := allocation.New(0)
	again.Restore(entries)
	if !reflect.DeepEqual(again.Entries(), entries) || len(entries) != 1 || entries[0].ID != "0000:3b:01.0" {
		t.Errorf("restored %v, want %v", again.Entries(), entries)
	}

	// A pool no longer served drops its allocations.
	if got := l.Forget([]string{links}); !sameKeys(got, []allocation.Key{{Resource: sriov, ID: "0000:3b:01.0"}}) {
		t.Errorf("Forget released %v", got)
	}
	if len(l.Entries()) != 0 {
		t.Errorf("entries left: %v", l.Entries())
	}
}

func sameKeys(a, b []allocation.Key) bool {
	m := map[allocation.Key]int{}
	for _, k := range a {
		m[k]++
	}
	for _, k := range b {
		m[k]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}
