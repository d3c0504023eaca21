package imagebuilder

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readTar returns every regular file and symlink target of a tar, keyed by name, plus the header of
// each entry.
func readTar(t *testing.T, data []byte) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files := map[string][]byte{}
	headers := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if _, dup := headers[h.Name]; dup {
			t.Fatalf("tar entry %s appears twice", h.Name)
		}
		headers[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read tar entry %s: %v", h.Name, err)
			}
			files[h.Name] = b
		}
	}
	return files, headers
}

// blob returns the blob a descriptor points at, after checking its size and digest.
func blob(t *testing.T, files map[string][]byte, d Descriptor) []byte {
	t.Helper()
	b, ok := files[blobPath(d.Digest)]
	if !ok {
		t.Fatalf("descriptor %s (%s): blob missing from layout", d.Digest, d.MediaType)
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest {
		t.Fatalf("blob %s has digest %s", d.Digest, got)
	}
	if int64(len(b)) != d.Size {
		t.Fatalf("blob %s: size %d, descriptor says %d", d.Digest, len(b), d.Size)
	}
	return b
}

func TestWriteLayout(t *testing.T) {
	src := filepath.Join(t.TempDir(), "agnhost")
	if err := os.WriteFile(src, []byte("#!binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	img := Image{
		Ref:        "localhost/netdevice-e2e/agnhost:e2e",
		Entrypoint: []string{"/agnhost"},
		Env:        []string{"PATH=/bin"},
		User:       "0:0",
		Entries: []Entry{
			{Path: "/bin/sh", Linkname: "busybox"},
			{Path: "/agnhost", Source: src, Mode: 0o755},
			{Path: "/etc/hostname", Data: []byte("pod\n"), Mode: 0o644},
			{Path: "/bin/busybox", Data: []byte("bb")},
			{Path: "/tmp", Mode: 0o1777},
		},
	}
	var out bytes.Buffer
	digest, err := WriteLayout(&out, img)
	if err != nil {
		t.Fatalf("WriteLayout: %v", err)
	}
	files, _ := readTar(t, out.Bytes())

	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", got)
	}
	var index Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if index.SchemaVersion != 2 || index.MediaType != MediaTypeIndex || len(index.Manifests) != 1 {
		t.Fatalf("index.json = %+v, want one manifest of schema 2", index)
	}
	md := index.Manifests[0]
	if md.Digest != digest {
		t.Errorf("index names manifest %s, WriteLayout returned %s", md.Digest, digest)
	}
	if md.Annotations[AnnotationContainerdName] != img.Ref || md.Annotations[AnnotationRefName] != "e2e" {
		t.Errorf("manifest annotations = %v", md.Annotations)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Errorf("manifest platform = %+v", md.Platform)
	}

	var man Manifest
	if err := json.Unmarshal(blob(t, files, md), &man); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if man.MediaType != MediaTypeManifest || man.Config.MediaType != MediaTypeConfig || len(man.Layers) != 1 || man.Layers[0].MediaType != MediaTypeLayer {
		t.Fatalf("manifest = %+v", man)
	}
	var cfg Config
	if err := json.Unmarshal(blob(t, files, man.Config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != man.Layers[0].Digest {
		t.Errorf("config diff_ids %v, want the (uncompressed) layer digest %s", cfg.RootFS.DiffIDs, man.Layers[0].Digest)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/agnhost" || strings.Join(cfg.Config.Env, " ") != "PATH=/bin" || cfg.Config.User != "0:0" {
		t.Errorf("config exec = %+v", cfg.Config)
	}

	layerFiles, layerHeaders := readTar(t, blob(t, files, man.Layers[0]))
	wantKinds := []struct {
		name     string
		typ      byte
		mode     int64
		content  string
		linkname string
	}{
		{name: "agnhost", typ: tar.TypeReg, mode: 0o755, content: "#!binary"},
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, content: "bb"},
		{name: "bin/sh", typ: tar.TypeSymlink, mode: 0o777, linkname: "busybox"},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/hostname", typ: tar.TypeReg, mode: 0o644, content: "pod\n"},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o777},
	}
	if len(layerHeaders) != len(wantKinds) {
		t.Errorf("layer has %d entries, want %d", len(layerHeaders), len(wantKinds))
	}
	for _, w := range wantKinds {
		h, ok := layerHeaders[w.name]
		if !ok {
			t.Errorf("layer lacks %s", w.name)
			continue
		}
		if h.Typeflag != w.typ || h.Mode != w.mode || h.Linkname != w.linkname || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("layer entry %s: type %c mode %o link %q uid %d, want type %c mode %o link %q uid 0",
				w.name, h.Typeflag, h.Mode, h.Linkname, h.Uid, w.typ, w.mode, w.linkname)
		}
		if w.typ == tar.TypeReg && string(layerFiles[w.name]) != w.content {
			t.Errorf("layer file %s = %q, want %q", w.name, layerFiles[w.name], w.content)
		}
	}

	// Same input, same bytes: an unchanged image keeps its digest across builds.
	var again bytes.Buffer
	if _, err := WriteLayout(&again, img); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("two builds of the same image differ")
	}
}

