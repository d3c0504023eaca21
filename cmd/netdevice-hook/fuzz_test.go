package main

import (
	"bytes"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// FuzzReadState feeds the hook's stdin reader anything a runtime (or anyone) might write: it never
// panics, accepts only a state with a bundle, and its errors stay short.
func FuzzReadState(f *testing.F) {
	for _, seed := range []string{
		`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":4242,"bundle":"/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1"}`,
		`{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b","annotations":{"a":"b"}}`,
		`{"id":"c1","pid":1}`, `{not json`, `null`, `[]`, `{"bundle":""}`, `{"bundle":7}`, `{"pid":-1,"bundle":"/b"}`,
		`{"bundle":"/b"} trailing`, "\xff\xfe", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := readState(bytes.NewReader(data))
		if err != nil {
			if st != nil {
				t.Fatalf("readState failed (%v) but returned a state", err)
			}
			if n := len(errorLine(err)); n > maxLine {
				t.Fatalf("error line of %d bytes", n)
			}
			return
		}
		if st.Bundle == "" {
			t.Fatalf("readState accepted a state without bundle: %+v", st)
		}
	})
}

// FuzzNamespaceFromConfig feeds the config.json reader any content and OCI state: it never panics,
// answers an absolute path or errNoNamespace, and its errors stay short.
func FuzzNamespaceFromConfig(f *testing.F) {
	for _, seed := range []struct {
		config string
		pid    int
	}{
		{`{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/4242/ns/net"}]}}`, 0},
		{`{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"network"}]}}`, 4242},
		{`{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"network"}]}}`, 0},
		{`{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"network","path":"run/netns/x"}]}}`, 1},
		{`{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"mount"}]}}`, 1},
		{`{"ociVersion":"1.2.0"}`, 1},
		{`{"linux":null}`, 1},
		{`{"linux":{"namespaces":[{"type":"network","path":7}]}}`, 1},
		{`{"linux":{"namespaces":[null]}}`, 1},
		{`[`, 1},
	} {
		f.Add([]byte(seed.config), seed.pid)
	}
	f.Fuzz(func(t *testing.T, config []byte, pid int) {
		st := &specs.State{ID: "c1", Pid: pid, Bundle: "/b"}
		path, err := namespaceFromConfig(st, config)
		if err != nil {
			if path != "" {
				t.Fatalf("namespaceFromConfig failed (%v) but returned %q", err, path)
			}
			if n := len(errorLine(err)); n > 1024 {
				t.Fatalf("error line of %d bytes: %.200q", n, errorLine(err))
			}
			return
		}
		if !filepath.IsAbs(path) {
			t.Fatalf("namespaceFromConfig returned %q, not absolute", path)
		}
		if pid <= 0 && !bytes.Contains(config, []byte(`"path"`)) {
			t.Fatalf("namespaceFromConfig answered %q with neither a pid nor a path in config.json", path)
		}
	})
}
