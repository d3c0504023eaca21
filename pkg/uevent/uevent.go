// Package uevent reads the kernel's device events from a NETLINK_KOBJECT_UEVENT socket: a PCI
// function added or removed (VFs created or destroyed when sriov_numvfs changes), bound to or
// unbound from a driver, and the devices beneath a function coming and going (its RDMA devices, a
// uio node). Discovery re-reads the function an event names instead of rescanning the bus.
//
// It uses golang.org/x/sys/unix directly: vishvananda/netlink has no uevent support (its socket
// type parses rtnetlink framing, which uevents do not have), and the few dozen lines here keep
// what matters in reach: only the kernel's messages are taken (a root process can multicast to
// the kernel's group too), a large receive buffer, and an overflow (ENOBUFS) reported as such so
// that the caller rescans rather than trusting a stream with holes.
//
// Which events a socket hears depends on its network namespace: events of network devices go to
// the namespace that owns the device, events of other devices (PCI functions, RDMA devices) to
// every namespace owned by the initial user namespace. The daemon runs with hostNetwork, so it
// hears the host's.
package uevent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
)

// Event is one uevent.
type Event struct {
	Action    string // add, remove, change, move, bind, unbind, online, offline
	DevPath   string // below /sys: /devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0
	Subsystem string // pci, net, infiniband, ...
	Vars      map[string]string
	// Overflow: the kernel dropped events because the socket's buffer was full. Nothing else is
	// set; what the caller keeps must be read again.
	Overflow bool
}

// Parse reads a kernel uevent message: "ACTION@DEVPATH", then KEY=VALUE entries, each ended by a
// NUL byte. Messages udev forwards ("libudev" first) are not kernel messages and are refused.
func Parse(msg []byte) (Event, error) {
	fields := bytes.Split(bytes.TrimRight(msg, "\x00"), []byte{0})
	head := string(fields[0])
	action, devpath, ok := strings.Cut(head, "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return Event{}, fmt.Errorf("uevent: not a kernel uevent: %q", clip(head))
	}
	ev := Event{Action: action, DevPath: devpath, Vars: make(map[string]string, len(fields)-1)}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(string(f), "=")
		if !ok || k == "" {
			continue
		}
		ev.Vars[k] = v
	}
	if a := ev.Vars["ACTION"]; a != "" && a != action {
		return Event{}, fmt.Errorf("uevent: %q: ACTION=%q disagrees with the header", clip(head), clip(a))
	}
	if p := ev.Vars["DEVPATH"]; p != "" {
		ev.DevPath = p
	}
	ev.Subsystem = ev.Vars["SUBSYSTEM"]
	return ev, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// PCIAddress returns the PCI function the event is about, or the function the device it is about
// sits beneath (an RDMA device, a netdev, a uio node): the last PCI address on its device path
// (a bridge above the function is a PCI address too). "" for a device beneath no PCI function.
func (e *Event) PCIAddress() string {
	if e.Subsystem == "pci" {
		if a := e.Vars["PCI_SLOT_NAME"]; device.IsPCIAddress(a) {
			return a
		}
	}
	for p := e.DevPath; p != "/" && p != "." && p != ""; p = path.Dir(p) {
		if b := path.Base(p); device.IsPCIAddress(b) {
			return b
		}
	}
	return ""
}

// ErrOverflow is what Receive returns when the kernel dropped events: the socket's buffer was full.
var ErrOverflow = errors.New("uevent: events lost (socket receive buffer overflowed)")

// DefaultBuffer is the receive buffer Dial asks for: a burst of VFs created by the hundred, with
// their netdevs and queues, must fit while the reader works.
const DefaultBuffer = 8 << 20

// Conn is a NETLINK_KOBJECT_UEVENT socket bound to the kernel's group.
type Conn struct {
	f      *os.File
	rc     syscall.RawConn
	buf    []byte
	closed atomic.Bool
}

