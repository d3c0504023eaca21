package pci

import (
	"errors"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// rdmaDevDir is where the kernel's RDMA character devices appear.
const rdmaDevDir = "/dev/infiniband/"

// rdma is what a PCI function's sysfs folder says of its RDMA (verbs) devices.
type rdma struct {
	devices []string // <function>/infiniband/<name>, real folders only, sorted
	chars   []string // their character devices, as sriov-dp lists them (issm, umad, uverbs)
	pkeyOf  string   // the first device's name, whose port 1 default partition key is the function's
}

// readRDMA reads <function>/infiniband/ (the RDMA devices: real folders, as rdmamap counts them; in
// exclusive netns mode a device inside a pod is not there), and the character devices whose ibdev
// names them: <function>/infiniband_mad/{issmN,umadN} and <function>/infiniband_verbs/uverbsN
// (the kernel parents them on the PCI function too). Per device, in sriov-dp's order: issm, umad,
// uverbs, each sorted by name.
func readRDMA(addr string, fn *sysDir, entries []string) rdma {
	var r rdma
	if !slices.Contains(entries, "infiniband") {
		return r
	}
	ib, err := fn.sub("infiniband")
	if err != nil {
		klog.Warningf("pci: %s: infiniband folder unreadable: %v", addr, err)
		return r
	}
	names, err := ib.names()
	if err == nil {
		for _, n := range names {
			if ib.isDir(n) {
				r.devices = append(r.devices, n)
			}
		}
	}
	ib.close()
	if err != nil {
		klog.Warningf("pci: %s: infiniband folder unreadable: %v", addr, err)
		return r
	}
	slices.Sort(r.devices)
	if len(r.devices) == 0 {
		return r
	}
	r.pkeyOf = r.devices[0]
	mad := charDevices(addr, fn, entries, "infiniband_mad")
	verbs := charDevices(addr, fn, entries, "infiniband_verbs")
	for _, dev := range r.devices {
		for _, prefix := range []string{"issm", "umad"} {
			for _, c := range mad[dev] {
				if strings.HasPrefix(c, prefix) {
					r.chars = append(r.chars, rdmaDevDir+c)
				}
			}
		}
		for _, c := range verbs[dev] {
			if strings.HasPrefix(c, "uverbs") {
				r.chars = append(r.chars, rdmaDevDir+c)
			}
		}
	}
	return r
}

// charDevices maps an RDMA device name to the character devices of <function>/<class> whose
// ibdev file names it, sorted.
func charDevices(addr string, fn *sysDir, entries []string, class string) map[string][]string {
	if !slices.Contains(entries, class) {
		return nil
	}
	dir, err := fn.sub(class)
	if err != nil {
		klog.Warningf("pci: %s: %s folder unreadable: %v", addr, class, err)
		return nil
	}
	defer dir.close()
	names, err := dir.names()
	if err != nil {
		klog.Warningf("pci: %s: %s folder unreadable: %v", addr, class, err)
		return nil
	}
	slices.Sort(names)
	out := map[string][]string{}
	for _, n := range names {
		ibdev, err := dir.attr(n + "/ibdev")
		if err != nil {
			if !notExist(err) && !errors.Is(err, unix.ENOTDIR) {
				klog.Warningf("pci: %s: %s/%s: %v", addr, class, n, err)
			}
			continue // abi_version and the like
		}
		out[ibdev] = append(out[ibdev], n)
	}
	return out
}

// readPKey is port 1's default partition key of the function's first RDMA device, as the kernel
// prints it ("0x7fff"); "" when unreadable.
func readPKey(addr string, fn *sysDir, device string) string {
	v, err := fn.attr("infiniband/" + device + "/ports/1/pkeys/0")
	if err != nil {
		klog.V(2).Infof("pci: %s: partition key of %s: %v", addr, device, err)
		return ""
	}
	return v
}
