// Command netdevice-hook is the OCI hook that the CDI spec of every network device asks the container
// runtime to run: createRuntime "attach" moves the device into the container's network namespace,
// poststop "detach" brings it home.
//
//	netdevice-hook attach --pci-address 0000:3b:01.0 [--pod-ifname net1] [--sysfs-root /sys] [--lock-dir DIR] [--allow-upper-devices]
//	netdevice-hook attach --host-ifname dummy0       [--pod-ifname net1]
//	netdevice-hook detach --pci-address ... | --host-ifname ...   [same options]
//
// --allow-upper-devices lets attach move a link that other links are bound to: a vxlan, macvlan or
// VLAN on it (the kernel deletes them when it leaves), its bridge or bond (it leaves them; detach
// puts it back). Without it such a link is refused. A link carrying the host's default route, itself
// or beneath the link that holds it, is refused either way.
//
// The OCI state arrives on stdin; the network namespace comes from <bundle>/config.json. The host
// namespace is the hook's own (the runtime's). It prints nothing on success; on failure one line on
// stderr and exit status 1, so the runtime fails the container instead of starting it without its
// interface.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
)

// maxStateBytes bounds what is read from stdin: an OCI state is a few hundred bytes.
const maxStateBytes = 1 << 20

func main() {
	if err := run(os.Args[1:], os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "netdevice-hook: "+oneLine(err.Error()))
		os.Exit(1)
	}
}

// errNoNamespace: the container has no network namespace left to act on.
var errNoNamespace = errors.New("container has no network namespace")

func run(args []string, stdin io.Reader) error {
	if len(args) == 0 || (args[0] != "attach" && args[0] != "detach") {
		return errors.New("usage: netdevice-hook attach|detach --pci-address ADDR|--host-ifname NAME [--pod-ifname NAME] [--sysfs-root DIR] [--lock-dir DIR] [--allow-upper-devices] < OCI state")
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned and printed as one line
	var (
		t netns.Target
		o netns.Options
	)
	fs.StringVar(&t.PCIAddress, "pci-address", "", "PCI address of the function whose netdevs move")
	fs.StringVar(&t.HostName, "host-ifname", "", "host name of the link that moves")
	fs.StringVar(&o.PodIfName, "pod-ifname", "", "name inside the pod (net1; taken -> net2, ...); default: the host name")
	fs.StringVar(&o.SysfsRoot, "sysfs-root", netns.DefaultSysfsRoot, "where sysfs is mounted")
	fs.StringVar(&o.LockDir, "lock-dir", netns.DefaultLockDir, "directory of the per-device lock files")
	fs.BoolVar(&o.AllowUpperDevices, "allow-upper-devices", false, "move a link that other links are bound to (a vxlan or macvlan on it, its bridge or bond)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", cmd, fs.Arg(0))
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}

	state, err := readState(stdin)
	if err != nil {
		return fmt.Errorf("%s %s: %w", cmd, t, err)
	}
	nsPath, err := networkNamespace(state)
	if cmd == "detach" && errors.Is(err, errNoNamespace) {
		return nil // nothing can hold the device any more
	}
	if err != nil {
		return fmt.Errorf("%s %s: container %s: %w", cmd, t, state.ID, err)
	}

	if cmd == "attach" {
		_, err = netns.Attach(nsPath, t, o)
	} else {
		_, err = netns.Detach(nsPath, t, o)
	}
	if err != nil {
		return fmt.Errorf("%s: container %s: %w", cmd, state.ID, err)
	}
	return nil
}

// readState decodes the OCI state the runtime writes on the hook's stdin.
func readState(r io.Reader) (*specs.State, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxStateBytes))
	if err != nil {
		return nil, fmt.Errorf("read OCI state from stdin: %w", err)
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("OCI state on stdin: %w", err)
	}
	if st.Bundle == "" {
		return nil, errors.New("OCI state on stdin has no bundle")
	}
	return &st, nil
}

// networkNamespace is the path of the container's network namespace: the path config.json names
// (a pod's app containers join the sandbox's /proc/<pid>/ns/net), else the namespace the runtime
// created for the container's own process. errNoNamespace when there is none to act on.
func networkNamespace(st *specs.State) (string, error) {
	path := filepath.Join(st.Bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("bundle config: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", fmt.Errorf("bundle config %s: %w", path, err)
	}
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				continue
			}
			if ns.Path != "" {
				return ns.Path, nil
			}
			if st.Pid > 0 {
				return "/proc/" + strconv.Itoa(st.Pid) + "/ns/net", nil
			}
			return "", fmt.Errorf("%w: its own namespace died with process %d (status %q)", errNoNamespace, st.Pid, st.Status)
		}
	}
	return "", fmt.Errorf("%w: %s shares the runtime's network namespace", errNoNamespace, path)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
