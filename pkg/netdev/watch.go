package netdev

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/defroute"
)

// LinkEvent is one netlink link notification: a link appeared, changed (state, name, carrier,
// master) or was deleted. Link is all of what the message said, so that a table of links (Table)
// follows without dumping them again.
type LinkEvent struct {
	Name    string
	Index   int
	Deleted bool
	Carrier string // device.CarrierUp, CarrierDown, or CarrierUnknown when admin down
	Alias   string
	Link    Link
	// Resync: the subscription failed (the socket's buffer overflowed, say) and was made again;
	// events in between are lost, so what the caller keeps must be read again. No other field is
	// set.
	Resync bool
}

// RouteEvent is a change of a default route (defroute.IsDefault), of any table and family. Other
// route changes are not reported: they cannot change which links carry the default route.
type RouteEvent struct {
	Deleted   bool
	LinkIndex int
	Resync    bool // as LinkEvent.Resync
}

// Receive buffer of the subscriptions: a burst (VFs created by the hundred, a namespace of links
// destroyed) must not overflow it. Root may set it past net.core.rmem_max.
const subscriptionBuffer = 8 << 20

// WatchLinks streams the link events of the calling process's namespace until ctx is done, then
// closes the channel. A subscription that fails is made again (with a backoff while it keeps
// failing) and a Resync event says events may have been lost.
func WatchLinks(ctx context.Context) (<-chan LinkEvent, error) {
	return watchLinks(ctx, nil)
}

// WatchLinksAt is WatchLinks for the namespace behind ns; the caller keeps ownership of ns.
func WatchLinksAt(ctx context.Context, ns netns.NsHandle) (<-chan LinkEvent, error) {
	return watchLinks(ctx, &ns)
}

func watchLinks(ctx context.Context, ns *netns.NsHandle) (<-chan LinkEvent, error) {
	subscribe := func(done <-chan struct{}, failed func(error)) (<-chan netlink.LinkUpdate, error) {
		updates := make(chan netlink.LinkUpdate, 256)
		opts := netlink.LinkSubscribeOptions{Namespace: ns, ErrorCallback: failed,
			ReceiveBufferSize: subscriptionBuffer, ReceiveBufferForceSize: true}
		if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
			// Without CAP_NET_ADMIN the forced size is refused: take what rmem_max allows.
			opts.ReceiveBufferForceSize = false
			updates = make(chan netlink.LinkUpdate, 256)
			if err2 := netlink.LinkSubscribeWithOptions(updates, done, opts); err2 != nil {
				return nil, fmt.Errorf("subscribe to link events: %w", err)
			}
		}
		return updates, nil
	}
	convert := func(u netlink.LinkUpdate) (LinkEvent, bool) {
		if u.IfInfomsg.Family == unix.AF_BRIDGE {
			// A bridge's notice about one of its ports (RTM_DELLINK when the port leaves the
			// bridge): the link's own notice comes as AF_UNSPEC.
			return LinkEvent{}, false
		}
		a := u.Attrs()
		return LinkEvent{
			Name:    a.Name,
			Index:   a.Index,
			Deleted: u.Header.Type == unix.RTM_DELLINK,
			Carrier: carrierFromFlags(u.IfInfomsg.Flags),
			Alias:   a.Alias,
			Link:    LinkOf(u.Link),
		}, true
	}
	return watch(ctx, "link", subscribe, convert, LinkEvent{Resync: true})
}

// WatchRoutes streams the default-route changes of the calling process's namespace, as
// WatchLinks streams its links.
func WatchRoutes(ctx context.Context) (<-chan RouteEvent, error) {
	return watchRoutes(ctx, nil)
}

// WatchRoutesAt is WatchRoutes for the namespace behind ns; the caller keeps ownership of ns.
func WatchRoutesAt(ctx context.Context, ns netns.NsHandle) (<-chan RouteEvent, error) {
	return watchRoutes(ctx, &ns)
}

func watchRoutes(ctx context.Context, ns *netns.NsHandle) (<-chan RouteEvent, error) {
	subscribe := func(done <-chan struct{}, failed func(error)) (<-chan netlink.RouteUpdate, error) {
		updates := make(chan netlink.RouteUpdate, 256)
		opts := netlink.RouteSubscribeOptions{Namespace: ns, ErrorCallback: failed, ReceiveBufferSize: subscriptionBuffer,
			ReceiveBufferForceSize: true}
		if err := netlink.RouteSubscribeWithOptions(updates, done, opts); err != nil {
			opts.ReceiveBufferForceSize = false
			updates = make(chan netlink.RouteUpdate, 256)
			if err2 := netlink.RouteSubscribeWithOptions(updates, done, opts); err2 != nil {
				return nil, fmt.Errorf("subscribe to route events: %w", err)
			}
		}
		return updates, nil
	}
	convert := func(u netlink.RouteUpdate) (RouteEvent, bool) {
		if !defroute.IsDefault(u.Route) {
			return RouteEvent{}, false
		}
		return RouteEvent{Deleted: u.Type == unix.RTM_DELROUTE, LinkIndex: u.Route.LinkIndex}, true
	}
	return watch(ctx, "route", subscribe, convert, RouteEvent{Resync: true})
}

// Backoff of a subscription that keeps failing.
const (
	resubscribeFirst = 100 * time.Millisecond
	resubscribeMax   = 10 * time.Second
)

// watch runs one subscription after another until ctx is done, converting its updates to events;
// after a failed one it sends resync once the next one is made.
func watch[U, E any](ctx context.Context, what string,
	subscribe func(done <-chan struct{}, failed func(error)) (<-chan U, error),
	convert func(U) (E, bool), resync E) (<-chan E, error) {
	done := make(chan struct{})
	failed := func(err error) {
		if ctx.Err() == nil { // a closed socket after cancel is not news
			klog.ErrorS(err, "Netlink subscription failed; subscribing again", "events", what)
		}
	}
	updates, err := subscribe(done, failed)
	if err != nil {
		close(done)
		return nil, err
	}
	events := make(chan E, 256)
	go func() {
		defer close(events)
		send := func(e E) bool {
			select {
			case events <- e:
				return true
			case <-ctx.Done():
				return false
			}
		}
		wait := resubscribeFirst
		for {
			select {
			case <-ctx.Done():
				close(done)
				return
			case u, ok := <-updates:
				if ok {
					wait = resubscribeFirst
					if e, keep := convert(u); keep && !send(e) {
						close(done)
						return
					}
					continue
				}
			}
			// The subscription ended without ctx: its socket failed. Make a new one.
			close(done)
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(2*wait, resubscribeMax)
				done = make(chan struct{})
				if updates, err = subscribe(done, failed); err == nil {
					break
				}
				close(done)
				klog.ErrorS(err, "Netlink subscription failed again", "events", what, "retryIn", wait)
			}
			if !send(resync) {
				close(done)
				return
			}
		}
	}()
	return events, nil
}