// Dial opens a uevent socket in the calling thread's network namespace with a receive buffer of
// about bufSize bytes (0: DefaultBuffer); root may go past net.core.rmem_max.
func Dial(bufSize int) (*Conn, error) {
	if bufSize <= 0 {
		bufSize = DefaultBuffer
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent: socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufSize); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uevent: bind to the kernel's group: %w", err)
	}
	f := os.NewFile(uintptr(fd), "uevent")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uevent: %w", err)
	}
	return &Conn{f: f, rc: rc, buf: make([]byte, 16<<10)}, nil
}

// DialAt is Dial in the network namespace behind ns; the caller keeps ownership of ns.
func DialAt(ns netns.NsHandle, bufSize int) (*Conn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("uevent: current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return nil, fmt.Errorf("uevent: enter namespace: %w", err)
	}
	c, err := Dial(bufSize)
	if serr := netns.Set(orig); serr != nil {
		// This thread is in the wrong namespace for good: let it die with the goroutine.
		runtime.LockOSThread()
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("uevent: back to the original namespace: %w", serr)
	}
	return c, err
}

// Receive waits for the next kernel uevent. Messages from anyone but the kernel, truncated ones
// and ones that do not parse are skipped. ErrOverflow says the kernel dropped some; the socket
// goes on. After Close it returns an error wrapping os.ErrClosed.
func (c *Conn) Receive() (Event, error) {
	for {
		var (
			n, flags int
			from     unix.Sockaddr
			rerr     error
		)
		err := c.rc.Read(func(fd uintptr) bool {
			n, _, flags, from, rerr = unix.Recvmsg(int(fd), c.buf, nil, 0)
			return !errors.Is(rerr, unix.EAGAIN) && !errors.Is(rerr, unix.EINTR)
		})
		if err != nil {
			if c.closed.Load() {
				return Event{}, fmt.Errorf("uevent: receive: %w", os.ErrClosed)
			}
			return Event{}, fmt.Errorf("uevent: receive: %w", err)
		}
		switch {
		case errors.Is(rerr, unix.ENOBUFS):
			return Event{}, ErrOverflow
		case rerr != nil:
			return Event{}, fmt.Errorf("uevent: receive: %w", rerr)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not the kernel
		}
		if flags&unix.MSG_TRUNC != 0 {
			klog.Warningf("uevent: a message longer than %d bytes was cut: skipped", len(c.buf))
			continue
		}
		ev, err := Parse(c.buf[:n])
		if err != nil {
			klog.V(2).Infof("%v", err)
			continue
		}
		return ev, nil
	}
}

// Close closes the socket; a Receive waiting returns.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.f.Close()
}

// SetReadDeadline makes Receive give up at t (an error wrapping os.ErrDeadlineExceeded); zero
// means never.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// Watch streams the kernel's uevents of the given subsystems (none: all) from conn until ctx is
// done, then closes conn and the channel. An overflow is passed on as an Overflow event. A socket
// that fails otherwise ends the stream (the error is logged): the caller relies on its periodic
// rescan then.
func Watch(ctx context.Context, conn *Conn, subsystems ...string) <-chan Event {
	want := map[string]bool{}
	for _, s := range subsystems {
		want[s] = true
	}
	out := make(chan Event, 1024)
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	go func() {
		defer close(out)
		for {
			ev, err := conn.Receive()
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, ErrOverflow):
				klog.InfoS("Device events were lost (uevent socket overflow): rescanning")
				ev = Event{Overflow: true}
			case err != nil:
				klog.ErrorS(err, "Device events (uevents) ended; relying on the periodic rescan")
				return
			case len(want) > 0 && !want[ev.Subsystem]:
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// String is the event as one line: "add /devices/... pci".
func (e Event) String() string {
	if e.Overflow {
		return "overflow"
	}
	return e.Action + " " + e.DevPath + " " + e.Subsystem + " seq " + strconv.Quote(e.Vars["SEQNUM"])
}
