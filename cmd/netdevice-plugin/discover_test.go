package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const fixtures = "../../testdata/sysfs"

// jsonDevice is the DEVICE object as a generic map, so the test sees exactly what was printed.
type jsonReport struct {
	Pools []struct {
		Resource string           `json:"resource"`
		Devices  []map[string]any `json:"devices"`
	} `json:"pools"`
	Unassigned []map[string]any `json:"unassigned"`
}

func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func discover(t *testing.T, args ...string) (stdout, stderr string, rc int) {
	t.Helper()
	var out, errb bytes.Buffer
	rc = runDiscover(args, &out, &errb)
	return out.String(), errb.String(), rc
}

func ids(devs []map[string]any) []string {
	out := []string{}
	for _, d := range devs {
		out = append(out, d["id"].(string))
	}
	return out
}

func TestDiscoverJSON(t *testing.T) {
	const e810Config = `{"resourceList":[
	  {"resourceName":"sriov_a","resourcePrefix":"example.com","selectors":[{"pfNames":["ens1f0#0-1"]}]},
	  {"resourceName":"dpdk","resourcePrefix":"example.com","selectors":{"drivers":["vfio-pci"]}},
	  {"resourceName":"mellanox","resourcePrefix":"example.com","selectors":[{"vendors":["15b3"]}]}]}`
	const cx6Config = `resourceList:
  - resourceName: cx6_vfs
    selectors:
      - vendors: ["15b3"]
        devices: ["101e"]
`
	tests := []struct {
		name           string
		fixture        string
		config         string
		wantPools      map[string][]string
		wantUnassigned map[string]string // id -> reason
	}{
		{
			name:    "e810 VFs by PF name and driver",
			fixture: "e810",
			config:  e810Config,
			wantPools: map[string][]string{
				"example.com/sriov_a":  {"0000:3b:01.0", "0000:3b:01.1"},
				"example.com/dpdk":     {"0000:3b:01.2", "0000:3b:01.3"},
				"example.com/mellanox": {},
			},
			wantUnassigned: map[string]string{
				"0000:3b:00.0": "PF with VFs enabled",
				"0000:3b:00.1": "no selector matched",
			},
		},
		{
			name:    "switchdev representors never offered",
			fixture: "cx6dx-switchdev",
			config:  cx6Config,
			wantPools: map[string][]string{
				"networking.k8s.io/cx6_vfs": {"0000:86:00.2", "0000:86:00.3", "0000:86:00.4"},
			},
			wantUnassigned: map[string]string{
				"ens2f0npf0vf0":   "switchdev representor",
				"ens2f0npf0vf1":   "switchdev representor",
				"58609951635cbfa": "switchdev representor",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, "config.yaml", tt.config)
			out, errOut, rc := discover(t, "--config", cfg, "--sysfs-root", filepath.Join(fixtures, tt.fixture, "sys"),
				"--software-links=false", "--pci-ids", "../../testdata/pci.ids", "-o", "json")
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, errOut)
			}
			var r jsonReport
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if len(r.Pools) != len(tt.wantPools) {
				t.Errorf("%d pools, want %d", len(r.Pools), len(tt.wantPools))
			}
			for _, p := range r.Pools {
				want, ok := tt.wantPools[p.Resource]
				if !ok {
					t.Errorf("unexpected pool %s", p.Resource)
					continue
				}
				if p.Devices == nil {
					t.Errorf("pool %s: devices is null, want a list", p.Resource)
				}
				if got := ids(p.Devices); !slices.Equal(got, want) {
					t.Errorf("pool %s: devices %v, want %v", p.Resource, got, want)
				}
			}
			reasons := map[string]string{}
			for _, u := range r.Unassigned {
				reasons[u["id"].(string)] = u["reason"].(string)
			}
			for id, want := range tt.wantUnassigned {
				if reasons[id] != want {
					t.Errorf("unassigned %s: reason %q, want %q", id, reasons[id], want)
				}
			}
		})
	}
}

