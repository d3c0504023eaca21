package cdi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/device"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/pool"
)

// Defaults for the daemon's flags.
const (
	DefaultDir      = "/var/run/cdi"
	DefaultHookPath = "/opt/netdevice-plugin/bin/netdevice-hook"
)

// OwnerAnnotation marks a spec as ours when nothing else in it does. Specs whose devices run our hook
// are recognised by the hook; only a pool of vfio devices alone (device nodes, no hook) carries the
// annotation, because spec annotations need cdiVersion 0.6.0 and every other spec stays at the lowest
// version its contents need, for the oldest runtimes.
const (
	OwnerAnnotation = "netdevice-plugin/owner"
	ownerValue      = "netdevice-plugin"
	hookName        = "netdevice-hook" // the hook binary's name, whatever folder it is installed in
)

// stagingDir is where a spec is written before it is renamed into place (see write).
const stagingDir = ".netdevice-plugin-staging"

// Writer writes one CDI spec file per pool into a directory: kind "<prefix>/<resourceName>", one CDI
// device per device ID. Its methods are safe for concurrent use.
type Writer struct {
	dir      string
	hookPath string
	opts     WriterOptions

	mu      sync.Mutex
	staging *cdi.Cache // the library's writer, pointed at the staging folder
}

// NewWriter returns a Writer for the CDI directory dir whose specs run the hook at hookPath (absolute).
func NewWriter(dir, hookPath string) *Writer {
	return &Writer{dir: dir, hookPath: hookPath}
}

// WriterOptions are the node's facts a spec depends on.
type WriterOptions struct {
	// DevRoot is where the host's device nodes are ("" = /dev); specs name host nodes under it.
	DevRoot string
	// MoveRDMA: the node's RDMA subsystem is in exclusive network-namespace mode, so a device of an
	// isRdma pool is usable in the pod only with its RDMA device in the pod's namespace too: the
	// hooks move it (--rdma-device). In shared mode the character devices are enough.
	MoveRDMA bool
	// CNIBinDir and LeaseDir are where the hook finds IPAM plugins and keeps their leases, for
	// pools with ipam.
	CNIBinDir, LeaseDir string
}

// With sets the options; call it before the first write.
func (w *Writer) With(o WriterOptions) *Writer {
	w.opts = o
	return w
}

// SpecPath is the file of the resource's spec: "<dir>/<prefix>-<name>.json", the name the CDI
// library gives a vendor/class spec.
func SpecPath(dir string, res config.Resource) string {
	return filepath.Join(dir, cdi.GenerateSpecName(res.Prefix, res.CDIClass())+".json")
}

// WritePool writes the pool's spec, validated by the CDI library, atomically (readers see the old
// file or the new one, never a part), mode 0644, at the lowest cdiVersion its contents need. An
// unchanged spec is not rewritten. A pool with no devices has no spec: its file is removed (the CDI
// library rejects a spec without devices). A device whose ID cannot be a CDI device name is left out
// and named in the returned error; the other devices are still written.
func (w *Writer) WritePool(p pool.Pool) error {
	w.mu.Lock()
	defer w.mu.Unlock()

	path := SpecPath(w.dir, p.Resource)
	spec, buildErr := w.spec(p)
	if len(spec.Devices) == 0 {
		return errors.Join(buildErr, removeSpec(path, &p.Resource))
	}
	data, err := json.Marshal(spec) // the bytes the CDI library writes for a .json spec
	if err != nil {
		return errors.Join(buildErr, fmt.Errorf("pool %s: encode CDI spec: %w", p.Resource.FullName(), err))
	}
	if unchanged(path, data) {
		return buildErr
	}
	if err := w.write(spec, path); err != nil {
		return errors.Join(buildErr, fmt.Errorf("pool %s: write CDI spec %s: %w", p.Resource.FullName(), path, err))
	}
	return buildErr
}

// RemovePool deletes the resource's spec file; an absent file is not an error.
func (w *Writer) RemovePool(res config.Resource) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return removeSpec(SpecPath(w.dir, res), &res)
}

