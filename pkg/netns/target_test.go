package netns

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAlias(t *testing.T) {
	tests := []struct {
		alias    string
		wantHost string
		wantPCI  string
		wantOK   bool
	}{
		{alias: Alias("dummy0", ""), wantHost: "dummy0", wantOK: true},
		{alias: Alias("ens1f0v3", "0000:3b:01.3"), wantHost: "ens1f0v3", wantPCI: "0000:3b:01.3", wantOK: true},
		{alias: Alias("eth1", "10000:00:02.0"), wantHost: "eth1", wantPCI: "10000:00:02.0", wantOK: true}, // VMD domain
		{alias: "netdevice-plugin:dummy0", wantHost: "dummy0", wantOK: true},
		{alias: ""},
		{alias: "uplink to rack 3"},
		{alias: "netdevice-plugin:"},               // no host name
		{alias: "netdevice-plugin:a/b"},            // not an interface name
		{alias: "netdevice-plugin:eth0:not-a-pci"}, // broken PCI part
		{alias: "netdevice-plugin:waytoolonginterfacename"},
		{alias: "NETDEVICE-PLUGIN:dummy0"},
		{alias: "netdevice-plugin:eth0:"},           // not what Alias writes: an empty PCI part
		{alias: "netdevice-plugin:eth\x000"},        // NUL: the kernel would read "eth"
		{alias: "netdevice-plugin:eth\xa00"},        // the kernel's isspace counts 0xa0
		{alias: "netdevice-plugin:..:0000:3b:01.0"}, // not an interface name
	}
	for _, tt := range tests {
		host, pci, ok := ParseAlias(tt.alias)
		if host != tt.wantHost || pci != tt.wantPCI || ok != tt.wantOK {
			t.Errorf("ParseAlias(%q) = %q, %q, %v; want %q, %q, %v", tt.alias, host, pci, ok, tt.wantHost, tt.wantPCI, tt.wantOK)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	tests := []struct {
		target  Target
		wantErr string
	}{
		{target: Target{PCIAddress: "0000:3b:01.0"}},
		{target: Target{HostName: "dummy0"}},
		{target: Target{}, wantErr: "neither"},
		{target: Target{PCIAddress: "0000:3b:01.0", HostName: "dummy0"}, wantErr: "both"},
		{target: Target{PCIAddress: "3b:01.0"}, wantErr: `"3b:01.0"`},
		{target: Target{PCIAddress: "0000:3b:01.0/../../x"}, wantErr: "not of the form"},
		{target: Target{HostName: "a:b"}, wantErr: `"a:b"`},
		{target: Target{HostName: "sixteen-bytes-xx"}, wantErr: "longer than 15"},
		{target: Target{HostName: "eth\x00"}, wantErr: "NUL or white space"},
		{target: Target{HostName: "eth\xa0"}, wantErr: "NUL or white space"},
		{target: Target{HostName: strings.Repeat("x", 1<<20)}, wantErr: "...(1048576 bytes)"},
	}
	for _, tt := range tests {
		err := tt.target.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%.80q.Validate() = %.200v, want error containing %q", tt.target.HostName+tt.target.PCIAddress, err, tt.wantErr)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("Validate's error is %d bytes: it repeats the value whole", len(err.Error()))
		}
	}
}

func TestNameCandidates(t *testing.T) {
	tests := []struct {
		want  string
		first []string
	}{
		{want: "net1", first: []string{"net1", "net2", "net3"}},
		{want: "net9", first: []string{"net9", "net10", "net11"}},
		{want: "eth", first: []string{"eth", "eth1", "eth2"}},
		{want: "dummy0", first: []string{"dummy0", "dummy1", "dummy2"}},
		{want: "abcdefghijklmn9", first: []string{"abcdefghijklmn9"}}, // abcdefghijklmn10 is too long
	}
	for _, tt := range tests {
		var got []string
		for name := range nameCandidates(tt.want) {
			got = append(got, name)
			if len(got) == len(tt.first) {
				break
			}
		}
		if !slices.Equal(got, tt.first) {
			t.Errorf("nameCandidates(%q) starts %v, want %v", tt.want, got, tt.first)
		}
	}
}

// TestPCINetdevs reads a fixture laid out as real sysfs is: bus/pci/devices/<bdf> is a symlink into
// devices/, netdevs sit in <bdf>/net/ or, for virtio-net, <bdf>/virtio<N>/net/.
func TestPCINetdevs(t *testing.T) {
	root := t.TempDir()
	fixture := map[string][]string{
		"pci0000:3a/0000:3a:00.0/0000:3b:00.0/net/ens1f0": nil,
		"pci0000:3a/0000:3a:00.0/0000:3b:01.0/net/eth1":   nil, // ConnectX-3: two netdevs on one function
		"pci0000:3a/0000:3a:00.0/0000:3b:01.0/net/eth0":   nil,
		"pci0000:00/0000:00:03.0/virtio0/net/ens3":        nil,
		"pci0000:3a/0000:3a:00.0/0000:3b:02.0/driver":     nil, // vfio-pci: no netdev
	}
	for rel := range fixture {
		if err := os.MkdirAll(filepath.Join(root, "devices", rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bus := filepath.Join(root, "bus", "pci", "devices")
	if err := os.MkdirAll(bus, 0o755); err != nil {
		t.Fatal(err)
	}
	for bdf, real := range map[string]string{
		"0000:3b:00.0": "pci0000:3a/0000:3a:00.0/0000:3b:00.0",
		"0000:3b:01.0": "pci0000:3a/0000:3a:00.0/0000:3b:01.0",
		"0000:00:03.0": "pci0000:00/0000:00:03.0",
		"0000:3b:02.0": "pci0000:3a/0000:3a:00.0/0000:3b:02.0",
	} {
		if err := os.Symlink("../../../devices/"+real, filepath.Join(bus, bdf)); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		addr    string
		want    []string
		wantErr bool
	}{
		{addr: "0000:3b:00.0", want: []string{"ens1f0"}},
		{addr: "0000:3b:01.0", want: []string{"eth0", "eth1"}},
		{addr: "0000:00:03.0", want: []string{"ens3"}},
		{addr: "0000:3b:02.0", want: nil},
		{addr: "0000:99:00.0", wantErr: true},
	}
	for _, tt := range tests {
		got, err := PCINetdevs(root, tt.addr)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("PCINetdevs(%s) = %v, %v; want %v, error %v", tt.addr, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), tt.addr) {
			t.Errorf("error %q does not name %s", err, tt.addr)
		}
	}
}
