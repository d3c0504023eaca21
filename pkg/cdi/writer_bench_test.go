package cdi

import (
	"fmt"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// pool128 is an E810 port's worth of VFs: 128 netdev VFs with a pod-side name.
func pool128() pool.Pool {
	p := pool.Pool{Resource: resource("intel.com", "e810", "net1")}
	for i := range 128 {
		p.Devices = append(p.Devices, vf(fmt.Sprintf("0000:3b:%02x.%d", 1+i/8, i%8), "iavf", 100+i))
	}
	return p
}

// BenchmarkWritePool writes a changed 128-device spec every time (validate, write, rename).
func BenchmarkWritePool(b *testing.B) {
	w := NewWriter(b.TempDir(), testHook)
	pools := [2]pool.Pool{pool128(), pool128()}
	pools[1].Resource.PodIfName = "net2"
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := w.WritePool(pools[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePoolUnchanged is the daemon's common case: the pool did not change, nothing is written.
func BenchmarkWritePoolUnchanged(b *testing.B) {
	w := NewWriter(b.TempDir(), testHook)
	p := pool128()
	if err := w.WritePool(p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WritePool(p); err != nil {
			b.Fatal(err)
		}
	}
}
