package safefile_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/safefile"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	if err := os.WriteFile(file, []byte(`{"resourceList":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	tests := []struct {
		name  string
		path  string
		limit int64
		opts  safefile.Options
		want  string // content, when err is ""
		err   string
	}{
		{name: "regular file", path: file, limit: 1 << 10, want: `{"resourceList":[]}`},
		{name: "exactly at the limit", path: file, limit: 19, want: `{"resourceList":[]}`},
		{name: "one byte over the limit", path: file, limit: 18, err: file + ": 19 bytes: file too large (at most 18)"},
		{name: "symlink followed", path: link, limit: 1 << 10, want: `{"resourceList":[]}`},
		{name: "symlink refused", path: link, limit: 1 << 10, opts: safefile.Options{NoFollow: true}, err: link + ": is a symbolic link"},
		{name: "FIFO without a writer does not block", path: fifo, limit: 1 << 10, err: fifo + ": is a FIFO, not a regular file"},
		{name: "endless device", path: "/dev/zero", limit: 1 << 10, err: "/dev/zero: is a character device, not a regular file"},
		{name: "directory", path: dir, limit: 1 << 10, err: dir + ": is a directory, not a regular file"},
		{name: "socket", path: sock, limit: 1 << 10, err: "open " + sock + ": no such device or address"},
		{name: "missing", path: filepath.Join(dir, "nope"), limit: 1 << 10, err: "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var (
				got  []byte
				rerr error
			)
			go func() {
				defer close(done)
				got, rerr = safefile.Read(tt.path, tt.limit, tt.opts)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Read(%s) blocked", tt.path)
			}
			if tt.err != "" {
				if rerr == nil || !strings.Contains(rerr.Error(), tt.err) {
					t.Fatalf("Read = %q, %v; want error %q", got, rerr, tt.err)
				}
				return
			}
			if rerr != nil || string(got) != tt.want {
				t.Fatalf("Read = %q, %v; want %q", got, rerr, tt.want)
			}
		})
	}
}

func TestReadTooLargeIsErrTooLarge(t *testing.T) {
	file := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(file, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := safefile.Read(file, 4095, safefile.Options{}); !errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("error %v does not wrap ErrTooLarge", err)
	}
}
