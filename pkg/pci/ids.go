package pci

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// IDs are the vendor and device names of pci.ids, read on demand: a pass over the file looks up only
// the vendor:device pairs a scan found and not yet known, and every answer (a miss too) is kept for
// the life of the process. Names cannot change while the process runs, so a node's few distinct
// pairs cost one pass at the first scan (a few milliseconds on Debian's 1.3 MB file, against tens
// for parsing all of it) and nothing after; the kept answers are a few hundred bytes, not the tens
// of thousands of entries of the whole database.
//
// A nil *IDs has no names: every lookup answers "". The names are pcidb's for the same file
// (vendor line, then its device lines; the last of repeated entries wins), which ghw hands on.
type IDs struct {
	path string

	mu     sync.Mutex
	known  map[string]pciNames // vendor+device ("8086159b"), and vendor alone ("8086")
	err    error               // the last read error, logged once
	passes int                 // reads of the file, for tests
}

// OpenIDs finds pci.ids without reading it. path "" searches where pcidb does (PCIDB_PATH, its cache
// file, /usr/share/hwdata, /usr/share/misc, each also .gz, under PCIDB_CHROOT); no file there is not
// an error: it returns (nil, nil) and names stay "". A path given but missing is an error.
func OpenIDs(path string) (*IDs, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("pci: pci.ids %q: %w", path, err)
		}
		return &IDs{path: path, known: map[string]pciNames{}}, nil
	}
	for _, p := range idsSearchPath() {
		if _, err := os.Stat(p); err == nil {
			return &IDs{path: p, known: map[string]pciNames{}}, nil
		}
	}
	klog.V(2).Infof("pci: no pci.ids in pcidb's default paths: device names stay empty")
	return nil, nil
}

// idsSearchPath is pcidb's: a path from the environment alone, else its cache file, then the
// distributions' places.
func idsSearchPath() []string {
	if p := os.Getenv("PCIDB_PATH"); p != "" {
		return []string{p}
	}
	var paths []string
	cache := os.Getenv("PCIDB_CACHE_PATH")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "pci.ids")
		}
	}
	if cache != "" {
		paths = append(paths, cache)
	}
	if b := os.Getenv("PCIDB_CACHE_ONLY"); b == "1" || strings.EqualFold(b, "true") {
		return paths
	}
	root := os.Getenv("PCIDB_CHROOT")
	if root == "" {
		root = "/"
	}
	for _, p := range []string{"usr/share/hwdata/pci.ids", "usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids.gz", "usr/share/misc/pci.ids.gz"} {
		paths = append(paths, filepath.Join(root, p))
	}
	return paths
}

// Path is the pci.ids file the names come from; "" for nil.
func (ids *IDs) Path() string {
	if ids == nil {
		return ""
	}
	return ids.path
}

// Names returns the vendor and device names of vendor:device ("8086", "159b"); "" for unknown IDs.
func (ids *IDs) Names(vendor, device string) (vendorName, deviceName string) {
	if ids == nil || vendor == "" {
		return "", ""
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.resolveLocked([][2]string{{vendor, device}})
	return ids.known[vendor].vendor, ids.known[vendor+device].device
}

// Resolve looks up every pair not yet known in one pass over the file, so that Names answers from
// memory. Scans call it once with all the pairs they found.
func (ids *IDs) Resolve(pairs [][2]string) {
	if ids == nil {
		return
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.resolveLocked(pairs)
}

func (ids *IDs) resolveLocked(pairs [][2]string) {
	vendors := map[string]bool{}
	devices := map[string]bool{}
	for _, p := range pairs {
		if p[0] == "" {
			continue
		}
		if _, ok := ids.known[p[0]]; !ok {
			vendors[p[0]] = true
		}
		if p[1] != "" {
			if _, ok := ids.known[p[0]+p[1]]; !ok {
				vendors[p[0]] = true
				devices[p[0]+p[1]] = true
			}
		}
	}
	if len(vendors) == 0 {
		return
	}
	found, err := ids.read(vendors, devices)
	if err != nil {
		if ids.err == nil || ids.err.Error() != err.Error() {
			klog.Warningf("pci: reading names from %s: %v", ids.path, err)
		}
		ids.err = err
		return // unknown for now; the next scan tries again
	}
	ids.err = nil
	// Every pair asked is now known, found or not: a miss is not looked for again.
	for v := range vendors {
		ids.known[v] = pciNames{vendor: found[v].vendor}
	}
	for d := range devices {
		ids.known[d] = pciNames{device: found[d].device}
	}
}

// read passes over the file once and returns the names of the wanted vendors and vendor+device
// keys, parsing the lines as pcidb does: a vendor line "vvvv  name", its device lines
// "\tdddd  name", subsystem lines "\t\t...", and the class section ("C cc  name" and its
// indented lines), whose entries are not vendors or devices.
func (ids *IDs) read(vendors, devices map[string]bool) (map[string]pciNames, error) {
	ids.passes++
	f, err := os.Open(ids.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(ids.path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, &fs.PathError{Op: "gunzip", Path: ids.path, Err: err}
		}
		defer zr.Close()
		r = zr
	}
	return parseIDs(r, vendors, devices)
}

// parseIDs is read's parser, on any reader.
func parseIDs(r io.Reader, vendors, devices map[string]bool) (map[string]pciNames, error) {
	out := map[string]pciNames{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	inClass := false
	vendor := "" // current vendor ID when it is a wanted one
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		switch {
		case line[0] == 'C':
			inClass, vendor = true, ""
		case line[0] != '\t':
			inClass, vendor = false, ""
			if len(line) < 6 {
				continue
			}
			if id := string(line[:4]); vendors[id] {
				vendor = id
				out[id] = pciNames{vendor: string(line[6:])}
			}
		case len(line) > 1 && line[1] != '\t':
			if inClass || vendor == "" || len(line) < 7 {
				continue
			}
			key := vendor + string(line[1:5])
			if devices[key] {
				out[key] = pciNames{device: string(line[7:])}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
