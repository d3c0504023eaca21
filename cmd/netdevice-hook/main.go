// Command netdevice-hook is the OCI hook that the CDI spec of every network device asks the container
// runtime to run: createRuntime "attach" moves the device into the container's network namespace,
// poststop "detach" brings it home.
//
//	netdevice-hook attach --pci-address 0000:3b:01.0 [--pod-ifname net1] [--sysfs-root /sys] [--lock-dir DIR] [--allow-upper-devices] [--rdma-device mlx5_2 ...]
//	netdevice-hook attach --host-ifname dummy0       [--pod-ifname net1] [--netconf JSON]
//	netdevice-hook detach --pci-address ... | --host-ifname ...   [same options]
//
// --rdma-device (repeatable) names an RDMA device of the function that travels with its netdevs; the
// daemon writes them into the CDI spec only when the node's RDMA netns mode is exclusive. attach moves
// them into the pod's namespace before the netdevs (an IPoIB netdev is re-created on the host when its
// RDMA device moves, so it can only follow), detach brings them home after the netdevs; a failure
// moves everything back, and a netdev never ends up in the pod while its RDMA device stays on the host.
// Without it nothing RDMA is done (unless the device's record lists RDMA devices a killed hook left
// away: those are finished).
//
// --netconf carries the pool's interface settings as JSON (pkg/netconf; the daemon writes it into
// the CDI spec): after the move attach gives the interface its addresses from the pool's IPAM plugin
// (a CNI IPAM binary in the settings' cniBinDir, called ADD for the pod sandbox, whose ID comes from
// config.json's io.kubernetes.cri.sandbox-id or io.kubernetes.cri-o.SandboxID annotation, else the
// network namespace's identity, with the pod's namespace, name and UID as CNI_ARGS; the lease is
// kept in leaseDir, so every container of the pod and
// every restart of one gets the same addresses), without the host's addresses unless the pool
// carries them, its MTU, sysctls and routes. If any of it fails the device goes home as it came and
// the hook fails naming the pool. Detach does not release the lease: the daemon does (DEL) once no
// pod holds the device.
//
// --allow-upper-devices lets attach move a link that other links are bound to: a vxlan, macvlan or
// VLAN on it (the kernel deletes them when it leaves), its bridge or bond (it leaves them; detach
// puts it back). Without it such a link is refused. A link carrying the host's default route, itself
// or beneath the link that holds it, is refused either way.
//
// The OCI state arrives on stdin; the network namespace comes from <bundle>/config.json. The host
// namespace is the hook's own (the runtime's). It prints nothing on success; on failure one line on
// stderr (at most 4 KiB, values from outside clipped) and exit status 1, so the runtime fails the
// container instead of starting it without its interface.
//
// --lock-dir (default /run/netdevice-plugin/locks) holds, per device, its lock file
// (link-<name>.lock, pci-<address>.lock), which hooks on one device serialize on, and its record
// (link-<name>.json, pci-<address>.json): what the device's links had on the host, written before
// the first change and kept until they are home again, from which any later hook (and the daemon)
// finishes what a killed hook left half way. Neither is ever followed through a symlink. A record
// that cannot be read fails the hook and changes nothing; check the links by hand, then remove it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns"
)

// maxStateBytes bounds what is read from stdin: an OCI state is a few hundred bytes.
const maxStateBytes = 1 << 20

// maxConfigBytes bounds what is read of <bundle>/config.json: a large spec (thousands of mounts and
// environment variables) is a few hundred KiB.
const maxConfigBytes = 16 << 20

// maxLine bounds the one line the hook prints on failure: values from outside (names, paths, IDs)
// are clipped where they are quoted, and the line as a whole is clipped here.
const maxLine = 4096

// maxWord is the longest word errorLine prints unclipped: no word of a message of ours is that long.
const maxWord = 256

func main() {
	if err := run(os.Args[1:], os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		os.Exit(1)
	}
}

// errNoNamespace: the container has no network namespace left to act on.
var errNoNamespace = errors.New("container has no network namespace")

