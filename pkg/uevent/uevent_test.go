package uevent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

func msg(parts ...string) []byte { return []byte(strings.Join(parts, "\x00") + "\x00") }

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Event
		wantErr bool
		addr    string
	}{
		{
			name: "VF created",
			in: msg("add@/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0", "ACTION=add",
				"DEVPATH=/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0", "SUBSYSTEM=pci", "PCI_CLASS=20000",
				"PCI_ID=8086:1889", "PCI_SLOT_NAME=0000:3b:01.0", "SEQNUM=4711"),
			want: Event{Action: "add", DevPath: "/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0", Subsystem: "pci"},
			addr: "0000:3b:01.0",
		},
		{
			name: "driver bound",
			in:   msg("bind@/devices/pci0000:00/0000:00:03.0", "ACTION=bind", "DEVPATH=/devices/pci0000:00/0000:00:03.0", "SUBSYSTEM=pci", "DRIVER=vfio-pci", "PCI_SLOT_NAME=0000:00:03.0"),
			want: Event{Action: "bind", DevPath: "/devices/pci0000:00/0000:00:03.0", Subsystem: "pci"},
			addr: "0000:00:03.0",
		},
		{
			name: "RDMA device of a function: the function",
			in:   msg("remove@/devices/pci0000:85/0000:85:00.0/0000:86:00.2/infiniband/mlx5_4", "ACTION=remove", "SUBSYSTEM=infiniband", "NAME=mlx5_4"),
			want: Event{Action: "remove", DevPath: "/devices/pci0000:85/0000:85:00.0/0000:86:00.2/infiniband/mlx5_4", Subsystem: "infiniband"},
			addr: "0000:86:00.2",
		},
		{
			name: "a software link: no function",
			in:   msg("move@/devices/virtual/net/vtC", "ACTION=move", "SUBSYSTEM=net", "DEVPATH_OLD=/devices/virtual/net/vtA", "INTERFACE=vtC"),
			want: Event{Action: "move", DevPath: "/devices/virtual/net/vtC", Subsystem: "net"},
		},
		{name: "udev's forwarded message", in: []byte("libudev\x00\xfe\xed\xca\xfe"), wantErr: true},
		{name: "no @", in: msg("add", "SUBSYSTEM=pci"), wantErr: true},
		{name: "ACTION disagrees", in: msg("add@/devices/x", "ACTION=remove"), wantErr: true},
		{name: "empty", in: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Action != tt.want.Action || got.DevPath != tt.want.DevPath || got.Subsystem != tt.want.Subsystem {
				t.Errorf("Parse = %+v, want %+v", got, tt.want)
			}
			if a := got.PCIAddress(); a != tt.addr {
				t.Errorf("PCIAddress = %q, want %q", a, tt.addr)
			}
		})
	}
}

// testConn is a uevent socket in a fresh network namespace: net uevents of the links made there
// reach it, and nothing of the host's network devices.
func testConn(t *testing.T, bufSize int) (*netnstest.NS, *Conn) {
	t.Helper()
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	c, err := DialAt(netns.NsHandle(ns.FD()), bufSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ns, c
}

// sendFake multicasts a uevent-shaped message to the kernel's group of the namespace from a
// userspace socket, as any root process could.
func sendFake(t *testing.T, ns *netnstest.NS, m []byte) {
	t.Helper()
	err := netnstest.Within(netns.NsHandle(ns.FD()), func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, m, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1})
	})
	if err != nil {
		t.Fatalf("send a fake uevent: %v", err)
	}
}

// The real socket: a veth made in the namespace arrives as the kernel's net uevent; a message a
// userspace process multicast to the kernel's group is not taken for one.
func TestConnReceivesKernelEvents(t *testing.T) {
	ns, c := testConn(t, 0)
	sendFake(t, ns, msg("add@/devices/pci0000:00/0000:00:09.0", "ACTION=add", "SUBSYSTEM=pci", "PCI_SLOT_NAME=0000:00:09.0"))
	la := netlink.NewLinkAttrs()
	la.Name = "uev0"
	if err := ns.H.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "uev0p"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	events := Watch(ctx, c, "net")
	seen := map[string]bool{}
	for ev := range events {
		if ev.Subsystem != "net" {
			t.Errorf("event of subsystem %q passed the net filter: %v", ev.Subsystem, ev)
		}
		if strings.Contains(ev.DevPath, "0000:00:09.0") {
			t.Errorf("the userspace message was taken for the kernel's: %v", ev)
		}
		if ev.Action == "add" {
			seen[ev.Vars["INTERFACE"]] = true
		}
		if seen["uev0"] && seen["uev0p"] {
			cancel()
		}
	}
	if !seen["uev0"] || !seen["uev0p"] {
		t.Errorf("add events seen for %v, want uev0 and uev0p", seen)
	}
}

// A socket whose buffer overflows says so, once per overflow, and goes on.
func TestConnOverflow(t *testing.T) {
	ns, c := testConn(t, 1) // the kernel's minimum: a few messages
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		la := netlink.NewLinkAttrs()
		la.Name = fmt.Sprintf("uevo%d", i)
		if err := ns.H.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: fmt.Sprintf("uevo%dp", i)}); err != nil {
			t.Fatal(err)
		}
	}
	overflow := false
	for n := 0; n < 1000 && !overflow; n++ {
		_, err := c.Receive()
		if errors.Is(err, ErrOverflow) {
			overflow = true
			t.Logf("overflow after %d events", n)
			break
		}
		if err != nil {
			t.Fatalf("after %d events: %v", n, err)
		}
	}
	if !overflow {
		t.Fatal("no ErrOverflow after hundreds of events into a tiny buffer")
	}
	// The socket still works: once what it holds is read, new events arrive.
	for {
		if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Receive(); errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = "uevafter"
	if err := ns.H.LinkAdd(&netlink.Ifb{LinkAttrs: la}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ev, err := c.Receive()
		if errors.Is(err, ErrOverflow) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Vars["INTERFACE"] == "uevafter" {
			return
		}
	}
	t.Fatal("no event after the overflow")
}

// Close ends a Receive that waits, and Watch's stream.
func TestCloseEndsReceive(t *testing.T) {
	_, c := testConn(t, 0)
	done := make(chan error, 1)
	go func() {
		_, err := c.Receive()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Receive after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive still waiting after Close")
	}
}