// Prune deletes our spec files of pools not in keep. It deletes only files that are ours: a .json
// spec named after its own kind as SpecPath names it, that is valid, and whose every device runs
// our hook (or is a vfio device) or that carries OwnerAnnotation. Anything else in the directory
// is left alone.
func (w *Writer) Prune(keep []config.Resource) error {
	w.mu.Lock()
	defer w.mu.Unlock()

	kept := map[string]bool{}
	for _, r := range keep {
		kept[filepath.Base(SpecPath(w.dir, r))] = true
	}
	entries, err := os.ReadDir(w.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prune CDI specs: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || filepath.Ext(name) != ".json" || kept[name] {
			continue
		}
		path := filepath.Join(w.dir, name)
		if !w.ours(path) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("prune CDI spec %s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// spec builds the pool's CDI spec. Devices that cannot be in it are left out and named in the error.
func (w *Writer) spec(p pool.Pool) (*cdispec.Spec, error) {
	res := p.Resource
	spec := &cdispec.Spec{Kind: res.CDIKind()}
	var (
		errs  []error
		hooks bool
	)
	for _, d := range p.Devices {
		if err := parser.ValidateDeviceName(d.ID); err != nil {
			errs = append(errs, fmt.Errorf("pool %s: device %q left out of the CDI spec: %w", res.FullName(), d.ID, err))
			continue
		}
		if d.IsVFIO() && d.IOMMUGroup < 0 {
			errs = append(errs, fmt.Errorf("pool %s: device %s left out of the CDI spec: vfio-pci device has no IOMMU group", res.FullName(), d.ID))
			continue
		}
		if d.IsUIO() && d.UIODevice == "" {
			errs = append(errs, fmt.Errorf("pool %s: device %s left out of the CDI spec: %s device has no uio device", res.FullName(), d.ID, d.Driver))
			continue
		}
		if !InSpec(&d, &res) {
			continue
		}
		var edits cdispec.ContainerEdits
		for _, n := range d.Nodes(w.opts.DevRoot) {
			dn := &cdispec.DeviceNode{Path: n.Path}
			if n.HostPath != n.Path {
				dn.HostPath = n.HostPath
			}
			edits.DeviceNodes = append(edits.DeviceNodes, dn)
		}
		if movesNetdev(&d, &res) {
			edits.Hooks = []*cdispec.Hook{
				{HookName: cdi.CreateRuntimeHook, Path: w.hookPath, Args: w.hookArgs("attach", &d, &res)},
				{HookName: cdi.PoststopHook, Path: w.hookPath, Args: w.hookArgs("detach", &d, &res)},
			}
			hooks = true
		}
		spec.Devices = append(spec.Devices, cdispec.Device{Name: d.ID, ContainerEdits: edits})
	}
	if !hooks && len(spec.Devices) > 0 {
		spec.Annotations = map[string]string{OwnerAnnotation: ownerValue}
	}
	// Never fails: the error return is kept for API compatibility only.
	spec.Version, _ = cdispec.MinimumRequiredVersion(spec)
	return spec, errors.Join(errs...)
}

// movesNetdev reports whether the device's CDI entry runs the hook: a netdev device (not bound for
// userspace) of a pool that does not leave the move to a CNI.
func movesNetdev(d *device.Device, res *config.Resource) bool {
	return !d.IsUserspace() && !res.CNIManaged
}

// InSpec reports whether the pool's spec has an entry for the device: one whose hook moves its
// netdev, or that brings device nodes. A netdev the CNI moves and that needs no device node has
// nothing for the runtime to do; Allocate then names no CDI device for it.
func InSpec(d *device.Device, res *config.Resource) bool {
	return movesNetdev(d, res) || len(d.Nodes("")) > 0
}

// hookArgs is the hook's argv (args[0] is the program, as in execv): the device by PCI address for
// a PCI function, by host name for a software link, the pool's pod-side name, and whether the pool
// takes links with upper devices.
func (w *Writer) hookArgs(verb string, d *device.Device, res *config.Resource) []string {
	args := []string{w.hookPath, verb}
	if d.IsPCI() {
		args = append(args, "--pci-address", d.PCIAddress)
	} else {
		args = append(args, "--host-ifname", d.ID)
	}
	if res.PodIfName != "" {
		args = append(args, "--pod-ifname", res.PodIfName)
	}
	if res.AllowUpperDevices {
		args = append(args, "--allow-upper-devices")
	}
	if w.opts.MoveRDMA && d.RDMA {
		for _, r := range d.RDMADevices {
			args = append(args, "--rdma-device", r)
		}
	}
	if s := w.settings(res); !s.Empty() {
		if arg, err := s.Encode(); err == nil { // a pool's settings always encode
			args = append(args, "--netconf", arg)
		}
	}
	return args
}

// settings is what the hook is told of the pool's interface settings.
func (w *Writer) settings(res *config.Resource) *netconf.Settings {
	s := &netconf.Settings{
		Pool:              res.FullName(),
		MTU:               res.Interface.MTU,
		IPAM:              res.Interface.IPAM,
		Routes:            res.Interface.Routes,
		Sysctls:           res.Interface.Sysctls,
		DropHostAddresses: res.Interface.DropHostAddresses,
	}
	if s.IPAM != nil {
		s.CNIBinDir, s.LeaseDir = w.opts.CNIBinDir, w.opts.LeaseDir
	}
	return s
}

// write hands the spec to the CDI library, which validates it and writes it with a temporary file
// and a rename. The library's temporary file is 0600 and it renames it straight into place, so it
// writes into a staging folder inside dir instead (same file system, and the runtime's CDI cache
// neither scans nor watches subfolders); the file is made 0644 there and renamed into place.
func (w *Writer) write(spec *cdispec.Spec, path string) error {
	staging := filepath.Join(w.dir, stagingDir)
	if err := os.RemoveAll(staging); err != nil { // what a crashed write left
		return err
	}
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return err
	}
	defer os.Remove(staging) // empty again
	if w.staging == nil {
		c, err := cdi.NewCache(cdi.WithSpecDirs(staging), cdi.WithAutoRefresh(false))
		if err != nil {
			return err
		}
		w.staging = c
	}
	name := filepath.Base(path)
	if err := w.staging.WriteSpec(spec, name); err != nil {
		return err
	}
	staged := filepath.Join(staging, name)
	if err := os.Chmod(staged, 0o644); err != nil {
		return errors.Join(err, os.Remove(staged))
	}
	if err := os.Rename(staged, path); err != nil {
		return errors.Join(err, os.Remove(staged))
	}
	return nil
}

// unchanged reports whether the file at path already holds data with mode 0644.
func unchanged(path string, data []byte) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 || fi.Size() != int64(len(data)) {
		return false
	}
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, data)
}

