// Package ipam gets a pod interface its addresses from a CNI IPAM plugin (host-local, static, dhcp,
// whereabouts, ...), through the CNI library's invoke package and result types: the real protocol,
// the plugins' own code. It keeps each device's lease on disk, so that every container of the pod
// and every restart of one sees the same addresses, and so that the daemon can release them (DEL)
// once the pod is gone, even after the node rebooted.
package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/atomicfile"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/safefile"
)

// CNIVersion is the version of the network configurations handed to the plugins.
const CNIVersion = "1.0.0"

// DefaultLeaseDir is where leases are kept: persistent, so a reboot does not leak addresses.
const DefaultLeaseDir = "/var/lib/netdevice-plugin/ipam"

// DefaultTimeout bounds one plugin call (dhcp may wait for a server).
const DefaultTimeout = 30 * time.Second

// Lease is what one device's ADD returned, and what DEL needs to release it.
type Lease struct {
	Pool        string `json:"pool"`
	Device      string `json:"device"`
	ContainerID string `json:"containerID"` // CNI_CONTAINERID: the pod sandbox's ID
	IfName      string `json:"ifName"`
	NetNS       string `json:"netns"`
	// Args are the CNI_ARGS pairs the plugin gets (the pod's namespace, name, UID; IgnoreUnknown),
	// as a CNI runtime passes them; DEL gets the same.
	Args      [][2]string     `json:"args,omitempty"`
	Netconf   json.RawMessage `json:"netconf"` // the network configuration the plugin was called with
	CNIBinDir string          `json:"cniBinDir"`
	// Result is the plugin's ADD result; absent while the ADD is under way (the lease is written
	// before the call, so that a hook killed during it leaves something to release).
	Result json.RawMessage `json:"result,omitempty"`
	Since  time.Time       `json:"since"`
}

// NetworkName is the CNI network name of a pool: "netdevice-" and the resource with '/' as '-'
// (host-local keeps its allocations in a folder of that name).
func NetworkName(pool string) string { return "netdevice-" + strings.ReplaceAll(pool, "/", "-") }

