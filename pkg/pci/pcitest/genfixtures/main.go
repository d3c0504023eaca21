// Command genfixtures rewrites the committed sysfs fixture trees (testdata/sysfs/<name>/sys) from
// pcitest.Fixtures. Run it through `go generate ./pkg/pci`. With -pfs and -vfs it instead writes one
// generated tree of that size (the benchmark's 8 x 128) under -out and prints its sysfs root.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/pci/pcitest"
)

func main() {
	out := flag.String("out", "testdata/sysfs", "folder that holds one folder per fixture")
	pfs := flag.Int("pfs", 0, "write a generated tree with this many PFs instead of the fixtures")
	vfs := flag.Int("vfs", 0, "VFs per PF of the generated tree")
	flag.Parse()
	if *pfs > 0 {
		root, err := pcitest.Generate(*out, *pfs, *vfs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "genfixtures:", err)
			os.Exit(1)
		}
		fmt.Println(root)
		return
	}
	if err := generate(*out); err != nil {
		fmt.Fprintln(os.Stderr, "genfixtures:", err)
		os.Exit(1)
	}
}

func generate(out string) error {
	for _, name := range pcitest.FixtureNames() {
		dir := filepath.Join(out, name)
		// Only the fixture's own folder is replaced: nothing else under out is touched.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing old fixture %s: %w", dir, err)
		}
		if _, err := pcitest.BuildFixture(name, dir); err != nil {
			return err
		}
		fmt.Println("wrote", filepath.Join(dir, "sys"))
	}
	return nil
}
