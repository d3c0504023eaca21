package pci

import (
	"errors"
	"fmt"
	"sync"

	"github.com/jaypipes/pcidb"
	pcidbtypes "github.com/jaypipes/pcidb/types"
	"k8s.io/klog/v2"
)

// pcidb parses the whole of pci.ids: the reference IDs must agree with, and what ghw is handed in
// the benchmarks. Scans do not use it. Each path is loaded once per test binary.
var (
	dbMu    sync.Mutex
	dbCache = map[string]*pcidb.PCIDB{}
)

// LoadPCIDB loads pci.ids with pcidb, never from the network. path "" searches pcidb's default
// places. A missing file is (nil, nil).
func LoadPCIDB(path string) (*pcidb.PCIDB, error) {
	dbMu.Lock()
	defer dbMu.Unlock()
	if db, ok := dbCache[path]; ok {
		return db, nil
	}
	noFetch := false // even if PCIDB_ENABLE_NETWORK_FETCH is set in the environment
	opts := []*pcidb.WithOption{{EnableNetworkFetch: &noFetch}}
	if path != "" {
		opts = append(opts, pcidb.WithPath(path))
	}
	db, err := pcidb.New(opts...)
	switch {
	case errors.Is(err, pcidbtypes.ErrNoDB):
		where := path
		if where == "" {
			where = "pcidb's default paths"
		}
		klog.V(2).Infof("pci: no pci.ids in %s: device names stay empty", where)
		db = nil
	case err != nil:
		return nil, fmt.Errorf("pci: loading pci.ids %q: %w", path, err)
	}
	dbCache[path] = db
	return db, nil
}

// names looks the vendor and device up in pci.ids; "" for unknown IDs or no database.
func names(db *pcidb.PCIDB, vendor, device string) (vendorName, deviceName string) {
	if db == nil || vendor == "" {
		return "", ""
	}
	if v := db.Vendors[vendor]; v != nil {
		vendorName = v.Name
	}
	if device != "" {
		if p := db.Products[vendor+device]; p != nil {
			deviceName = p.Name
		}
	}
	return vendorName, deviceName
}
