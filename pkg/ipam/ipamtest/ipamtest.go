// Package ipamtest gives tests real IPAM plugins and a look into host-local's store.
package ipamtest

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/ipam"
)

// Plugins are the IPAM plugins BuildPlugins builds, by binary name: the real host-local of the CNI
// plugins (the version go.mod names) and failipam, whose ADD fails with a CNI error.
var Plugins = map[string]string{
	"host-local": "github.com/containernetworking/plugins/plugins/ipam/host-local",
	"failipam":   "github.com/netdevice-plugin/netdevice-plugin/pkg/ipam/testdata/failipam",
}

// BuildPlugins builds Plugins into dir (static, as a CNI bin folder holds them).
func BuildPlugins(dir string) error {
	for name, pkg := range Plugins {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// Held lists, sorted, the addresses host-local's store in dataDir holds for the pool's network.
func Held(dataDir, pool string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, ipam.NetworkName(pool)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	slices.Sort(ips)
	return ips, nil
}
