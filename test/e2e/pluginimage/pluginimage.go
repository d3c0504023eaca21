// Package pluginimage is the netdevice-plugin image's layout, read from deploy/image-layout.json:
// which files sit where, the user, the entrypoint. The Dockerfile builds that image with Docker; the
// end-to-end test builds the same one without Docker (Image) and imports it into its containerd. A
// unit test parses the Dockerfile and fails when it and the layout file disagree, so the two builds
// cannot drift apart.
package pluginimage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/imagebuilder"
)

// LayoutFile is the layout's path relative to the repository root.
const LayoutFile = "deploy/image-layout.json"

// Layout is the image's content and how it starts.
type Layout struct {
	Description string   `json:"description"`
	Base        string   `json:"base"` // the Dockerfile's base image; it adds nothing the binaries read
	User        string   `json:"user"`
	Entrypoint  []string `json:"entrypoint"`
	Files       []File   `json:"files"`
}

// File is one file of the image: a command of ./cmd built static, or a file of a Debian package.
type File struct {
	Path          string `json:"path"`
	Command       string `json:"command,omitempty"`       // ./cmd/<command>
	DebianPackage string `json:"debianPackage,omitempty"` // the package that installs DebianPath
	DebianPath    string `json:"debianPath,omitempty"`
}

// Load reads and checks the layout file.
func Load(file string) (Layout, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Layout{}, fmt.Errorf("image layout: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var l Layout
	if err := dec.Decode(&l); err != nil {
		return Layout{}, fmt.Errorf("image layout %s: %w", file, err)
	}
	if l.User == "" || len(l.Entrypoint) == 0 || len(l.Files) == 0 {
		return Layout{}, fmt.Errorf("image layout %s: want a user, an entrypoint and files", file)
	}
	seen := map[string]bool{}
	for _, f := range l.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || seen[f.Path] {
			return Layout{}, fmt.Errorf("image layout %s: file path %q: want a clean absolute path, once", file, f.Path)
		}
		seen[f.Path] = true
		if (f.Command == "") == (f.DebianPath == "") || (f.DebianPath != "") != (f.DebianPackage != "") {
			return Layout{}, fmt.Errorf("image layout %s: %s: want either a command or a Debian package and its path", file, f.Path)
		}
	}
	if !seen[l.Entrypoint[0]] {
		return Layout{}, fmt.Errorf("image layout %s: entrypoint %s is not a file of the image", file, l.Entrypoint[0])
	}
	return l, nil
}

// Commands returns the commands the image holds, by name, with their paths in the image.
func (l Layout) Commands() map[string]string {
	out := map[string]string{}
	for _, f := range l.Files {
		if f.Command != "" {
			out[f.Command] = f.Path
		}
	}
	return out
}

// Image is the image for imagebuilder: the layout's files, taken from commands (command name ->
// host binary) and from the host's Debian packages, with the layout's user and entrypoint, on an
// empty base instead of the Dockerfile's (distroless/static holds nothing the static binaries read).
func (l Layout) Image(ref string, commands map[string]string) (imagebuilder.Image, error) {
	img := imagebuilder.Image{
		Ref:        ref,
		Entrypoint: l.Entrypoint,
		User:       l.User,
	}
	for _, f := range l.Files {
		e := imagebuilder.Entry{Path: f.Path, Mode: 0o644, Source: f.DebianPath}
		if f.Command != "" {
			e.Mode, e.Source = 0o755, commands[f.Command]
			if e.Source == "" {
				return imagebuilder.Image{}, fmt.Errorf("image %s: no binary given for command %s (%s)", ref, f.Command, f.Path)
			}
		}
		if _, err := os.Stat(e.Source); err != nil {
			if f.DebianPackage != "" {
				return imagebuilder.Image{}, fmt.Errorf("image %s: %s of Debian package %s: %w (apt-get install %s)", ref, f.Path, f.DebianPackage, err, f.DebianPackage)
			}
			return imagebuilder.Image{}, fmt.Errorf("image %s: %s: %w", ref, f.Path, err)
		}
		img.Entries = append(img.Entries, e)
	}
	return img, nil
}

// OverlayDir is the kustomization users apply with their own image, relative to the repository root;
// the end-to-end test installs the plugin with `kubectl apply -k` of it.
const OverlayDir = "deploy/overlays/dev"

// Render builds a kustomization as `kubectl apply -k DIR` would and returns its objects.
func Render(dir string) ([]map[string]any, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []map[string]any
	for _, r := range res.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Images returns every container image the objects name (init containers included), deduplicated.
func Images(objs []map[string]any) []string {
	var out []string
	for _, o := range objs {
		spec, _ := o["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		pod, _ := tmpl["spec"].(map[string]any)
		for _, key := range []string{"initContainers", "containers"} {
			cs, _ := pod[key].([]any)
			for _, c := range cs {
				img, _ := c.(map[string]any)["image"].(string)
				if img != "" && !slices.Contains(out, img) {
					out = append(out, img)
				}
			}
		}
	}
	return out
}
