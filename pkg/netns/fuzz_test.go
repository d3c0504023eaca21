package netns

import (
	"strings"
	"testing"
)

// FuzzParseAlias: whatever a link's alias holds (anyone can set one), ParseAlias claims it only when
// it is exactly what Alias writes for a valid host name and PCI address, so no other alias is taken
// for ours and a claimed one names a link the kernel could have.
func FuzzParseAlias(f *testing.F) {
	for _, seed := range []string{
		"", "uplink", Alias("dummy0", ""), Alias("ens1f0v3", "0000:3b:01.3"), Alias("eth1", "10000:00:02.0"),
		"netdevice-plugin:", "netdevice-plugin:eth0:", "netdevice-plugin:eth0::", "netdevice-plugin:a/b",
		"netdevice-plugin:eth0:0000:3b:01.3:x", "netdevice-plugin:eth\x000", "netdevice-plugin:eth\xa00",
		"netdevice-plugin:" + strings.Repeat("x", 300), "NETDEVICE-PLUGIN:eth0", "netdevice-plugin:..",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, alias string) {
		host, pci, ok := ParseAlias(alias)
		if !ok {
			if host != "" || pci != "" {
				t.Fatalf("ParseAlias(%q) = %q, %q, false: a refusal names nothing", alias, host, pci)
			}
			return
		}
		if err := validIfName(host); err != nil {
			t.Fatalf("ParseAlias(%q) claims host name %q: %v", alias, host, err)
		}
		if pci != "" && !pciAddressRE.MatchString(pci) {
			t.Fatalf("ParseAlias(%q) claims PCI address %q", alias, pci)
		}
		if back := Alias(host, pci); back != alias {
			t.Fatalf("ParseAlias(%q) = %q, %q, but Alias writes %q for them", alias, host, pci, back)
		}
		tgt := Target{HostName: host}
		if pci != "" {
			tgt = Target{PCIAddress: pci}
		}
		if err := tgt.Validate(); err != nil {
			t.Fatalf("ParseAlias(%q) names target %+v that does not validate: %v", alias, tgt, err)
		}
	})
}

// FuzzAliasRoundTrip: every valid host name and PCI address comes back from its alias.
func FuzzAliasRoundTrip(f *testing.F) {
	f.Add("dummy0", "")
	f.Add("ens1f0v3", "0000:3b:01.3")
	f.Add("eth:0", "")
	f.Add("eth0", "0000:3b:01.3:")
	f.Fuzz(func(t *testing.T, host, pci string) {
		if validIfName(host) != nil || (pci != "" && !pciAddressRE.MatchString(pci)) {
			return
		}
		h, p, ok := ParseAlias(Alias(host, pci))
		if !ok || h != host || p != pci {
			t.Fatalf("ParseAlias(Alias(%q, %q)) = %q, %q, %v", host, pci, h, p, ok)
		}
	})
}
