package ipam

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
)

// Configure sets the interface ifName up in the network namespace at nsPath as the pool says: its
// MTU, the addresses and routes of the IPAM result (res may be nil: no IPAM) through the CNI
// plugins' own ipam.ConfigureIface, the pool's extra routes, and its per-interface sysctls. It
// sets the link up.
func Configure(nsPath, ifName string, res *current.Result, s *netconf.Settings) error {
	target, err := ns.GetNS(nsPath)
	if err != nil {
		return fmt.Errorf("pod network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	return target.Do(func(ns.NetNS) error {
		link, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("interface %s in the pod: %w", ifName, err)
		}
		if s.MTU > 0 && link.Attrs().MTU != s.MTU {
			if err := netlink.LinkSetMTU(link, s.MTU); err != nil {
				return fmt.Errorf("set MTU %d on %s: %w", s.MTU, ifName, err)
			}
		}
		// Sysctls first: accept_ra and the like must hold before the link comes up.
		if err := setSysctls(ifName, s.Sysctls); err != nil {
			return err
		}
		if res != nil && len(res.IPs) > 0 {
			if err := ipam.ConfigureIface(ifName, forInterface(res, ifName)); err != nil {
				return fmt.Errorf("apply the IPAM result to %s: %w", ifName, err)
			}
		} else if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", ifName, err)
		}
		return addRoutes(link, s.Routes)
	})
}

// forInterface is the result with its addresses on the one interface, as ConfigureIface wants it
// (an IPAM plugin's result names no interface).
func forInterface(res *current.Result, ifName string) *current.Result {
	r := *res
	r.Interfaces = []*current.Interface{{Name: ifName}}
	r.IPs = make([]*current.IPConfig, len(res.IPs))
	for i, ipc := range res.IPs {
		c := *ipc
		c.Interface = current.Int(0)
		r.IPs[i] = &c
	}
	return &r
}

func addRoutes(link netlink.Link, routes []netconf.Route) error {
	var errs []error
	for _, r := range routes {
		_, dst, err := net.ParseCIDR(r.Dst)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", r.Dst, err))
			continue
		}
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: net.ParseIP(r.GW)}
		if r.GW == "" {
			route.Scope = netlink.SCOPE_LINK
		}
		if err := netlink.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s dev %s: %w", r.Dst, orLink(r.GW), link.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

func orLink(gw string) string {
	if gw == "" {
		return "link"
	}
	return gw
}

// setSysctls writes the per-interface sysctls, in key order, in the current namespace (Configure
// runs it inside the pod's).
func setSysctls(ifName string, sysctls map[string]string) error {
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := netconf.SysctlPath(k, ifName)
		if err := os.WriteFile(path, []byte(sysctls[k]), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s on %s: %w", k, sysctls[k], ifName, err)
		}
	}
	return nil
}
