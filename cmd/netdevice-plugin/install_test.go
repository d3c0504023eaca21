package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src-hook")
	if err := os.WriteFile(src, []byte("new hook"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "host", "bin", "netdevice-hook")

	// An old hook that a running process holds open keeps its content after the replacement.
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old hook"), 0o755); err != nil {
		t.Fatal(err)
	}
	running, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()

	var stderr bytes.Buffer
	if rc := runInstallHook([]string{"--from", src, "--to", dst}, &stderr); rc != 0 {
		t.Fatalf("install-hook exit %d: %s", rc, stderr.String())
	}
	got, err := os.ReadFile(dst)
	if err != nil || string(got) != "new hook" {
		t.Fatalf("installed content %q, %v; want %q", got, err, "new hook")
	}
	st, _ := os.Stat(dst)
	if st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", st.Mode().Perm())
	}
	old := make([]byte, 16)
	n, _ := running.ReadAt(old, 0)
	if string(old[:n]) != "old hook" {
		t.Errorf("running hook saw %q, want its old content", old[:n])
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("files left beside the hook: %v", entries)
	}
}

func TestInstallFileErrors(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "netdevice-hook")
	if err := os.WriteFile(dst, []byte("old hook"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, want string
	}{
		{"missing source", filepath.Join(dir, "absent"), dst, "absent"},
		{"relative destination", dst, "bin/netdevice-hook", "must be an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if rc := runInstallHook([]string{"--from", tt.from, "--to", tt.to}, &stderr); rc != 1 {
				t.Fatalf("exit %d, want 1", rc)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not name %q", stderr.String(), tt.want)
			}
			if got, _ := os.ReadFile(dst); string(got) != "old hook" {
				t.Errorf("destination changed to %q", got)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("files left behind: %v", entries)
			}
		})
	}
}