// Every DEVICE has every field, absent strings "" and absent numbers -1.
func TestDiscoverJSONDeviceFields(t *testing.T) {
	cfg := writeConfig(t, "c.json", `{"resourceList":[{"resourceName":"vfs","selectors":[{"pfNames":["ens1f0"]}]}]}`)
	out, errOut, rc := discover(t, "--config", cfg, "--sysfs-root", filepath.Join(fixtures, "e810", "sys"),
		"--software-links=false", "--pci-ids", "../../testdata/pci.ids", "-o", "json")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errOut)
	}
	var r jsonReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	fields := []string{"id", "pciAddress", "ifName", "kind", "vendor", "device", "vendorName", "deviceName", "driver",
		"pfPciAddress", "pfName", "vfIndex", "numaNode", "iommuGroup", "uioDevice", "rdmaDevices", "rdmaCharDevices", "linkType", "operState", "mac", "mtu"}
	vfs := r.Pools[0].Devices
	if len(vfs) != 4 {
		t.Fatalf("pool has %d VFs, want 4", len(vfs))
	}
	for _, d := range vfs {
		for _, f := range fields {
			if _, ok := d[f]; !ok {
				t.Errorf("device %v lacks %q", d["id"], f)
			}
		}
		if len(d) != len(fields) {
			t.Errorf("device %v has %d fields, want %d", d["id"], len(d), len(fields))
		}
	}
	iavf, vfio := vfs[0], vfs[3]
	want := map[string]any{"id": "0000:3b:01.0", "pciAddress": "0000:3b:01.0", "vendor": "8086", "device": "1889",
		"vendorName": "Intel Corporation", "driver": "iavf", "pfPciAddress": "0000:3b:00.0", "pfName": "ens1f0",
		"vfIndex": 0.0, "numaNode": 0.0, "linkType": "ether", "kind": ""}
	for k, v := range want {
		if iavf[k] != v {
			t.Errorf("iavf VF %s = %#v, want %#v", k, iavf[k], v)
		}
	}
	wantVfio := map[string]any{"id": "0000:3b:01.3", "driver": "vfio-pci", "ifName": "", "mtu": -1.0, "mac": "",
		"linkType": "", "vfIndex": 3.0}
	for k, v := range wantVfio {
		if vfio[k] != v {
			t.Errorf("vfio VF %s = %#v, want %#v", k, vfio[k], v)
		}
	}
	if g, ok := vfio["iommuGroup"].(float64); !ok || g < 0 {
		t.Errorf("vfio VF iommuGroup = %v, want a group", vfio["iommuGroup"])
	}
}

func TestDiscoverTable(t *testing.T) {
	cfg := writeConfig(t, "c.json", `{"resourceList":[
	  {"resourceName":"vfs","selectors":[{"pfNames":["ens1f0#0-1"]}]},
	  {"resourceName":"none","selectors":[{"vendors":["15b3"]}]}]}`)
	out, errOut, rc := discover(t, "--config", cfg, "--sysfs-root", filepath.Join(fixtures, "e810", "sys"),
		"--software-links=false")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	wantInOrder := []string{
		"networking.k8s.io/vfs: 2 devices",
		"0000:3b:01.0",
		"0000:3b:01.1",
		"networking.k8s.io/none: 0 devices",
		"not in any pool: 4 devices",
		"0000:3b:00.0",
	}
	i := 0
	for _, l := range lines {
		if i < len(wantInOrder) && strings.Contains(l, wantInOrder[i]) {
			i++
		}
	}
	if i != len(wantInOrder) {
		t.Fatalf("table lacks %q (in order):\n%s", wantInOrder[i], out)
	}
	for _, l := range lines {
		if strings.Contains(l, "0000:3b:00.0") && !strings.HasSuffix(l, "PF with VFs enabled") {
			t.Errorf("PF row does not end with its reason: %q", l)
		}
		if strings.Contains(l, "0000:3b:01.0") && !strings.Contains(l, "8086:1889") {
			t.Errorf("VF row lacks vendor:device: %q", l)
		}
	}
}

