// Package imagebuilder writes single-layer container images as OCI image-layout tar files, so the
// end-to-end tests can import their pod images with `ctr images import` and need no registry.
//
// It is written with archive/tar and crypto/sha256 only: the few OCI descriptor fields it needs are
// declared here rather than adding the image-spec module to go.mod for the test harness alone.
// Output is deterministic (sorted entries, fixed times, root ownership), so an unchanged image keeps
// its digest and a re-import is a no-op for containerd.
package imagebuilder

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Media types and annotations of the OCI image-spec and containerd's importer.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"

	AnnotationRefName        = "org.opencontainers.image.ref.name"
	AnnotationContainerdName = "io.containerd.image.name"
)

// epoch is the modification time of every entry: fixed so that digests do not change between builds.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Entry is one file system entry of the layer. Exactly one of Source, Data or Linkname describes a
// regular file or a symlink; none of them makes a directory.
type Entry struct {
	Path     string      // absolute path inside the image, e.g. "/bin/busybox"
	Mode     os.FileMode // permission bits (0755 when zero for files, 0755 for directories)
	Source   string      // host file whose content becomes the file
	Data     []byte      // literal file content
	Linkname string      // symlink target
}

// Image describes the image to write.
type Image struct {
	Ref        string // full reference with tag: "localhost/netdevice-e2e/agnhost:e2e"
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string // "uid:gid" or a name, "" for the runtime's default
	Entries    []Entry
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform is the OS and architecture of an image.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Index is an OCI image index (the layout's index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Config is the part of an OCI image config the runtime needs.
type Config struct {
	Architecture string        `json:"architecture"`
	OS           string        `json:"os"`
	Created      time.Time     `json:"created"`
	Config       ExecConfig    `json:"config"`
	RootFS       RootFS        `json:"rootfs"`
	History      []HistoryItem `json:"history,omitempty"`
}

// ExecConfig is how a container of the image starts.
type ExecConfig struct {
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env,omitempty"`
	User       string   `json:"User,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

// RootFS lists the uncompressed layer digests.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// HistoryItem records how a layer was made.
type HistoryItem struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// WriteLayout writes img as an OCI image-layout tar to w and returns the manifest digest.
func WriteLayout(w io.Writer, img Image) (string, error) {
	tag, err := tagOf(img.Ref)
	if err != nil {
		return "", err
	}
	layer, err := buildLayer(img.Entries)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img.Ref, err)
	}
	layerDesc := describe(MediaTypeLayer, layer)

	cfg, err := json.Marshal(Config{
		Architecture: "amd64",
		OS:           "linux",
		Created:      epoch,
		Config:       ExecConfig{Entrypoint: img.Entrypoint, Cmd: img.Cmd, Env: img.Env, User: img.User, WorkingDir: "/"},
		RootFS:       RootFS{Type: "layers", DiffIDs: []string{layerDesc.Digest}},
		History:      []HistoryItem{{Created: epoch, CreatedBy: "netdevice-plugin test/e2e/imagebuilder"}},
	})
	if err != nil {
		return "", fmt.Errorf("image %s: encode config: %w", img.Ref, err)
	}
	cfgDesc := describe(MediaTypeConfig, cfg)

	man, err := json.Marshal(Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: cfgDesc, Layers: []Descriptor{layerDesc}})
	if err != nil {
		return "", fmt.Errorf("image %s: encode manifest: %w", img.Ref, err)
	}
	manDesc := describe(MediaTypeManifest, man)
	manDesc.Platform = &Platform{Architecture: "amd64", OS: "linux"}
	manDesc.Annotations = map[string]string{AnnotationContainerdName: img.Ref, AnnotationRefName: tag}

	index, err := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{manDesc}})
	if err != nil {
		return "", fmt.Errorf("image %s: encode index: %w", img.Ref, err)
	}

	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(cfgDesc.Digest), cfg},
		{blobPath(manDesc.Digest), man},
		{blobPath(layerDesc.Digest), layer},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return "", fmt.Errorf("image %s: write layout dir %s: %w", img.Ref, dir, err)
		}
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return "", fmt.Errorf("image %s: write layout file %s: %w", img.Ref, f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("image %s: finish layout tar: %w", img.Ref, err)
	}
	return manDesc.Digest, nil
}

// WriteLayoutFile writes the layout tar to file (atomically: a temporary file renamed into place).
func WriteLayoutFile(file string, img Image) (string, error) {
	tmp := file + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img.Ref, err)
	}
	digest, err := WriteLayout(f, img)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("image %s: close %s: %w", img.Ref, tmp, cerr)
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return digest, nil
}

// tagOf returns the tag of a full reference: what follows the last ':' of its last path element.
func tagOf(ref string) (string, error) {
	last := ref[strings.LastIndex(ref, "/")+1:]
	i := strings.LastIndex(last, ":")
	if !strings.Contains(ref, "/") || i <= 0 || i == len(last)-1 {
		return "", fmt.Errorf("image reference %q: want <registry>/<repository>:<tag>", ref)
	}
	return last[i+1:], nil
}

// buildLayer returns the uncompressed layer tar: every entry, plus the parent directories it needs,
// sorted by path so parents come first and the bytes never depend on the caller's order.
func buildLayer(entries []Entry) ([]byte, error) {
	byPath := map[string]Entry{}
	for _, e := range entries {
		if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Path == "/" {
			return nil, fmt.Errorf("entry path %q: want a clean absolute path below /", e.Path)
		}
		kinds := 0
		for _, set := range []bool{e.Source != "", e.Data != nil, e.Linkname != ""} {
			if set {
				kinds++
			}
		}
		if kinds > 1 {
			return nil, fmt.Errorf("entry %s: set only one of Source, Data, Linkname", e.Path)
		}
		if _, dup := byPath[e.Path]; dup {
			return nil, fmt.Errorf("entry %s: listed twice", e.Path)
		}
		byPath[e.Path] = e
		for dir := path.Dir(e.Path); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = Entry{Path: dir}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := byPath[p]
		name := strings.TrimPrefix(p, "/")
		mode := int64(e.Mode.Perm())
		if mode == 0 {
			mode = 0o755
		}
		var err error
		switch {
		case e.Linkname != "":
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: e.Linkname, Mode: 0o777, ModTime: epoch})
		case e.Source != "":
			var data []byte
			if data, err = os.ReadFile(e.Source); err == nil {
				err = writeFile(tw, name, mode, data)
			}
		case e.Data != nil:
			err = writeFile(tw, name, mode, e.Data)
		default:
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch})
		}
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finish layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func describe(mediaType string, data []byte) Descriptor {
	sum := sha256.Sum256(data)
	return Descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

func blobPath(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }
