package pcitest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const corpusDir = "../../../testdata/sriovdp-corpus"

// corpusEntry is one element of testdata/sriovdp-corpus/expected.json.
type corpusEntry struct {
	File    string `json:"file"`
	Fixture string `json:"fixture"`
	Prefix  string `json:"prefix"`
	SriovDP struct {
		Loads bool                `json:"loads"`
		Error string              `json:"error"`
		Pools map[string][]string `json:"pools"`
	} `json:"sriovdp"`
}

// expected.json covers every corpus file once, on a fixture that exists, and names only PCI functions
// of that fixture's committed tree, each in one pool at most (sriov-dp pools exclusively).
func TestCorpusExpectations(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(corpusDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []corpusEntry
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		t.Fatal(err)
	}
	dir, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range dir {
		switch e.Name() {
		case "expected.json", "SOURCES.tsv", "README.md":
		default:
			files = append(files, e.Name())
		}
	}
	var listed []string
	for _, e := range entries {
		listed = append(listed, e.File)
	}
	if !slices.Equal(listed, files) {
		t.Fatalf("expected.json lists %v,\nthe folder holds %v", listed, files)
	}
	sources, err := os.ReadFile(filepath.Join(corpusDir, "SOURCES.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.Contains(string(sources), "\n"+e.File+"\t") {
			t.Errorf("%s: not in SOURCES.tsv", e.File)
		}
		if _, ok := Fixtures[e.Fixture]; !ok {
			t.Errorf("%s: fixture %q is not a registered fixture", e.File, e.Fixture)
			continue
		}
		if e.Prefix != "intel.com" {
			t.Errorf("%s: prefix %q", e.File, e.Prefix)
		}
		s := e.SriovDP
		if s.Loads != (s.Error == "") {
			t.Errorf("%s: loads %v with error %q", e.File, s.Loads, s.Error)
		}
		if !s.Loads && len(s.Pools) > 0 {
			t.Errorf("%s: does not load, yet has pools", e.File)
		}
		taken := map[string]string{}
		for pool, ids := range s.Pools {
			if !strings.Contains(pool, "/") {
				t.Errorf("%s: pool %q has no prefix", e.File, pool)
			}
			if ids == nil {
				t.Errorf("%s: pool %s is null, want []", e.File, pool)
			}
			if !slices.IsSorted(ids) {
				t.Errorf("%s: pool %s not sorted: %v", e.File, pool, ids)
			}
			for _, id := range ids {
				if other, ok := taken[id]; ok {
					t.Errorf("%s: %s in pools %s and %s", e.File, id, other, pool)
				}
				taken[id] = pool
				p := filepath.Join("../../../testdata/sysfs", e.Fixture, "sys/bus/pci/devices", id)
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s: pool %s: %s is not a function of %s: %v", e.File, pool, id, e.Fixture, err)
				}
			}
		}
	}
}