// networkConf is the network configuration an IPAM plugin is called with.
func networkConf(s *netconf.Settings) ([]byte, error) {
	conf := map[string]any{"cniVersion": CNIVersion, "name": NetworkName(s.Pool), "type": "netdevice-plugin", "ipam": s.IPAM}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, fmt.Errorf("pool %s: IPAM network configuration: %w", s.Pool, err)
	}
	return b, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.:-]`)

// LeasePath is the file of a device's lease under dir.
func LeasePath(dir, pool, device string) string {
	return filepath.Join(dir, unsafeName.ReplaceAllString(strings.ReplaceAll(pool, "/", "_"), "_"), unsafeName.ReplaceAllString(device, "_")+".json")
}

// maxLeaseBytes bounds a lease file: a result is a few hundred bytes.
const maxLeaseBytes = 1 << 20

// ReadLease reads a lease file; fs.ErrNotExist when there is none.
func ReadLease(path string) (*Lease, error) {
	data, err := safefile.Read(path, maxLeaseBytes, safefile.Options{NoFollow: true})
	if err != nil {
		return nil, err
	}
	var l Lease
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("lease %s: %w", path, err)
	}
	if l.Pool == "" || l.Device == "" || l.ContainerID == "" || len(l.Netconf) == 0 {
		return nil, fmt.Errorf("lease %s: incomplete", path)
	}
	return &l, nil
}

func writeLease(path string, l *Lease) error {
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("lease of %s %s: %w", l.Pool, l.Device, err)
	}
	if err := atomicfile.Write(path, strings.NewReader(string(data)), 0o600); err != nil {
		return fmt.Errorf("lease of %s %s: %w", l.Pool, l.Device, err)
	}
	return nil
}

// Leases lists every lease under dir, sorted by pool and device. Unreadable lease files are
// reported in the error and left out.
func Leases(dir string) ([]Lease, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Lease
	var errs []error
	for _, p := range paths {
		l, err := ReadLease(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pool != out[j].Pool {
			return out[i].Pool < out[j].Pool
		}
		return out[i].Device < out[j].Device
	})
	return out, errors.Join(errs...)
}

// Attachment is what one ADD is for: the device, the pod sandbox (CNI_CONTAINERID), the pod's
// network namespace, the interface's name there, and the pod (CNI_ARGS K8S_POD_*, for plugins such
// as whereabouts and static that use them; "" leaves one out).
type Attachment struct {
	Device, ContainerID, NetNS, IfName string
	PodNamespace, PodName, PodUID      string
}

// podArgs are the CNI_ARGS a CNI runtime passes for a pod, IgnoreUnknown first so that plugins that
// know none of them (host-local) do not refuse them.
func (a Attachment) podArgs() [][2]string {
	args := [][2]string{{"IgnoreUnknown", "1"}}
	for _, kv := range [][2]string{{"K8S_POD_NAMESPACE", a.PodNamespace}, {"K8S_POD_NAME", a.PodName},
		{"K8S_POD_INFRA_CONTAINER_ID", a.ContainerID}, {"K8S_POD_UID", a.PodUID}} {
		if kv[1] != "" {
			args = append(args, kv)
		}
	}
	return args
}

// Add gives the device's interface its addresses for the pod sandbox containerID: the lease it
// has for that sandbox (a restarted container, another container of the pod), or a new one from the
// pool's IPAM plugin (ADD). A lease of another sandbox (a pod gone without its release) is released
// first. The lease is on disk before the plugin is called.
func Add(ctx context.Context, s *netconf.Settings, a Attachment) (*current.Result, error) {
	device, containerID, ifName := a.Device, a.ContainerID, a.IfName
	path := LeasePath(s.LeaseDir, s.Pool, device)
	conf, err := networkConf(s)
	if err != nil {
		return nil, err
	}
	old, err := ReadLease(path)
	switch {
	case err == nil && old.ContainerID == containerID && old.IfName == ifName && old.Result != nil && string(old.Netconf) == string(conf):
		return parseResult(old.Result)
	case err == nil:
		if _, err := Release(ctx, path); err != nil {
			return nil, fmt.Errorf("pool %s: releasing the earlier lease of %s (sandbox %s) before a new one: %w", s.Pool, device, old.ContainerID, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("pool %s: %w", s.Pool, err)
	}
	l := &Lease{Pool: s.Pool, Device: device, ContainerID: containerID, IfName: ifName, NetNS: a.NetNS, Args: a.podArgs(), Netconf: conf,
		CNIBinDir: s.CNIBinDir, Since: time.Now().UTC()}
	if _, _, err := plugin(l); err != nil { // nothing to lease from (and none to release it)
		return nil, err
	}
	if err := writeLease(path, l); err != nil {
		return nil, err
	}
	res, raw, err := call(ctx, l, "ADD")
	if err != nil {
		// Whatever the plugin kept of a failed ADD is released with the lease.
		if _, derr := Release(ctx, path); derr != nil {
			err = fmt.Errorf("%w; releasing it failed too (the daemon retries): %w", err, derr)
		}
		return nil, err
	}
	l.Result = raw
	if err := writeLease(path, l); err != nil {
		_, derr := Release(ctx, path)
		return nil, errors.Join(err, derr)
	}
	return res, nil
}

// Release releases the lease file at path (DEL) and removes it: what the daemon does for a device
// no pod holds any more, and what Add does with a lease of another sandbox. No lease is no error.
// On error the lease stays, to be released again.
func Release(ctx context.Context, path string) (*Lease, error) {
	l, err := ReadLease(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, _, err := call(ctx, l, "DEL"); err != nil {
		return l, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l, fmt.Errorf("remove lease %s: %w", path, err)
	}
	return l, nil
}

// call runs the lease's IPAM plugin with the command, as a CNI runtime does.
func call(ctx context.Context, l *Lease, command string) (*current.Result, json.RawMessage, error) {
	pluginType, plugin, err := plugin(l)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	args := &invoke.Args{Command: command, ContainerID: l.ContainerID, NetNS: l.NetNS, IfName: l.IfName, Path: l.CNIBinDir, PluginArgs: l.Args}
	if command == "DEL" {
		// A DEL must succeed whatever became of the namespace; the plugins release by ID.
		args.NetNS = ""
		if err := invoke.ExecPluginWithoutResult(ctx, plugin, l.Netconf, args, nil); err != nil {
			return nil, nil, fmt.Errorf("pool %s: IPAM plugin %s DEL for %s: %w", l.Pool, pluginType, l.Device, err)
		}
		return nil, nil, nil
	}
	r, err := invoke.ExecPluginWithResult(ctx, plugin, l.Netconf, args, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("pool %s: IPAM plugin %s %s for %s: %w", l.Pool, pluginType, command, l.Device, err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, nil, fmt.Errorf("pool %s: IPAM plugin %s: %w", l.Pool, pluginType, err)
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, nil, fmt.Errorf("pool %s: IPAM result: %w", l.Pool, err)
	}
	return res, raw, nil
}

// plugin is the lease's IPAM plugin: its type and the path of its binary in the lease's CNI folder.
func plugin(l *Lease) (pluginType, path string, err error) {
	if pluginType, err = netconf.IPAMType(ipamOf(l.Netconf)); err != nil {
		return "", "", fmt.Errorf("pool %s: %w", l.Pool, err)
	}
	if path, err = invoke.FindInPath(pluginType, []string{l.CNIBinDir}); err != nil {
		return "", "", fmt.Errorf("pool %s: IPAM plugin %s: %w", l.Pool, pluginType, err)
	}
	return pluginType, path, nil
}

func ipamOf(conf json.RawMessage) json.RawMessage {
	var c struct {
		IPAM json.RawMessage `json:"ipam"`
	}
	_ = json.Unmarshal(conf, &c)
	return c.IPAM
}

func parseResult(raw json.RawMessage) (*current.Result, error) {
	r, err := current.NewResult(raw)
	if err != nil {
		return nil, fmt.Errorf("stored IPAM result: %w", err)
	}
	return current.NewResultFromResult(r)
}
