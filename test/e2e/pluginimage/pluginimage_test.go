package pluginimage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const root = "../../.."

func load(t *testing.T) Layout {
	t.Helper()
	l, err := Load(filepath.Join(root, LayoutFile))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func dockerfile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDockerfileFollowsLayout: the image `make image` builds holds the layout's files at the
// layout's paths, from the same sources, and starts as the layout says. The end-to-end test builds
// its image from the layout, so this is what keeps it the image users run.
func TestDockerfileFollowsLayout(t *testing.T) {
	l := load(t)
	d, err := ParseDockerfile(dockerfile(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := l.Diff(d); len(diff) > 0 {
		t.Errorf("Dockerfile and %s disagree:\n  %s", LayoutFile, strings.Join(diff, "\n  "))
	}
	if len(d.Files) != 3 || d.User != "0:0" || !slices.Equal(d.Entrypoint, []string{"/usr/local/bin/netdevice-plugin"}) {
		t.Errorf("parsed Dockerfile = %+v, want the daemon, the hook and pci.ids, root, the daemon as entrypoint", d)
	}
}

// TestDiffCatchesDrift: each way the Dockerfile could drift from the layout is reported.
func TestDiffCatchesDrift(t *testing.T) {
	l := load(t)
	orig := dockerfile(t)
	for _, tt := range []struct{ name, old, new, want string }{
		{"binary moved", "/usr/local/bin/\n", "/usr/bin/\n", "netdevice-hook"},
		{"entrypoint", `ENTRYPOINT ["/usr/local/bin/netdevice-plugin"]`, `ENTRYPOINT ["/usr/local/bin/netdevice-plugin", "-v=4"]`, "entrypoint"},
		{"user", "USER 0:0", "USER 65532:65532", "user"},
		{"pci.ids moved", "/usr/share/misc/pci.ids /usr/share/misc/pci.ids", "/usr/share/misc/pci.ids /usr/share/hwdata/pci.ids", "pci.ids"},
		{"command not built", "./cmd/netdevice-plugin ./cmd/netdevice-hook", "./cmd/netdevice-plugin", "neither builds it"},
		{"base", "static-debian12:nonroot AS runtime", "static-debian12:debug AS runtime", "base"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(orig, tt.old) {
				t.Fatalf("the Dockerfile has no %q to change", tt.old)
			}
			d, err := ParseDockerfile(strings.Replace(orig, tt.old, tt.new, 1))
			var got string
			if err != nil {
				got = err.Error()
			} else {
				got = strings.Join(l.Diff(d), "\n")
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("drift %q reported as %q, want it to mention %q", tt.name, got, tt.want)
			}
		})
	}
}

// TestDaemonSetUsesLayout: the DaemonSet runs the image's entrypoint (no command of its own) and its
// init container copies the hook from where the image has it.
func TestDaemonSetUsesLayout(t *testing.T) {
	l := load(t)
	spec := daemonSetPod(t)
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if len(c.Command) > 0 {
			t.Errorf("container %s sets command %v: the image's entrypoint %v is the layout's", c.Name, c.Command, l.Entrypoint)
		}
	}
	from := ""
	for _, a := range spec.InitContainers[0].Args {
		if v, ok := strings.CutPrefix(a, "--from="); ok {
			from = v
		}
	}
	if hook := l.Commands()["netdevice-hook"]; from == "" || from != hook {
		t.Errorf("install-hook --from=%s, the image has the hook at %s", from, hook)
	}
}

// TestDaemonSetMountsIPAMPaths: the daemon releases IPAM leases (DEL) inside its container, so what
// the hook's ADD used on the host must be at the same path there: the IPAM plugins
// (--cni-bin-dir), the leases (--ipam-lease-dir), and the plugins' own configuration in
// /etc/cni/net.d (whereabouts' whereabouts.d: its flat file and kubeconfig; without it whereabouts'
// DEL fails with "config file not found" and the pod's address is never given back), host-local's
// default store /var/lib/cni/networks (else its DEL frees nothing in the host's store) and the dhcp
// daemon's socket folder /run/cni.
func TestDaemonSetMountsIPAMPaths(t *testing.T) {
	spec := daemonSetPod(t)
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for path, readOnly := range map[string]bool{"/opt/cni/bin": true, "/etc/cni/net.d": true, "/var/lib/netdevice-plugin/ipam": false,
		"/var/lib/cni/networks": false, "/run/cni": false} {
		found := false
		for _, m := range spec.Containers[0].VolumeMounts {
			if m.MountPath == path && hostPaths[m.Name] == path && m.ReadOnly == readOnly {
				found = true
			}
		}
		if !found {
			t.Errorf("container %s does not mount the host's %s at %s (read-only %v)", spec.Containers[0].Name, path, path, readOnly)
		}
	}
}

func TestLayoutImage(t *testing.T) {
	l := load(t)
	dir := t.TempDir()
	bins := map[string]string{}
	for name := range l.Commands() {
		bins[name] = filepath.Join(dir, name)
		if err := os.WriteFile(bins[name], []byte(name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// pci.ids comes from the host's Debian package; stand in for it when the package is missing
	for i, f := range l.Files {
		if f.DebianPath != "" {
			if _, err := os.Stat(f.DebianPath); err != nil {
				l.Files[i].DebianPath = filepath.Join(dir, "pci.ids")
				if err := os.WriteFile(l.Files[i].DebianPath, []byte("8086  Intel\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	img, err := l.Image("ghcr.io/netdevice-plugin/netdevice-plugin:dev", bins)
	if err != nil {
		t.Fatal(err)
	}
	if img.User != "0:0" || !slices.Equal(img.Entrypoint, l.Entrypoint) || len(img.Entries) != len(l.Files) {
		t.Errorf("image = %+v", img)
	}
	for _, e := range img.Entries {
		want := os.FileMode(0o644)
		if strings.HasPrefix(e.Path, "/usr/local/bin/") {
			want = 0o755
		}
		if e.Mode != want || e.Source == "" {
			t.Errorf("entry %+v: want mode %v and a source", e, want)
		}
	}
	delete(bins, "netdevice-hook")
	if _, err := l.Image("x/y:z", bins); err == nil || !strings.Contains(err.Error(), "netdevice-hook") {
		t.Errorf("Image without the hook binary = %v, want an error naming it", err)
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown field":    `{"user":"0:0","entrypoint":["/a"],"files":[{"path":"/a","command":"a"}],"extra":1}`,
		"no source":        `{"user":"0:0","entrypoint":["/a"],"files":[{"path":"/a"}]}`,
		"two sources":      `{"user":"0:0","entrypoint":["/a"],"files":[{"path":"/a","command":"a","debianPackage":"p","debianPath":"/p"}]}`,
		"relative path":    `{"user":"0:0","entrypoint":["a"],"files":[{"path":"a","command":"a"}]}`,
		"entrypoint gone":  `{"user":"0:0","entrypoint":["/b"],"files":[{"path":"/a","command":"a"}]}`,
		"no user":          `{"entrypoint":["/a"],"files":[{"path":"/a","command":"a"}]}`,
		"package, no path": `{"user":"0:0","entrypoint":["/a"],"files":[{"path":"/a","command":"a"},{"path":"/p","debianPackage":"p"}]}`,
	} {
		f := filepath.Join(dir, "l.json")
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(f); err == nil {
			t.Errorf("%s: Load accepted %s", name, body)
		}
	}
}

// TestOverlayChangesOnlyTheImage: the overlay the end-to-end test installs is the base with another
// image tag on both containers, and nothing else; the released kustomization is the base too.
func TestOverlayChangesOnlyTheImage(t *testing.T) {
	base, err := Render(filepath.Join(root, "deploy", "base"))
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		OverlayDir: "ghcr.io/netdevice-plugin/netdevice-plugin:dev",
		"deploy":   "ghcr.io/netdevice-plugin/netdevice-plugin:v0.1.0",
	} {
		objs, err := Render(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		if imgs := Images(objs); !slices.Equal(imgs, []string{want}) {
			t.Errorf("%s names images %v, want %s", dir, imgs, want)
		}
		// with the image put back, the objects are the base's
		baseImg := Images(base)[0]
		got, _ := yaml.Marshal(objs)
		got = []byte(strings.ReplaceAll(string(got), want, baseImg))
		wantYAML, _ := yaml.Marshal(base)
		if string(got) != string(wantYAML) {
			t.Errorf("%s differs from deploy/base in more than the image:\n%s\nbase:\n%s", dir, got, wantYAML)
		}
	}
}

// daemonSetPod is the pod spec of deploy/base/daemonset.yaml, decoded strictly.
func daemonSetPod(t *testing.T) corev1.PodSpec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "base", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(data, &ds); err != nil {
		t.Fatal(err)
	}
	return ds.Spec.Template.Spec
}
