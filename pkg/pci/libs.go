package pci

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/k8snetworkplumbingwg/sriovnet"
	utilfs "github.com/k8snetworkplumbingwg/sriovnet/pkg/utils/filesystem"
)

// pciNames are the pci.ids names of one function.
type pciNames struct{ vendor, device string }

// sriovnet reads through one process-wide filesystem (utilfs.Fs) at fixed /sys paths. Scans point it
// at their sysfs root while they run, one at a time.
var sriovnetMu sync.Mutex

// withSriovnetRoot runs fn with sriovnet reading the sysfs root in place of /sys.
func withSriovnetRoot(sysfsRoot string, fn func()) {
	sriovnetMu.Lock()
	defer sriovnetMu.Unlock()
	saved := utilfs.Fs
	utilfs.Fs = rootedFs{root: sysfsRoot}
	defer func() { utilfs.Fs = saved }()
	fn()
}

// sriovnetRepresentor asks sriovnet for the eswitch port flavour of a netdev that has a
// phys_switch_id: devlink on a real host, else the phys_port_name (p0 uplink, pf0vf1 VF, pf0sf1 SF,
// pf0 host PF). known is false when sriovnet cannot tell (the bare VF number of old kernels).
func sriovnetRepresentor(name string) (representor, known bool) {
	flavour, err := sriovnet.GetRepresentorPortFlavour(name)
	if err != nil {
		return false, false
	}
	switch flavour {
	case sriovnet.PORT_FLAVOUR_PCI_VF, sriovnet.PORT_FLAVOUR_PCI_SF, sriovnet.PORT_FLAVOUR_PCI_PF:
		return true, true
	case sriovnet.PORT_FLAVOUR_PHYSICAL:
		return false, true
	}
	return false, false
}

// errReadOnly answers every write: discovery never changes sysfs.
var errReadOnly = errors.New("pci: sysfs is read-only to discovery")

// rootedFs is sriovnet's filesystem with /sys mapped to another folder, read-only.
type rootedFs struct{ root string }

func (r rootedFs) path(name string) string {
	if rest, ok := strings.CutPrefix(name, "/sys"); ok && (rest == "" || rest[0] == '/') {
		return filepath.Join(r.root, rest)
	}
	return name
}

func (r rootedFs) Stat(name string) (os.FileInfo, error)    { return os.Stat(r.path(name)) }
func (r rootedFs) Readlink(name string) (string, error)     { return os.Readlink(r.path(name)) }
func (r rootedFs) ReadFile(filename string) ([]byte, error) { return os.ReadFile(r.path(filename)) }
func (r rootedFs) Walk(root string, fn filepath.WalkFunc) error {
	return filepath.Walk(r.path(root), fn)
}
func (r rootedFs) ReadDir(dirname string) ([]os.FileInfo, error) {
	entries, err := os.ReadDir(r.path(dirname))
	if err != nil {
		return nil, err
	}
	infos := make([]os.FileInfo, 0, len(entries))
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			infos = append(infos, info)
		}
	}
	return infos, nil
}
func (rootedFs) Create(string) (utilfs.File, error)           { return nil, errReadOnly }
func (rootedFs) Rename(string, string) error                  { return errReadOnly }
func (rootedFs) MkdirAll(string, os.FileMode) error           { return errReadOnly }
func (rootedFs) Chtimes(string, time.Time, time.Time) error   { return errReadOnly }
func (rootedFs) RemoveAll(string) error                       { return errReadOnly }
func (rootedFs) Remove(string) error                          { return errReadOnly }
func (rootedFs) Symlink(string, string) error                 { return errReadOnly }
func (rootedFs) WriteFile(string, []byte, fs.FileMode) error  { return errReadOnly }
func (rootedFs) TempDir(string, string) (string, error)       { return "", errReadOnly }
func (rootedFs) TempFile(string, string) (utilfs.File, error) { return nil, errReadOnly }
