package config_test

import (
	"os"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

// BenchmarkParse parses the sriov-dp example (5 resources), as the daemon does on every reload.
func BenchmarkParse(b *testing.B) {
	for _, file := range []string{"sriov-dp-config.json", "kind-dummy.yaml"} {
		data, err := os.ReadFile("../../configs/" + file)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(file, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := config.Parse(data, "intel.com"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
