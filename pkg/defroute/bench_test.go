package defroute

import (
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// BenchmarkCarriers is what the hook pays per attach to find the protected links: a namespace with a
// few dozen links (32 veth ends) and IPv4 and IPv6 default routes.
func BenchmarkCarriers(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b)
	var dev string
	for range 16 {
		dev, _ = ns.Veth(b)
	}
	ns.AddAddr(b, dev, "198.18.40.2/24")
	ns.AddAddr(b, dev, "fdb5:1e6f:7d2a:40::2/64")
	ns.Exec(b, "ip", "route", "add", "default", "via", "198.18.40.1", "dev", dev)
	ns.Exec(b, "ip", "-6", "route", "add", "default", "via", "fdb5:1e6f:7d2a:40::1", "dev", dev)
	b.ReportAllocs()
	for b.Loop() {
		_, carriers, err := Carriers(ns.H)
		if err != nil || len(carriers) != 1 {
			b.Fatalf("Carriers = %v, %v", carriers, err)
		}
	}
}
