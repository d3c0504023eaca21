package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// BenchmarkLinkEventToListAndWatch is the time from a real carrier change (the veth's peer set
// down or up) to the kubelet stand-in receiving the new ListAndWatch list: netlink event, the link
// table updated from the event itself (no dump, no scan), the one pool of the link placed again,
// and the gRPC stream. One op is one flip. "isolated": the previous flip's events have settled
// before each flip (untimed wait). "back-to-back": each flip follows the last update at once. With
// the event-driven inventory both are acted on at once; the coalescing window (5 ms isolated,
// the default 100 ms back-to-back) holds only scanners that are not Incremental. See
// BenchmarkEventToListAndWatch (scale_bench_test.go) for the same on 1,024 and 4,096 VFs.
func BenchmarkLinkEventToListAndWatch(b *testing.B) {
	requireNetns(b)
	for i, isolated := range []bool{true, false} {
		name := map[bool]string{true: "isolated", false: "back-to-back"}[isolated]
		b.Run(name, func(b *testing.B) {
			link := fmt.Sprintf("ndbench%d", i)
			_, peer := veth(b, link, fmt.Sprintf("ndbpeer%d", i))
			window := DefaultCoalesce
			if isolated {
				window = 5 * time.Millisecond
			}
			h := newHarness(b, harnessOpts{config: configOf(softwarePool("netdevice", link)), coalesce: window})
			p := h.plugin(netdevice)
			want := func(health string) func([]*pluginapi.Device) bool {
				return func(d []*pluginapi.Device) bool { return len(d) == 1 && d[0].Health == health }
			}
			ctx := context.Background()
			if _, err := p.WaitDevices(ctx, want(pluginapi.Healthy)); err != nil {
				b.Fatal(err)
			}
			down := true
			for b.Loop() {
				if isolated {
					b.StopTimer()
					time.Sleep(2*window + 5*time.Millisecond) // a flip's second event makes a trailing rescan, which holds the window once more
					b.StartTimer()
				}
				set, health := netlink.LinkSetUp, pluginapi.Healthy
				if down {
					set, health = netlink.LinkSetDown, pluginapi.Unhealthy
				}
				if err := set(peer); err != nil {
					b.Fatal(err)
				}
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := p.WaitDevices(wctx, want(health))
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				down = !down
			}
		})
	}
}
