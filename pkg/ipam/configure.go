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
		todo, err := missing(link, res, ifName)
		if err != nil {
			return err
		}
		if todo != nil {
			if err := ipam.ConfigureIface(ifName, todo); err != nil {
				return fmt.Errorf("apply the IPAM result to %s: %w", ifName, err)
			}
		} else if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", ifName, err)
		}
		return addRoutes(link, s.Routes)
	})
}

// missing is what of the IPAM result the link still lacks, on the one interface as ConfigureIface
// wants it (an IPAM plugin's result names no interface): nil when it has it all (no result, or a
// hook finishing an attach an earlier one configured, in part or whole: the kernel refuses an
// address or route twice). Routes get their gateway spelt out, as ConfigureIface would pick it from
// the result's addresses, since those it already has are left out.
func missing(link netlink.Link, res *current.Result, ifName string) (*current.Result, error) {
	if res == nil || len(res.IPs) == 0 {
		return nil, nil
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s in the pod: %w", ifName, err)
	}
	have := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		have[a.IPNet.String()] = true
	}
	r := *res
	r.Interfaces = []*current.Interface{{Name: ifName}}
	r.IPs = nil
	var v4gw, v6gw net.IP
	for _, ipc := range res.IPs {
		if ipc.Gateway.To4() != nil && v4gw == nil {
			v4gw = ipc.Gateway
		} else if ipc.Gateway != nil && ipc.Gateway.To4() == nil && v6gw == nil {
			v6gw = ipc.Gateway
		}
		if have[ipc.Address.String()] {
			continue
		}
		c := *ipc
		c.Interface = current.Int(0)
		r.IPs = append(r.IPs, &c)
	}
	r.Routes = nil
	for _, rt := range res.Routes {
		c := *rt
		if c.GW == nil {
			if c.Dst.IP.To4() != nil {
				c.GW = v4gw
			} else {
				c.GW = v6gw
			}
		}
		family := netlink.FAMILY_V6
		if c.Dst.IP.To4() != nil {
			family = netlink.FAMILY_V4
		}
		dst := c.Dst
		found, err := netlink.RouteListFiltered(family, &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &dst}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
		if err != nil {
			return nil, fmt.Errorf("routes of %s in the pod: %w", ifName, err)
		}
		if len(found) == 0 {
			r.Routes = append(r.Routes, &c)
		}
	}
	if len(r.IPs) == 0 && len(r.Routes) == 0 {
		return nil, nil
	}
	return &r, nil
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
