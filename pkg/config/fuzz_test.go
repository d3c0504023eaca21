package config_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

// FuzzParse checks Parse never panics, fails whole (nil config, a non-empty ErrorList, the same text
// every time), and that whatever it accepts is valid and survives Marshal -> Parse unchanged. The
// seed corpus (both config corpora, the examples, testdata/fuzz/FuzzParse) runs in every go test.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{filepath.Join(corpus, "good"), filepath.Join(corpus, "bad"), "../../configs"} {
		for _, file := range corpusFiles(f, dir) {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, "")
		if err != nil {
			var list config.ErrorList
			if cfg != nil || !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("failed parse returned %+v, %T %v", cfg, err, err)
			}
			if _, again := config.Parse(data, ""); again == nil || again.Error() != err.Error() {
				t.Fatalf("error not deterministic: %v vs %v", err, again)
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range cfg.Resources {
			if seen[r.FullName()] {
				t.Fatalf("duplicate resource %s accepted", r.FullName())
			}
			seen[r.FullName()] = true
			if len(r.Selectors) == 0 {
				t.Fatalf("resource %s accepted without selectors", r.FullName())
			}
			for _, s := range r.Selectors {
				if s.Empty() {
					t.Fatalf("resource %s accepted with an empty selector", r.FullName())
				}
			}
		}
		if len(cfg.Resources) == 0 {
			t.Fatal("config accepted with no resources")
		}
		cfg.Warnings = nil // Marshal writes the config as understood: nothing left to warn about
		out, err := config.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := config.Parse(out, "")
		if err != nil {
			t.Fatalf("Parse(Marshal()) failed: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again.Resources, cfg.Resources) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", cfg, again)
		}
		if out2, _ := config.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not stable:\n%s\n%s", out, out2)
		}
	})
}