func removeSpec(path string, res *config.Resource) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pool %s: remove CDI spec: %w", res.FullName(), err)
	}
	return nil
}

// ourNode reports a device node path this package writes into specs.
func ourNode(path string) bool {
	for _, prefix := range []string{"/dev/vfio/", "/dev/uio", "/dev/infiniband/"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return path == device.VhostNetNode || path == device.TunNode
}

// ours reports whether the spec file at path is one this package wrote (see Prune).
func (w *Writer) ours(path string) bool {
	spec, err := cdi.ReadSpec(path, 0)
	if err != nil {
		return false
	}
	if filepath.Base(path) != cdi.GenerateSpecName(spec.GetVendor(), spec.GetClass())+".json" {
		return false
	}
	if spec.Annotations[OwnerAnnotation] == ownerValue {
		return true
	}
	hooks := false
	for _, d := range spec.Devices {
		switch e := d.ContainerEdits; {
		case len(e.Hooks) > 0:
			for _, n := range e.DeviceNodes {
				if !ourNode(n.Path) {
					return false
				}
			}
			for _, h := range e.Hooks {
				base := filepath.Base(h.Path)
				if (base != hookName && base != filepath.Base(w.hookPath)) || len(h.Args) < 2 || (h.Args[1] != "attach" && h.Args[1] != "detach") {
					return false
				}
			}
			hooks = true
		case len(e.DeviceNodes) > 0:
			for _, n := range e.DeviceNodes {
				if !ourNode(n.Path) {
					return false
				}
			}
		default:
			return false
		}
		if len(d.ContainerEdits.Env) > 0 || len(d.ContainerEdits.Mounts) > 0 {
			return false
		}
	}
	return hooks
}
