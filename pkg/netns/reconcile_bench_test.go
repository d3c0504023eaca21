package netns

import (
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// BenchmarkReconcileReturnedNothingToDo is the daemon's common case on a link event: a host with a
// few dozen links (32 veth ends here), none of them ours.
func BenchmarkReconcileReturnedNothingToDo(b *testing.B) {
	netnstest.RequireRoot(b)
	host := netnstest.New(b)
	for range 16 {
		host.Veth(b)
	}
	o := Options{HostNS: host.Path, LockDir: b.TempDir()}
	b.ReportAllocs()
	for b.Loop() {
		got, err := ReconcileReturned(o)
		if err != nil || len(got) != 0 {
			b.Fatalf("ReconcileReturned = %v, %v", got, err)
		}
	}
}
