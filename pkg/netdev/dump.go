package netdev

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dumpTimeout bounds one receive of a link dump: the kernel answers at once, or something is
// badly wrong.
const dumpTimeout = 10 * time.Second

// dumpLinks lists the namespace's links as Links, one receive buffer at a time: each message is
// made a Link before the next batch is read, so a namespace of thousands of links (every VF's
// netdev is one) never sits in memory as thousands of netlink.Link values and their raw messages,
// as netlink's LinkList holds them. VF details are not asked for (LinkList asks for them; a PF's
// message then lists each of its VFs). A dump the kernel marks interrupted returns what it read
// and an error wrapping netlink.ErrDumpInterrupted.
func (n *Namespace) dumpLinks() ([]Link, error) {
	fd, err := routeSocket(n.ns)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(dumpTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("link dump: %w", err)
	}
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
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
			hdr := unix.NlMsghdr(m.Header)
			l, err := netlink.LinkDeserialize(&hdr, m.Data)
			if err != nil {
				return nil, fmt.Errorf("link dump: %w", err)
			}
			links = append(links, LinkOf(l)) // before buf is read into again: l may point into it
		}
	}
}

// routeSocket opens an rtnetlink socket in the namespace behind ns (netns.None(): the calling
// thread's).
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
