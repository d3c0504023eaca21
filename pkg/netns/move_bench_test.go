package netns

import (
	"os"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// BenchmarkAttachDetach is one trip of a veth with two addresses into a pod namespace (as net1) and
// back, in process: what the hook does past its start. The device record is written three times
// and removed once per trip, each time synced; on disk (ext4, as b.TempDir here) that costs more
// than on tmpfs, where /run usually is (the "tmpfs" case, in /dev/shm).
func BenchmarkAttachDetach(b *testing.B) {
	netnstest.RequireRoot(b)
	for _, fs := range []string{"disk", "tmpfs"} {
		b.Run(fs, func(b *testing.B) {
			lockDir := benchLockDir(b, fs)
			host, pod := netnstest.New(b), netnstest.New(b)
			dev, _ := host.Veth(b)
			host.AddAddr(b, dev, "198.18.50.1/24")
			host.AddAddr(b, dev, "fdb5:1e6f:7d2a:50::1/64")
			opts := Options{PodIfName: "net1", HostNS: host.Path, LockDir: lockDir}
			target := Target{HostName: dev}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Attach(pod.Path, target, opts); err != nil {
					b.Fatal(err)
				}
				if _, err := Detach(pod.Path, target, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecord is the device record's own cost per trip: written (synced, renamed, directory
// synced) three times, read three times, removed once, on disk and on tmpfs.
func BenchmarkRecord(b *testing.B) {
	for _, fs := range []string{"disk", "tmpfs"} {
		b.Run(fs, func(b *testing.B) {
			lockDir := benchLockDir(b, fs)
			t := Target{HostName: "eth1"}
			lock, err := lockDevice(lockDir, t.lockKey())
			if err != nil {
				b.Fatal(err)
			}
			defer lock.unlock()
			v, p := 3600, 1800
			rec := newRecord(t, inFlightAttach, []linkFacts{{HostName: "eth1", MTU: 1500, Up: true, Master: "br0", Alias: "uplink",
				Addrs: []addrFacts{{Local: "10.1.2.3/24", Broadcast: "10.1.2.255", Label: "eth1"}, {Local: "fd00::3/64", Flags: 0x80, ValidLft: &v, PreferredLft: &p}}}})
			b.ReportAllocs()
			for b.Loop() {
				for range 3 {
					if err := lock.writeRecord(rec); err != nil {
						b.Fatal(err)
					}
					if _, err := lock.readRecord(t); err != nil {
						b.Fatal(err)
					}
				}
				if err := lock.removeRecord(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchLockDir is a lock folder on disk (ext4, as b.TempDir here) or on tmpfs (/dev/shm).
func benchLockDir(b *testing.B, fs string) string {
	if fs != "tmpfs" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "netns-bench")
	if err != nil {
		b.Skip("no tmpfs at /dev/shm:", err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
