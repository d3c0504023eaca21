package netconf_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netconf"
)

// What the daemon encodes, the hook decodes to the same settings.
func TestEncodeDecode(t *testing.T) {
	s := netconf.Settings{Pool: "intel.com/sriov", MTU: 9000, IPAM: json.RawMessage(`{"type":"host-local","subnet":"10.1.0.0/24"}`),
		Routes: []netconf.Route{{Dst: "10.2.0.0/16", GW: "10.1.0.1"}, {Dst: "::/0"}}, Sysctls: map[string]string{"net.ipv6.conf.IFNAME.accept_ra": "0"},
		DropHostAddresses: true, CNIBinDir: "/opt/cni/bin", LeaseDir: "/var/lib/netdevice-plugin/ipam"}
	arg, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := netconf.Decode(arg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, s) {
		t.Errorf("decoded %+v, want %+v", *got, s)
	}
	if (&netconf.Settings{Pool: "p"}).Empty() != true || s.Empty() {
		t.Error("Empty: a pool without settings is empty, one with settings is not")
	}
}

func TestDecodeRefuses(t *testing.T) {
	for arg, want := range map[string]string{
		`{"mtu":1500}`:                                                        "no pool",
		`{"pool":"p","mtu":70000}`:                                            "mtu 70000",
		`{"pool":"p","mtu":-1}`:                                               "mtu -1",
		`{"pool":"p","bogus":true}`:                                           `unknown field "bogus"`,
		`{"pool":"p"}{"pool":"q"}`:                                            "trailing data",
		`{"pool":"p","routes":[{"dst":"10.0.0.0"}]}`:                          `route dst "10.0.0.0"`,
		`{"pool":"p","routes":[{"dst":"::/0","gw":"10.0.0.1"}]}`:              "not of one IP family",
		`{"pool":"p","routes":[{"dst":"10.0.0.0/8","gw":"x"}]}`:               `route gw "x"`,
		`{"pool":"p","sysctls":{"net.ipv4.ip_forward":"1"}}`:                  `sysctl "net.ipv4.ip_forward"`,
		`{"pool":"p","sysctls":{"net.ipv4.conf.IFNAME.rp_filter":"1\n2"}}`:    "want one line",
		`{"pool":"p","ipam":{"type":"host-local"}}`:                           "IPAM needs cniBinDir and leaseDir",
		`{"pool":"p","ipam":{},"cniBinDir":"/b","leaseDir":"/l"}`:             `ipam type ""`,
		`{"pool":"p","ipam":{"type":"a/b"},"cniBinDir":"/b","leaseDir":"/l"}`: `ipam type "a/b"`,
		`{"pool":"p","ipam":{"type":".."},"cniBinDir":"/b","leaseDir":"/l"}`:  `ipam type ".."`,
		`{"pool":"p","ipam":[1],"cniBinDir":"/b","leaseDir":"/l"}`:            "ipam:",
		`{"pool":"p","x":"` + strings.Repeat("a", 70<<10) + `"}`:              "at most 65536",
	} {
		if _, err := netconf.Decode(arg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%.60s) = %v, want an error with %q", arg, err, want)
		}
	}
}

func TestCheckRouteNormalizes(t *testing.T) {
	r, err := netconf.CheckRoute(netconf.Route{Dst: "10.2.3.4/16", GW: "2001:db8::0:1"})
	if err == nil {
		t.Fatalf("mixed families accepted: %+v", r)
	}
	r, err = netconf.CheckRoute(netconf.Route{Dst: "2001:db8::5/32", GW: "2001:db8:0::1"})
	if err != nil || r.Dst != "2001:db8::/32" || r.GW != "2001:db8::1" {
		t.Errorf("CheckRoute = %+v, %v; want the network and the gateway in canonical form", r, err)
	}
}

func TestSysctlPath(t *testing.T) {
	if got := netconf.SysctlPath("net.ipv6.conf.IFNAME.accept_ra", "net1"); got != "/proc/sys/net/ipv6/conf/net1/accept_ra" {
		t.Errorf("SysctlPath = %s", got)
	}
}
