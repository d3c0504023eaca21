package netdev

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS of linux/rtnetlink.h: leave out IFLA_STATS,
// IFLA_STATS64 and the inet6 counters, the bulk of a link's message.
const rtextFilterSkipStats = 1 << 3

// dumpTimeout bounds one receive of a link dump: the kernel answers at once, or something is
// badly wrong.
const dumpTimeout = 10 * time.Second

// dumpLinks lists the namespace's links as Links, one receive buffer at a time: each message is
// made a Link before the next batch is read, so a namespace of thousands of links (every VF's
// netdev is one) never sits in memory as thousands of netlink.Link values and their raw messages,
// as netlink's LinkList holds them. VF details and counters are not asked for (LinkList asks for
// VF details; a PF's message then lists each of its VFs). A dump the kernel marks interrupted returns what it read
// and an error wrapping netlink.ErrDumpInterrupted.
func (n *Namespace) dumpLinks() ([]Link, error) {
	fd := n.dump
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	// No counters either (Linux 4.19 and later; older kernels ignore the flag and send them).
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(rtextFilterSkipStats)))
	if err := unix.Sendto(fd, req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("link dump: send: %w", err)
	}
	buf := make([]byte, 64<<10)
	var links []Link
	interrupted := false
	for {
		nr, from, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("link dump: receive: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != nl.PidKernel {
			continue
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			return nil, fmt.Errorf("link dump: %w", err)
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Header.Seq != req.Seq {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if interrupted {
					return links, fmt.Errorf("link dump: %w", netlink.ErrDumpInterrupted)
				}
				return links, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno != 0 {
						return nil, fmt.Errorf("link dump: %w", syscall.Errno(-errno))
					}
				}
				continue
			case unix.RTM_NEWLINK:
			default:
				continue
			}
			if l, ok := parseLink(m.Data); ok {
				links = append(links, l)
				continue
			}
			hdr := unix.NlMsghdr(m.Header)
			l, err := netlink.LinkDeserialize(&hdr, m.Data)
			if err != nil {
				return nil, fmt.Errorf("link dump: %w", err)
			}
			links = append(links, LinkOf(l)) // before buf is read into again: l may point into it
		}
	}
}

// routeSocket opens the rtnetlink socket of a Namespace's dumps, in the namespace behind ns
// (netns.None(): the calling thread's). A socket stays in the namespace it was made in.
func routeSocket(ns netns.NsHandle) (int, error) {
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return -1, fmt.Errorf("link dump: socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("link dump: bind: %w", err)
		}
		tv := unix.NsecToTimeval(dumpTimeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("link dump: %w", err)
		}
		return fd, nil
	}
	if !ns.IsOpen() {
		return open()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return -1, fmt.Errorf("link dump: current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return -1, fmt.Errorf("link dump: enter namespace %s: %w", ns, err)
	}
	fd, err := open()
	if serr := netns.Set(orig); serr != nil {
		runtime.LockOSThread() // this thread stays in the wrong namespace: let it end with us
		if err == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("link dump: back to the original namespace: %w", serr)
	}
	return fd, err
}

// fullParse are the kinds whose Link needs netlink.LinkDeserialize: the tunnels and vxlan, whose
// lower device is in their kind's own attributes (defroute.Lowers), and tun, which netlink calls
// "tuntap" (and reads sysfs for).
var fullParse = map[string]bool{"vxlan": true, "gre": true, "gretap": true, "ip6gre": true, "ip6gretap": true,
	"ipip": true, "ip6tnl": true, "sit": true, "vti": true, "vti6": true, "tun": true}

// parseLink reads an RTM_NEWLINK message into a Link as LinkOf(netlink.LinkDeserialize(...))
// does, reading only the attributes a Link has: netlink's parser makes a slice of every nested
// attribute (some five kilobytes per link), which a dump of thousands of links pays at every
// rescan. false: the link's kind needs netlink's parser (fullParse), or the message is short.
func parseLink(m []byte) (Link, bool) {
	if len(m) < unix.SizeofIfInfomsg {
		return Link{}, false
	}
	msg := nl.DeserializeIfInfomsg(m)
	l := Link{Index: int(msg.Index), Flags: msg.Flags, LinkType: msg.EncapType(), OperState: netlink.LinkOperState(0).String()}
	parent, netnsid := 0, -1
	native := nl.NativeEndian()
	ok := eachAttr(m[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) bool {
		switch typ {
		case unix.IFLA_IFNAME:
			if len(v) > 0 {
				l.Name = string(v[:len(v)-1])
			}
		case unix.IFLA_MTU:
			if len(v) >= 4 {
				l.MTU = int(native.Uint32(v))
			}
		case unix.IFLA_ADDRESS:
			for _, b := range v {
				if b != 0 {
					l.MAC = net.HardwareAddr(v).String()
					break
				}
			}
		case unix.IFLA_OPERSTATE:
			if len(v) >= 1 {
				l.OperState = netlink.LinkOperState(v[0]).String()
			}
		case unix.IFLA_IFALIAS:
			if len(v) > 0 {
				l.Alias = string(v[:len(v)-1])
			}
		case unix.IFLA_MASTER:
			if len(v) >= 4 {
				l.Master = int(native.Uint32(v))
			}
		case unix.IFLA_LINK:
			if len(v) >= 4 {
				parent = int(native.Uint32(v))
			}
		case unix.IFLA_LINK_NETNSID:
			if len(v) >= 4 {
				netnsid = int(native.Uint32(v))
			}
		case unix.IFLA_LINKINFO:
			return eachAttr(v, func(typ uint16, v []byte) bool {
				if typ == nl.IFLA_INFO_KIND && len(v) > 0 {
					l.Kind = string(v[:len(v)-1])
				}
				return true
			})
		}
		return true
	})
	if !ok || fullParse[l.Kind] {
		return Link{}, false
	}
	// defroute.Lowers for the kinds parsed here: IFLA_LINK, but a veth's (vxcan's, netkit's) is
	// its peer, and an index with a link-netnsid is another namespace's.
	switch l.Kind {
	case "veth", "vxcan", "netkit":
	default:
		if netnsid < 0 && parent > 0 && parent != l.Index {
			l.Lowers = []int{parent}
		}
	}
	return l, true
}

// eachAttr calls fn with the type and value of each netlink attribute of b; false when b is not a
// well-formed attribute list or fn says so.
func eachAttr(b []byte, fn func(typ uint16, v []byte) bool) bool {
	native := nl.NativeEndian()
	for len(b) >= unix.SizeofRtAttr {
		n := int(native.Uint16(b[0:2]))
		if n < unix.SizeofRtAttr || n > len(b) {
			return false
		}
		if !fn(native.Uint16(b[2:4]), b[unix.SizeofRtAttr:n]) {
			return false
		}
		n = (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if n > len(b) {
			return true
		}
		b = b[n:]
	}
	return true
}
