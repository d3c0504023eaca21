package stack

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/netdevice-plugin/netdevice-plugin/test/e2e/imagebuilder"
)

// BuildImages writes the pod image (agnhost stand-in + busybox) and the sandbox image (pause) as OCI
// layout tars into dir and returns their paths.
func BuildImages(dir string, b Binaries) ([]string, error) {
	applets, err := exec.Command(b.Busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets of %s: %w", b.Busybox, err)
	}
	entries := []imagebuilder.Entry{
		{Path: "/agnhost", Source: b.Agnhost, Mode: 0o755},
		{Path: "/bin/busybox", Source: b.Busybox, Mode: 0o755},
		{Path: "/etc/hostname", Data: []byte("netdevice-e2e\n"), Mode: 0o644},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\n"), Mode: 0o644},
		{Path: "/etc/group", Data: []byte("root:x:0:\n"), Mode: 0o644},
		{Path: "/tmp", Mode: 0o777},
		{Path: "/root", Mode: 0o700},
	}
	for _, a := range strings.Fields(string(applets)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			entries = append(entries, imagebuilder.Entry{Path: "/bin/" + a, Linkname: "busybox"})
		}
	}
	images := []struct {
		file string
		img  imagebuilder.Image
	}{
		{"agnhost.tar", imagebuilder.Image{
			Ref:        PodImage,
			Entrypoint: []string{"/agnhost"},
			Env:        []string{"PATH=/bin"},
			Entries:    entries,
		}},
		{"pause.tar", imagebuilder.Image{
			Ref:        SandboxImage,
			Entrypoint: []string{"/pause"},
			Entries:    []imagebuilder.Entry{{Path: "/pause", Source: b.Pause, Mode: 0o755}},
		}},
	}
	var out []string
	for _, i := range images {
		file := filepath.Join(dir, i.file)
		if _, err := imagebuilder.WriteLayoutFile(file, i.img); err != nil {
			return nil, err
		}
		out = append(out, file)
	}
	return out, nil
}
