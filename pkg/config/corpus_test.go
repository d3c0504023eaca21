package config_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the .want.json and .err files of the config corpora")

const corpus = "../../testdata/config"

// corpusFiles lists the config inputs of a corpus folder, leaving out the expectation files.
func corpusFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read corpus %s: %v", dir, err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".want.json") || strings.HasSuffix(name, ".err") {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	if len(files) == 0 {
		t.Fatalf("corpus %s is empty", dir)
	}
	return files
}

// expectation names the file holding what input must give: "seed.yaml" -> "seed.yaml.want.json".
func expectation(input, suffix string) string { return input + suffix }

// parseFile parses a corpus config that must load; it returns the file's bytes too.
func parseFile(t *testing.T, file string) (*config.Config, []byte) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(data, "")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return got, data
}

// TestGoodCorpus parses every good config and compares the result with its .want.json, the
// encoding/json form of the expected Config (written by -update, checked by eye).
func TestGoodCorpus(t *testing.T) {
	for _, file := range corpusFiles(t, filepath.Join(corpus, "good")) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			got, _ := parseFile(t, file)
			compareWant(t, file, got)
		})
	}
}

// compareWant compares a parsed config with the file's .want.json (written by -update).
func compareWant(t *testing.T, file string, got *config.Config) {
	t.Helper()
	wantFile := expectation(file, ".want.json")
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(wantFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantData, err := os.ReadFile(wantFile)
	if err != nil {
		t.Fatalf("missing expectation (run with -update, then check it): %v", err)
	}
	var want config.Config
	if err := json.Unmarshal(wantData, &want); err != nil {
		t.Fatalf("%s: %v", wantFile, err)
	}
	// Compared as JSON: an IPAM configuration is raw JSON, which the indented file re-spaces.
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(&want)
	if string(gotJSON) != string(wantJSON) {
		pretty, _ := json.MarshalIndent(got, "", "  ")
		t.Errorf("Parse(%s) =\n%s\nwant\n%s", file, pretty, wantData)
	}
}

// TestBadCorpus parses every broken config and checks the exact error text in its .err file.
func TestBadCorpus(t *testing.T) {
	for _, file := range corpusFiles(t, filepath.Join(corpus, "bad")) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(data, "")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with its error: %+v", cfg)
			}
			compareErr(t, file, err)
		})
	}
}

// compareErr compares a parse error with the file's .err (written by -update).
func compareErr(t *testing.T, file string, err error) {
	t.Helper()
	var list config.ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		t.Errorf("error is %T, want a non-empty config.ErrorList", err)
	}
	errFile := expectation(file, ".err")
	if *update {
		if err := os.WriteFile(errFile, []byte(err.Error()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, rerr := os.ReadFile(errFile)
	if rerr != nil {
		t.Fatalf("missing expectation (run with -update, then check it): %v", rerr)
	}
	if got := err.Error(); got != strings.TrimSuffix(string(want), "\n") {
		t.Errorf("error =\n%s\nwant\n%s", got, want)
	}
}

// TestStrictCorpus: configs sriov-dp loads though they cannot mean what they say (keys it ignores,
// values that match nothing) load here too, with warnings (their .want.json), and fail with
// --strict-config, naming every problem (their .err).
func TestStrictCorpus(t *testing.T) {
	for _, file := range corpusFiles(t, filepath.Join(corpus, "strict")) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			got, data := parseFile(t, file)
			if len(got.Warnings) == 0 {
				t.Error("no warning: the file belongs in good/")
			}
			compareWant(t, file, got)
			strict, err := config.ParseWith(data, config.Options{Strict: true})
			if err == nil || strict != nil {
				t.Fatalf("strict Parse = %+v, %v; want an error", strict, err)
			}
			compareErr(t, file, err)
		})
	}
}

// TestYAMLJSONEquivalence converts every good config to the other syntax with sigs.k8s.io/yaml
// and checks both parse to the same Config.
func TestYAMLJSONEquivalence(t *testing.T) {
	for _, file := range corpusFiles(t, filepath.Join(corpus, "good")) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			orig, err := config.Parse(data, "")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			asJSON, err := yaml.YAMLToJSON(data)
			if err != nil {
				t.Fatalf("YAMLToJSON: %v", err)
			}
			asYAML, err := yaml.JSONToYAML(asJSON)
			if err != nil {
				t.Fatalf("JSONToYAML: %v", err)
			}
			for form, doc := range map[string][]byte{"json": asJSON, "yaml": asYAML} {
				got, err := config.Parse(doc, "")
				if err != nil {
					t.Fatalf("Parse(%s form): %v\n%s", form, err, doc)
				}
				// Warnings are compared by TestGoodCorpus: converting drops repeated keys and sorts keys.
				if !reflect.DeepEqual(got.Resources, orig.Resources) {
					t.Errorf("%s form parses to %+v, want %+v", form, got, orig)
				}
			}
		})
	}
}

// TestMarshalRoundTrip checks that Marshal writes a config Parse reads back unchanged, under any
// default prefix (Marshal spells every prefix out).
func TestMarshalRoundTrip(t *testing.T) {
	for _, file := range corpusFiles(t, filepath.Join(corpus, "good")) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			orig, err := config.Load(file, "")
			if err != nil {
				t.Fatal(err)
			}
			orig.Warnings = nil // what was ignored is not written back
			out, err := config.Marshal(orig)
			if err != nil {
				t.Fatal(err)
			}
			again, err := config.Parse(out, "other.example.com")
			if err != nil {
				t.Fatalf("Parse(Marshal()): %v\n%s", err, out)
			}
			if !reflect.DeepEqual(again.Resources, orig.Resources) {
				t.Errorf("round trip gives %+v, want %+v", again, orig)
			}
		})
	}
}