func run(args []string, stdin io.Reader) error {
	if len(args) == 0 || (args[0] != "attach" && args[0] != "detach") {
		return errors.New("usage: netdevice-hook attach|detach --pci-address ADDR|--host-ifname NAME [--pod-ifname NAME] [--sysfs-root DIR] [--lock-dir DIR] [--allow-upper-devices] [--rdma-device NAME ...] < OCI state")
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
	var netconfArg string
	fs.StringVar(&netconfArg, "netconf", "", "the pool's interface settings, as JSON (MTU, IPAM, routes, sysctls), applied after attach")
	fs.Var((*names)(&o.RDMADevices), "rdma-device", "an RDMA device that travels with the netdevs (repeatable; exclusive RDMA netns mode)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", cmd, clip(fs.Arg(0)))
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	var settings *netconf.Settings
	if netconfArg != "" {
		var err error
		if settings, err = netconf.Decode(netconfArg); err != nil {
			return fmt.Errorf("%s %s: --netconf: %w", cmd, t, err)
		}
		if settings.Empty() {
			settings = nil
		}
	}

	state, err := readState(stdin)
	if err != nil {
		return fmt.Errorf("%s %s: %w", cmd, t, err)
	}
	c, err := containerOf(state)
	if cmd == "detach" && errors.Is(err, errNoNamespace) {
		return nil // nothing can hold the device any more
	}
	if err != nil {
		return fmt.Errorf("%s %s: container %s: %w", cmd, t, clip(state.ID), err)
	}

	if cmd == "detach" {
		// The addresses stay leased to the pod (a restarted container gets them again); the daemon
		// releases them once the kubelet no longer gives the device to the pod.
		if _, err := netns.Detach(c.NetNS, t, o); err != nil {
			return fmt.Errorf("%s: container %s: %w", cmd, clip(state.ID), err)
		}
		return nil
	}
	o.DropHostAddresses = settings != nil && settings.DropHostAddresses
	res, err := netns.Attach(c.NetNS, t, o)
	if err != nil {
		return fmt.Errorf("%s: container %s: %w", cmd, clip(state.ID), err)
	}
	if settings == nil {
		return nil
	}
	if err := configure(settings, t, res, c); err != nil {
		// Nothing half done: the device goes home as it came.
		if _, derr := netns.Detach(c.NetNS, t, o); derr != nil {
			err = fmt.Errorf("%w; moving it home failed too: %w", err, derr)
		}
		return fmt.Errorf("%s %s: container %s: %w", cmd, t, clip(state.ID), err)
	}
	return nil
}

// names is a repeatable string flag.
type names []string

func (n *names) String() string { return strings.Join(*n, ",") }

func (n *names) Set(v string) error {
	*n = append(*n, v)
	return nil
}

// readState decodes the OCI state the runtime writes on the hook's stdin.
func readState(r io.Reader) (*specs.State, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxStateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read OCI state from stdin: %w", err)
	}
	if len(data) > maxStateBytes {
		return nil, fmt.Errorf("OCI state on stdin is larger than %d bytes", maxStateBytes)
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

// container is what the hook needs of the container it runs for, from its bundle's config.json.
type container struct {
	NetNS string // path of its network namespace
	// Annotations are the runtime's: the pod sandbox's ID and the pod's name (see settings.go).
	Annotations map[string]string
}

// containerOf reads the container's bundle config: its network namespace (see namespaceOf) and its
// annotations.
func containerOf(st *specs.State) (container, error) {
	path := filepath.Join(st.Bundle, "config.json")
	data, err := readConfig(path)
	if err != nil {
		return container{}, fmt.Errorf("bundle config %s: %w", clip(path), err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return container{}, fmt.Errorf("bundle config: %w", err)
	}
	nsPath, err := namespaceOf(st, &spec)
	if err != nil {
		return container{}, err
	}
	return container{NetNS: nsPath, Annotations: spec.Annotations}, nil
}

// readConfig reads a bundle's config.json: a regular file (opened without blocking, so that a FIFO
// in its place cannot hang the hook) of at most maxConfigBytes.
func readConfig(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, pathless(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, pathless(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, pathless(err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigBytes)
	}
	return data, nil
}

// namespaceFromConfig is the network namespace of the container whose config.json is data.
func namespaceFromConfig(st *specs.State, data []byte) (string, error) {
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", fmt.Errorf("bundle config: %w", err)
	}
	return namespaceOf(st, &spec)
}

// namespaceOf is the path of the container's network namespace: the path config.json names (a
// pod's app containers join the sandbox's /proc/<pid>/ns/net), else the namespace the runtime
// created for the container's own process. errNoNamespace when there is none to act on.
func namespaceOf(st *specs.State, spec *specs.Spec) (string, error) {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				continue
			}
			if ns.Path != "" {
				if !filepath.IsAbs(ns.Path) { // the runtime spec requires an absolute path
					return "", fmt.Errorf("bundle config: network namespace path %q is not absolute", clip(ns.Path))
				}
				return ns.Path, nil
			}
			if st.Pid > 0 {
				return "/proc/" + strconv.Itoa(st.Pid) + "/ns/net", nil
			}
			return "", fmt.Errorf("%w: its own namespace died with process %d (status %q)", errNoNamespace, st.Pid, clip(string(st.Status)))
		}
	}
	return "", fmt.Errorf("%w: the bundle config shares the runtime's network namespace", errNoNamespace)
}

// pathless drops the path a *fs.PathError repeats: the caller names the file, clipped.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// clip quotes a value from outside, as the netns package does.
func clip(s string) string { return netns.Clip(s) }

// errorLine is the one line printed for err: "netdevice-hook: " and the message with its white space
// folded, at most maxLine bytes, valid UTF-8.
func errorLine(err error) string {
	msg := err.Error()
	if len(msg) > 4*maxLine { // fold no more than can be shown
		msg = msg[:4*maxLine]
	}
	words := strings.Fields(msg)
	for i, w := range words {
		if len(w) > maxWord { // a value some library repeated whole (the flag package does)
			words[i] = clip(w)
		}
	}
	line := "netdevice-hook: " + strings.Join(words, " ")
	if len(line) > maxLine {
		const more = "... (message clipped)"
		cut := maxLine - len(more)
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + more
	}
	return strings.ToValidUTF8(line, "?")
}
