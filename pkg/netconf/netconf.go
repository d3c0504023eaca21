// Package netconf is what a pool's interface settings tell the hook: the MTU, the IPAM plugin to
// ask for addresses, extra routes, per-interface sysctls, and whether the host's addresses travel
// with the link. The daemon writes it into the CDI spec as the hook's --netconf argument; the hook
// reads it back strictly. It depends on the standard library alone, to keep the hook small.
package netconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// Settings is one pool's interface settings.
type Settings struct {
	// Pool is the resource ("intel.com/sriov_a"): the CNI network name the IPAM plugin sees, and the
	// folder of its leases.
	Pool string `json:"pool"`
	// MTU of the interface in the pod; 0 keeps the link's own.
	MTU int `json:"mtu,omitempty"`
	// IPAM is a CNI IPAM plugin's configuration (the "ipam" object of a CNI network config: "type"
	// and the plugin's own keys); nil: no IPAM.
	IPAM json.RawMessage `json:"ipam,omitempty"`
	// Routes are added in the pod through the interface, after the IPAM result's.
	Routes []Route `json:"routes,omitempty"`
	// Sysctls are per-interface sysctls set in the pod: "net.ipv4.conf.IFNAME.arp_ignore" -> "1",
	// IFNAME standing for the interface's pod-side name (the CNI tuning plugin's convention).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// DropHostAddresses leaves the link's host addresses behind (they come home with it); by
	// default they travel into the pod (the seed demo's way).
	DropHostAddresses bool `json:"dropHostAddresses,omitempty"`
	// CNIBinDir is where the IPAM plugin binaries are (CNI_PATH).
	CNIBinDir string `json:"cniBinDir,omitempty"`
	// LeaseDir holds what each device's IPAM ADD returned, so that every container of its pod and
	// every restart gets the same addresses, and the daemon can release them (DEL) once the pod is
	// gone, even after a reboot: it must be on persistent storage.
	LeaseDir string `json:"leaseDir,omitempty"`
}

// Route is a route through the interface.
type Route struct {
	Dst string `json:"dst"`          // CIDR: "10.2.0.0/16", "::/0"
	GW  string `json:"gw,omitempty"` // next hop; "" = on link
}

// IFNAME is the placeholder of the interface name in sysctl keys.
const IFNAME = "IFNAME"

var sysctlKey = regexp.MustCompile(`^net\.ipv[46]\.conf\.` + IFNAME + `\.[a-z0-9_]+$`)

// CheckSysctl checks a sysctl key and value: only the interface's own IPv4 and IPv6 settings.
func CheckSysctl(key, value string) error {
	if !sysctlKey.MatchString(key) {
		return fmt.Errorf("sysctl %q: only per-interface keys net.ipv4.conf.%s.<name> and net.ipv6.conf.%s.<name> are set", key, IFNAME, IFNAME)
	}
	if value == "" || len(value) > 128 || strings.ContainsAny(value, "\n\r\x00") {
		return fmt.Errorf("sysctl %s: value %q: want one line of at most 128 bytes", key, value)
	}
	return nil
}

// SysctlPath is the /proc/sys file of a key for the interface ifName (whose name may hold dots:
// the key's dots become slashes before the name goes in).
func SysctlPath(key, ifName string) string {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		if p == IFNAME {
			parts[i] = ifName
		}
	}
	return "/proc/sys/" + strings.Join(parts, "/")
}

// CheckRoute checks a route, and returns it with Dst in its canonical form.
func CheckRoute(r Route) (Route, error) {
	_, n, err := net.ParseCIDR(r.Dst)
	if err != nil {
		return r, fmt.Errorf("route dst %q: want a CIDR like 10.2.0.0/16", r.Dst)
	}
	r.Dst = n.String()
	if r.GW != "" {
		gw := net.ParseIP(r.GW)
		if gw == nil {
			return r, fmt.Errorf("route gw %q: not an IP address", r.GW)
		}
		if (gw.To4() != nil) != (n.IP.To4() != nil) {
			return r, fmt.Errorf("route to %s via %s: gateway and destination are not of one IP family", r.Dst, r.GW)
		}
		r.GW = gw.String()
	}
	return r, nil
}

// IPAMType is the "type" of an IPAM configuration: the plugin binary's name.
func IPAMType(ipam json.RawMessage) (string, error) {
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(ipam, &t); err != nil {
		return "", fmt.Errorf("ipam: %w", err)
	}
	if t.Type == "" || strings.ContainsAny(t.Type, "/\\ \t\n") || t.Type == "." || t.Type == ".." {
		return "", fmt.Errorf("ipam type %q: want the name of a plugin binary, like host-local", t.Type)
	}
	return t.Type, nil
}

// Empty reports settings that change nothing: the link travels with its own addresses and MTU.
func (s *Settings) Empty() bool {
	return s.MTU == 0 && s.IPAM == nil && len(s.Routes) == 0 && len(s.Sysctls) == 0 && !s.DropHostAddresses
}

// Encode is the --netconf argument.
func (s *Settings) Encode() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode interface settings of %s: %w", s.Pool, err)
	}
	return string(b), nil
}

// maxBytes bounds the argument: a pool's settings are a few hundred bytes.
const maxBytes = 64 << 10

// Decode reads and checks a --netconf argument: unknown fields, trailing data, a bad route, sysctl
// or IPAM type are errors.
func Decode(arg string) (*Settings, error) {
	if len(arg) > maxBytes {
		return nil, fmt.Errorf("interface settings of %d bytes: at most %d", len(arg), maxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(arg)))
	dec.DisallowUnknownFields()
	var s Settings
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("interface settings: %w", err)
	}
	if dec.More() {
		return nil, errors.New("interface settings: trailing data")
	}
	if s.Pool == "" {
		return nil, errors.New("interface settings: no pool")
	}
	if s.MTU < 0 || s.MTU > 65535 {
		return nil, fmt.Errorf("interface settings: mtu %d", s.MTU)
	}
	for i, r := range s.Routes {
		var err error
		if s.Routes[i], err = CheckRoute(r); err != nil {
			return nil, fmt.Errorf("interface settings: %w", err)
		}
	}
	for k, v := range s.Sysctls {
		if err := CheckSysctl(k, v); err != nil {
			return nil, fmt.Errorf("interface settings: %w", err)
		}
	}
	if s.IPAM != nil {
		if _, err := IPAMType(s.IPAM); err != nil {
			return nil, fmt.Errorf("interface settings: %w", err)
		}
		if s.CNIBinDir == "" || s.LeaseDir == "" {
			return nil, errors.New("interface settings: IPAM needs cniBinDir and leaseDir")
		}
	}
	return &s, nil
}
