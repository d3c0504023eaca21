package netdev

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// LinkEvent is one netlink link notification: a link appeared, changed (state, name, carrier) or
// was deleted.
type LinkEvent struct {
	Name    string
	Index   int
	Deleted bool
	Carrier string // device.CarrierUp, CarrierDown, or CarrierUnknown when admin down
	Alias   string
}

// WatchLinks streams the link events of the calling process's namespace until ctx is done; the
// channel is closed then, or when the netlink socket fails (the error is logged), so callers fall
// back to their periodic rescan.
func WatchLinks(ctx context.Context) (<-chan LinkEvent, error) {
	return watch(ctx, nil)
}

// WatchLinksAt is WatchLinks for the namespace behind ns; the caller keeps ownership of ns.
func WatchLinksAt(ctx context.Context, ns netns.NsHandle) (<-chan LinkEvent, error) {
	return watch(ctx, &ns)
}

func watch(ctx context.Context, ns *netns.NsHandle) (<-chan LinkEvent, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	opts := netlink.LinkSubscribeOptions{
		Namespace: ns,
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // a closed socket after cancel is not news
				klog.ErrorS(err, "Netlink link subscription failed")
			}
		},
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	events := make(chan LinkEvent, 64)
	go func() {
		defer close(events)
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				a := u.Attrs()
				ev := LinkEvent{
					Name:    a.Name,
					Index:   a.Index,
					Deleted: u.Header.Type == unix.RTM_DELLINK,
					Carrier: carrierFromFlags(u.IfInfomsg.Flags),
					Alias:   a.Alias,
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return events, nil
}
