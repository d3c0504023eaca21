// Package rdma is the narrow interface through which pkg/netns moves RDMA devices (mlx5_2, ...)
// between network namespaces, and its implementation over the kernel's RDMA netlink (NETLINK_RDMA,
// through github.com/vishvananda/netlink). Only a kernel in exclusive RDMA netns mode
// (`rdma system set netns exclusive`, ib_core netns_mode=0) moves devices; in shared mode every
// device is visible everywhere and a move fails with EOPNOTSUPP.
//
// It has no other job: which devices move, in which order, and how a failure is undone is pkg/netns's
// business, and its tests drive that through a recording fake of Links (package rdmafake).
//
// Netlink was written on a kernel without an RDMA subsystem, where opening a NETLINK_RDMA socket
// fails (EPROTONOSUPPORT) before any request is sent. So RdmaLinkList (as List), RdmaLinkSetNsFd (as
// Move, from a thread in the device's namespace) and RdmaLinkSetName (as Rename) have never run
// against a kernel from this code; TestNetlinkRoundTrip does that where one is given a spare device
// in exclusive mode (NETDEVICE_RDMA_TEST_DEVICE).
package rdma

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Device is an RDMA device as the kernel lists it. Index is the kernel's device index, global and
// kept across namespace moves and renames; NodeGUID tells a device from another that was given the
// same index after a re-registration.
type Device struct {
	Index    uint32
	Name     string
	NodeGUID string
}

// String is the device as messages name it.
func (d Device) String() string { return fmt.Sprintf("RDMA device %s (index %d)", d.Name, d.Index) }

// Links is what pkg/netns needs of the kernel's RDMA devices. In exclusive mode a namespace sees only
// its own devices, so every call names the namespace it acts in.
type Links interface {
	// List returns the RDMA devices visible in the namespace ns.
	List(ns vnetns.NsHandle) ([]Device, error)
	// Move moves d, which is in the namespace from, into the namespace to, keeping its name.
	Move(from vnetns.NsHandle, d Device, to vnetns.NsHandle) error
	// Rename renames d, which is in the namespace ns, to name.
	Rename(ns vnetns.NsHandle, d Device, name string) error
}

// Netlink is Links through the kernel's RDMA netlink.
//
// The kernel checks a move against both the requesting socket's namespace (the device must be
// visible there) and the calling thread's (ib_device_set_netns_put passes current->nsproxy->net_ns
// as the device's present namespace, and fails with ENODEV when it is another). So Move runs on an
// OS thread that has joined from, with a socket opened there; List and Rename need only the socket.
// A netlink.Handle without a NETLINK_RDMA socket would silently open one in the calling thread's
// namespace: every handle here is opened for NETLINK_RDMA alone.
type Netlink struct{}

// dumpTries bounds how often a dump the kernel interrupted (devices changed meanwhile) is retried.
const dumpTries = 5

func (Netlink) List(ns vnetns.NsHandle) ([]Device, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_RDMA)
	if err != nil {
		return nil, fmt.Errorf("RDMA netlink: %w", hint(err))
	}
	defer h.Close()
	return list(h)
}

func list(h *netlink.Handle) ([]Device, error) {
	for try := 1; ; try++ {
		links, err := h.RdmaLinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) && try < dumpTries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list RDMA devices: %w", hint(err))
		}
		devs := make([]Device, 0, len(links))
		for _, l := range links {
			devs = append(devs, Device{Index: l.Attrs.Index, Name: l.Attrs.Name, NodeGUID: l.Attrs.NodeGuid})
		}
		return devs, nil
	}
}

func (Netlink) Move(from vnetns.NsHandle, d Device, to vnetns.NsHandle) error {
	err := inNamespace(from, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_RDMA) // in from: the thread has joined it
		if err != nil {
			return fmt.Errorf("RDMA netlink: %w", err)
		}
		defer h.Close()
		return h.RdmaLinkSetNsFd(&netlink.RdmaLink{Attrs: netlink.RdmaLinkAttrs{Index: d.Index, Name: d.Name}}, uint32(to))
	})
	if err != nil {
		return fmt.Errorf("move %s to another network namespace: %w", d, hint(err))
	}
	return nil
}

func (Netlink) Rename(ns vnetns.NsHandle, d Device, name string) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_RDMA)
	if err != nil {
		return fmt.Errorf("RDMA netlink: %w", hint(err))
	}
	defer h.Close()
	if err := h.RdmaLinkSetName(&netlink.RdmaLink{Attrs: netlink.RdmaLinkAttrs{Index: d.Index, Name: d.Name}}, name); err != nil {
		return fmt.Errorf("rename %s to %s: %w", d, name, hint(err))
	}
	return nil
}

// inNamespace runs f on an OS thread of its own that has joined ns. The thread goes back to the
// process's namespace afterwards; if it cannot, it is never unlocked, so the Go runtime ends it with
// its goroutine instead of handing it to other code in the wrong namespace.
func inNamespace(ns vnetns.NsHandle, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			done <- fmt.Errorf("open the thread's network namespace: %w", err)
			return // still locked: the thread ends with the goroutine
		}
		defer orig.Close()
		if err := vnetns.Set(ns); err != nil {
			done <- fmt.Errorf("join the device's network namespace: %w", err)
			return
		}
		ferr := f()
		if err := vnetns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("return to the process's network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// hint says what the kernel's likeliest refusals mean.
func hint(err error) error {
	switch {
	case errors.Is(err, unix.EPROTONOSUPPORT):
		return fmt.Errorf("%w (this kernel has no RDMA subsystem: is ib_core loaded?)", err)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w (is the RDMA netns mode shared? `rdma system show`; moves need exclusive mode and a driver that supports them)", err)
	}
	return err
}