func TestDiscoverErrors(t *testing.T) {
	bad := writeConfig(t, "bad.json", `{"resourceList":[{"resourceName":"a","selectors":[{"pfNames":"ens1f0"}]}]}`)
	good := writeConfig(t, "good.json", `{"resourceList":[{"resourceName":"a","selectors":[{"ifNames":["dummy*"]}]}]}`)
	tests := []struct {
		name   string
		args   []string
		rc     int
		stderr string
	}{
		{"bad field names the path", []string{"--config", bad}, 1, "resourceList[0].selectors[0].pfNames: must be a list of strings"},
		{"bad config names the file", []string{"--config", bad}, 1, bad},
		{"missing config file", []string{"--config", bad + ".absent"}, 1, "bad.json.absent"},
		{"no --config", nil, 2, "--config is required"},
		{"bad output format", []string{"--config", good, "-o", "yaml"}, 2, `-o "yaml"`},
		{"missing sysfs root", []string{"--config", good, "--sysfs-root", "/nonexistent/sys", "--software-links=false"}, 1, "/nonexistent/sys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, rc := discover(t, tt.args...)
			if rc != tt.rc {
				t.Fatalf("exit %d, want %d (stderr %q)", rc, tt.rc, errOut)
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.stderr)
			}
			if out != "" {
				t.Errorf("stdout not empty on error: %q", out)
			}
		})
	}
}

// TestDiscoverConfigWarnings: keys sriov-dp ignores are printed as warnings above the table and in
// the JSON report; --strict-config turns them into the error that fails the run.
func TestDiscoverConfigWarnings(t *testing.T) {
	cfg := writeConfig(t, "config.json", `{"resourceList":[{"resourceName":"sriov_a","resourcePrefix":"example.com",
	  "selectors":[{"PfNames":["ens1f0#0-1"],"IsRdma":false,"NeedVhostNet":false,"pfName":["ens1f1"]}],"SelectorObj":null}]}`)
	warning := cfg + `: resourceList[0].selectors[0].pfName: unknown field, ignored (did you mean "pfNames"?)`
	root := filepath.Join(fixtures, "e810", "sys")

	out, errOut, rc := discover(t, "--config", cfg, "--sysfs-root", root, "--software-links=false")
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "warning: "+warning {
		t.Errorf("first line %q, want the warning", first)
	}
	if !strings.Contains(out, "example.com/sriov_a: 2 devices") {
		t.Errorf("the capitalised PfNames did not select the two VFs:\n%s", out)
	}

	out, errOut, rc = discover(t, "--config", cfg, "--sysfs-root", root, "--software-links=false", "-o", "json")
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut)
	}
	var report struct {
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(report.Warnings, []string{warning}) {
		t.Errorf("warnings %q, want %q", report.Warnings, warning)
	}

	out, errOut, rc = discover(t, "--config", cfg, "--sysfs-root", root, "--software-links=false", "--strict-config")
	if rc != 1 || out != "" || !strings.Contains(errOut, `resourceList[0].selectors[0].pfName: unknown field (did you mean "pfNames"?)`) {
		t.Errorf("--strict-config: rc %d, stdout %q, stderr %q; want exit 1 naming the field", rc, out, errOut)
	}
}

// Each pool's interface settings are printed under its name, and given in the JSON report.
func TestDiscoverInterfaceSettings(t *testing.T) {
	cfg := "../../testdata/config/good/interface-settings.yaml"
	root := filepath.Join(fixtures, "e810", "sys")
	out, errOut, rc := discover(t, "--config", cfg, "--sysfs-root", root, "--software-links=false")
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut)
	}
	want := "  interface: named net1, mtu 9000, ipam host-local, route 10.99.0.0/16 via 10.56.0.1, route fd00:99::/64, " +
		"net.ipv4.conf.IFNAME.arp_ignore=1, net.ipv6.conf.IFNAME.accept_ra=0, host addresses stay\n"
	if !strings.Contains(out, "intel.com/sriov_ipam: 2 devices\n"+want) {
		t.Errorf("output lacks the pool's interface line %q:\n%s", want, out)
	}
	out, _, _ = discover(t, "--config", cfg, "--sysfs-root", root, "--software-links=false", "-o", "json")
	var r struct {
		Pools []struct {
			Interface struct {
				MTU                int             `json:"mtu"`
				IPAM               json.RawMessage `json:"ipam"`
				CarryHostAddresses bool            `json:"carryHostAddresses"`
			} `json:"interface"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if i := r.Pools[0].Interface; i.MTU != 9000 || !strings.Contains(string(i.IPAM), `"type": "host-local"`) || i.CarryHostAddresses {
		t.Errorf("JSON interface %+v", i)
	}
	if !r.Pools[1].Interface.CarryHostAddresses {
		t.Error("carryHostAddresses: true lost")
	}
}