func TestWriteLayoutErrors(t *testing.T) {
	tests := []struct {
		name string
		img  Image
		want string
	}{
		{"no tag", Image{Ref: "localhost/pause"}, `image reference "localhost/pause"`},
		{"no repository", Image{Ref: "pause:e2e"}, `image reference "pause:e2e"`},
		{"empty tag", Image{Ref: "localhost:5000/pause:"}, `image reference "localhost:5000/pause:"`},
		{"relative path", Image{Ref: "localhost/p:1", Entries: []Entry{{Path: "bin/sh", Linkname: "x"}}}, `entry path "bin/sh"`},
		{"unclean path", Image{Ref: "localhost/p:1", Entries: []Entry{{Path: "/bin/../sh", Linkname: "x"}}}, `entry path "/bin/../sh"`},
		{"two kinds", Image{Ref: "localhost/p:1", Entries: []Entry{{Path: "/a", Data: []byte("x"), Linkname: "b"}}}, "entry /a: set only one"},
		{"duplicate", Image{Ref: "localhost/p:1", Entries: []Entry{{Path: "/a", Data: []byte("x")}, {Path: "/a", Data: []byte("y")}}}, "entry /a: listed twice"},
		{"missing source", Image{Ref: "localhost/p:1", Entries: []Entry{{Path: "/a", Source: "/nonexistent/agnhost"}}}, "entry /a: open /nonexistent/agnhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := WriteLayout(io.Discard, tt.img)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteLayout error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteLayoutFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pause.tar")
	img := Image{Ref: "localhost/netdevice-e2e/pause:e2e", Entrypoint: []string{"/pause"}, Entries: []Entry{{Path: "/pause", Data: []byte("p")}}}
	digest, err := WriteLayoutFile(file, img)
	if err != nil {
		t.Fatalf("WriteLayoutFile: %v", err)
	}
	var want bytes.Buffer
	wantDigest, _ := WriteLayout(&want, img)
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if digest != wantDigest || !bytes.Equal(got, want.Bytes()) {
		t.Errorf("file content or digest differs from WriteLayout's")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d files, want only pause.tar (no temporary left)", len(entries))
	}

	if _, err := WriteLayoutFile(filepath.Join(dir, "bad.tar"), Image{Ref: "bad"}); err == nil {
		t.Fatal("WriteLayoutFile accepted a reference without tag")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.tar.tmp")); !os.IsNotExist(err) {
		t.Errorf("failed write left its temporary file: %v", err)
	}
}

func BenchmarkWriteLayout(b *testing.B) {
	img := Image{Ref: "localhost/netdevice-e2e/agnhost:e2e", Entries: []Entry{{Path: "/agnhost", Data: bytes.Repeat([]byte{1}, 8<<20)}}}
	for i := 0; i < 60; i++ {
		img.Entries = append(img.Entries, Entry{Path: "/bin/applet" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Linkname: "busybox"})
	}
	b.SetBytes(8 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WriteLayout(io.Discard, img); err != nil {
			b.Fatal(err)
		}
	}
}
