package pci

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// IDs answer what pcidb (and so ghw) answers for every vendor and device of the file: the test
// pci.ids, and the distribution's full one where it is installed. One Resolve reads the file once.
func TestIDsAgreeWithPCIDB(t *testing.T) {
	for _, path := range []string{testPCIIDs, "/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"} {
		t.Run(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), func(t *testing.T) {
			if _, err := os.Stat(path); err != nil {
				t.Skip(err)
			}
			db, err := LoadPCIDB(path)
			if err != nil || db == nil {
				t.Fatalf("pcidb: %v", err)
			}
			ids, err := OpenIDs(path)
			if err != nil {
				t.Fatal(err)
			}
			var pairs [][2]string
			for key := range db.Products {
				pairs = append(pairs, [2]string{key[:4], key[4:]})
			}
			for v := range db.Vendors {
				pairs = append(pairs, [2]string{v, "ffff"}, [2]string{v, ""})
			}
			pairs = append(pairs, [2]string{"fffe", "0001"})
			ids.Resolve(pairs)
			if ids.passes != 1 {
				t.Errorf("Resolve of %d pairs read the file %d times, want once", len(pairs), ids.passes)
			}
			for _, p := range pairs {
				gv, gd := ids.Names(p[0], p[1])
				wv, wd := names(db, p[0], p[1])
				if gv != wv || gd != wd {
					t.Fatalf("Names(%s, %s) = %q, %q; pcidb %q, %q", p[0], p[1], gv, gd, wv, wd)
				}
			}
			if ids.passes != 1 {
				t.Errorf("Names after Resolve read the file again (%d passes)", ids.passes)
			}
		})
	}
}

// Each pair is looked up once per process, a miss too: later lookups answer from memory, even
// with the file gone.
func TestIDsRemember(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pci.ids")
	data, err := os.ReadFile(testPCIIDs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ids, err := OpenIDs(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, d := ids.Names("8086", "159b"); v != intel || d != e810XXV {
		t.Errorf("Names(8086, 159b) = %q, %q", v, d)
	}
	if v, d := ids.Names("8086", "ffff"); v != intel || d != "" {
		t.Errorf("unknown device: %q, %q, want the vendor alone", v, d)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	passes := ids.passes
	for range 3 {
		if v, d := ids.Names("8086", "159b"); v != intel || d != e810XXV {
			t.Errorf("from memory: %q, %q", v, d)
		}
		if _, d := ids.Names("8086", "ffff"); d != "" {
			t.Errorf("a miss from memory: %q", d)
		}
	}
	if ids.passes != passes {
		t.Errorf("known pairs read the file again: %d passes, want %d", ids.passes, passes)
	}
	// A new pair with the file gone: no names, a log line, and another try next time.
	if v, _ := ids.Names("15b3", "101d"); v != "" {
		t.Errorf("names without a file: %q", v)
	}
}

// The file may be gzipped, as pcidb reads it; OpenIDs finds it where pcidb would; a path given
// but missing is an error, nothing found is no names.
func TestOpenIDs(t *testing.T) {
	data, err := os.ReadFile(testPCIIDs)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gz := filepath.Join(dir, "pci.ids.gz")
	f, err := os.Create(gz)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ids, err := OpenIDs(gz)
	if err != nil {
		t.Fatal(err)
	}
	if v, d := ids.Names("8086", "159b"); v != intel || d != e810XXV {
		t.Errorf("gzipped: %q, %q", v, d)
	}

	if _, err := OpenIDs(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("OpenIDs(missing) error = %v, want one naming the file", err)
	}

	t.Setenv("PCIDB_PATH", testPCIIDs)
	if ids, err := OpenIDs(""); err != nil || ids.Path() != testPCIIDs {
		t.Errorf("OpenIDs(\"\") with PCIDB_PATH = %v, %v", ids.Path(), err)
	}
	t.Setenv("PCIDB_PATH", "")
	t.Setenv("PCIDB_CACHE_PATH", filepath.Join(dir, "no-cache"))
	t.Setenv("PCIDB_CHROOT", filepath.Join(dir, "empty-root"))
	ids, err = OpenIDs("")
	if ids != nil || err != nil {
		t.Errorf("OpenIDs(\"\") with nothing to find = %v, %v, want nil, nil", ids.Path(), err)
	}
	if v, d := ids.Names("8086", "159b"); v != "" || d != "" {
		t.Errorf("nil IDs name %q, %q", v, d)
	}
}
