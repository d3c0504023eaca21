package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

const seedConfig = `{"resourceList":[{"resourceName":"netdevice","selectors":[{"ifNames":["dummy*"]}]}]}`

func TestSeedConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(seedConfig), config.DefaultResourcePrefix)
	if err != nil {
		t.Fatal(err)
	}
	want := &config.Config{Resources: []config.Resource{{
		Name:       "netdevice",
		Prefix:     "networking.k8s.io",
		DeviceType: config.DeviceTypeNetDevice,
		Selectors:  []config.Selector{{IfNames: []string{"dummy*"}}},
	}}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("Parse(seed) = %+v, want %+v", cfg, want)
	}
	if got := cfg.Resources[0].FullName(); got != "networking.k8s.io/netdevice" {
		t.Errorf("FullName() = %q", got)
	}
}

func TestDefaultPrefix(t *testing.T) {
	tests := []struct {
		name          string
		doc           string
		defaultPrefix string
		want          []string // full names
		err           string
	}{
		{name: "empty flag gives the built-in default", doc: seedConfig, want: []string{"networking.k8s.io/netdevice"}},
		{name: "flag", doc: seedConfig, defaultPrefix: "intel.com", want: []string{"intel.com/netdevice"}},
		{
			name:          "config prefix wins over the flag",
			doc:           `{"resourceList":[{"resourceName":"a","resourcePrefix":"acme.com","selectors":{"vendors":["8086"]}},{"resourceName":"b","selectors":{"vendors":["15b3"]}}]}`,
			defaultPrefix: "intel.com",
			want:          []string{"acme.com/a", "intel.com/b"},
		},
		{
			name: "empty resourcePrefix means the default, as in sriov-dp",
			doc:  `{"resourceList":[{"resourceName":"a","resourcePrefix":"","selectors":{"vendors":["8086"]}}]}`,
			want: []string{"networking.k8s.io/a"},
		},
		{
			name:          "same name under the flag's prefix and an explicit one is a duplicate",
			doc:           `{"resourceList":[{"resourceName":"a","selectors":{"vendors":["8086"]}},{"resourceName":"a","resourcePrefix":"intel.com","selectors":{"vendors":["15b3"]}}]}`,
			defaultPrefix: "intel.com",
			err:           `resourceList[1].resourceName: resource "intel.com/a" is already defined by resourceList[0]`,
		},
		{name: "bad flag", doc: seedConfig, defaultPrefix: "Not_A_Domain", err: `default resource prefix "Not_A_Domain": resource prefix "Not_A_Domain" is not a DNS subdomain`},
		{name: "reserved flag", doc: seedConfig, defaultPrefix: "kubernetes.io", err: "reserved for Kubernetes' native resources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tt.doc), tt.defaultPrefix)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || cfg != nil {
					t.Fatalf("Parse = %+v, %v; want nil and an error containing %q", cfg, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range cfg.Resources {
				got = append(got, r.FullName())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resources = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["ens1f0#3-1"],"vendors":[8086]}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("resourceList:\n- resourceName: netdevice\n  selectors: {ifNames: [dummy*]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.json")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, append([]byte(`{"resourceList":[`), bytes.Repeat([]byte(" "), config.MaxConfigBytes)...), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		err  string
	}{
		{path: good},
		{path: bad, err: bad + `: resourceList[0].selectors.vendors[0]: must be a string, got number 8086 (quote it: "8086")`},
		{path: filepath.Join(dir, "missing.json"), err: filepath.Join(dir, "missing.json") + ": no such file or directory"},
		{path: dir, err: dir + ": is a directory, not a regular file"},
		// Neither blocks nor reads without end.
		{path: fifo, err: fifo + ": is a FIFO, not a regular file"},
		{path: "/dev/zero", err: "/dev/zero: is a character device, not a regular file"},
		{path: big, err: fmt.Sprintf("%s: %d bytes: file too large (at most %d)", big, config.MaxConfigBytes+17, config.MaxConfigBytes)},
	}
	for _, tt := range tests {
		cfg, err := config.Load(tt.path, "")
		if tt.err == "" {
			if err != nil || len(cfg.Resources) != 1 || cfg.Resources[0].FullName() != "networking.k8s.io/netdevice" {
				t.Errorf("Load(%s) = %+v, %v", tt.path, cfg, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.err || cfg != nil {
			t.Errorf("Load(%s) = %+v, %v; want error %q", tt.path, cfg, err, tt.err)
		}
	}
}

// TestErrorList checks that callers can walk the problems one by one, in a stable order.
func TestErrorList(t *testing.T) {
	doc := `{"resourceList":[
		{"resourceName":"a","selectors":{"vendors":["86"],"devices":["zz"]}},
		{"resourceName":"b","selectors":[]}]}`
	strict := config.Options{Strict: true} // values sriov-dp tolerates are errors too
	_, err := config.ParseWith([]byte(doc), strict)
	var list config.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v is not an ErrorList", err)
	}
	var paths []string
	for _, e := range list {
		paths = append(paths, e.Path)
	}
	want := []string{"resourceList[0].selectors.vendors[0]", "resourceList[0].selectors.devices[0]", "resourceList[1].selectors"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Path != want[0] {
		t.Errorf("errors.As(*FieldError) = %v, want the first problem", fe)
	}
	if !strings.HasPrefix(err.Error(), "3 problems:\n  resourceList[0].selectors.vendors[0]: ") {
		t.Errorf("Error() = %q", err.Error())
	}
	for i := 0; i < 20; i++ {
		_, again := config.ParseWith([]byte(doc), strict)
		if again.Error() != err.Error() {
			t.Fatalf("second parse gave a different error:\n%v\nvs\n%v", again, err)
		}
	}
}

// TestExampleConfigs loads the shipped examples the way the daemon does.
func TestExampleConfigs(t *testing.T) {
	tests := []struct {
		file          string
		defaultPrefix string
		want          []string // full names, in order
	}{
		{file: "kind-dummy.yaml", want: []string{"networking.k8s.io/netdevice"}},
		// sriov-dp's own default prefix is "intel.com"; run with --resource-prefix=intel.com to keep its names.
		{file: "sriov-dp-config.json", defaultPrefix: "intel.com", want: []string{
			"intel.com/intel_sriov_netdevice", "intel.com/intel_sriov_dpdk", "mellanox.com/mlnx_sriov_netdevice",
			"intel.com/x710_pf", "intel.com/infiniband_netdevs",
		}},
	}
	for _, tt := range tests {
		cfg, err := config.Load(filepath.Join("../../configs", tt.file), tt.defaultPrefix)
		if err != nil {
			t.Errorf("Load: %v", err)
			continue
		}
		var got []string
		for _, r := range cfg.Resources {
			got = append(got, r.FullName())
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: resources %v, want %v", tt.file, got, tt.want)
		}
	}
}

// TestHostileInput checks the limits that keep a hostile or broken config from exhausting the
// daemon: nesting far deeper than any config (which once overflowed the stack at ~5 MB), and size.
func TestHostileInput(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		err  string
	}{
		{name: "deep JSON list", doc: `{"resourceList":` + strings.Repeat("[", 500000), err: "invalid JSON: nested deeper than 32 levels"},
		{name: "deep JSON objects", doc: strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000), err: "nested deeper than 32 levels"},
		{name: "deep YAML", doc: "resourceList: " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000), err: "exceeded max depth"},
		{name: "deep YAML within the YAML limit", doc: "resourceList: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000), err: "nested deeper than 32 levels"},
		{name: "too large", doc: `{"resourceList":[]}` + strings.Repeat(" ", config.MaxConfigBytes), err: "more than the 1048576 a config may have"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tt.doc), "")
			if err == nil || cfg != nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Parse = %v, %v; want an error containing %q", cfg, err, tt.err)
			}
		})
	}
}

// TestLongValuesStayOutOfMessages: a value far longer than any field takes is refused without
// being repeated whole, so a 1 MiB name cannot make a 1 MiB log line.
func TestLongValuesStayOutOfMessages(t *testing.T) {
	long := strings.Repeat("x", 500000)
	for _, doc := range []string{
		`{"resourceList":[{"resourceName":"` + long + `","selectors":{"vendors":["8086"]}}]}`,
		`{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["` + long + `"]}}]}`,
		`{"resourceList":[{"resourceName":` + strings.Repeat("1", 500000) + `,"selectors":{"vendors":["8086"]}}]}`,
	} {
		_, err := config.Parse([]byte(doc), "")
		if err == nil {
			t.Fatal("accepted")
		}
		if n := len(err.Error()); n > 300 {
			t.Errorf("error message is %d bytes: %.120s...", n, err)
		}
	}
}
