package netns

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/netns/netnstest"
)

// TestLockRefusesPlantedFiles: the lock directory is world-traversable; whatever sits where a lock
// file (or the directory itself) should be is refused, never followed or waited on, and the link
// stays where it is.
func TestLockRefusesPlantedFiles(t *testing.T) {
	netnstest.RequireRoot(t)
	tests := []struct {
		name    string
		plant   func(t *testing.T, lockDir, lockFile, victim string) (dir string)
		wantErr string
	}{
		{
			name: "lock file is a symlink",
			plant: func(t *testing.T, lockDir, lockFile, victim string) string {
				if err := os.Symlink(victim, filepath.Join(lockDir, lockFile)); err != nil {
					t.Fatal(err)
				}
				return lockDir
			},
			wantErr: "is a symlink: refusing to follow it",
		},
		{
			name: "lock file is a FIFO",
			plant: func(t *testing.T, lockDir, lockFile, victim string) string {
				if err := syscall.Mkfifo(filepath.Join(lockDir, lockFile), 0o600); err != nil {
					t.Fatal(err)
				}
				return lockDir
			},
			wantErr: "is not a regular file",
		},
		{
			name: "lock directory is a symlink",
			plant: func(t *testing.T, lockDir, lockFile, victim string) string {
				link := filepath.Join(t.TempDir(), "locks")
				if err := os.Symlink(lockDir, link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			wantErr: "is a symlink or no directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, pod := netnstest.New(t), netnstest.New(t)
			dev, _ := host.Veth(t)
			before := host.State(t, dev)
			victim := filepath.Join(t.TempDir(), "shadow")
			dir := tt.plant(t, t.TempDir(), Target{HostName: dev}.lockKey()+".lock", victim)

			done := make(chan error, 1)
			go func() {
				_, err := Attach(pod.Path, Target{HostName: dev}, Options{HostNS: host.Path, LockDir: dir})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Attach hangs on the planted file")
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Attach = %v, want an error containing %q", err, tt.wantErr)
			}
			if _, err := os.Lstat(victim); !os.IsNotExist(err) {
				t.Errorf("the symlink's target was created: %v", err)
			}
			if got := host.State(t, dev); !got.Equal(before) || !host.Has(dev) {
				t.Errorf("%s changed: %+v, was %+v", dev, got, before)
			}
		})
	}
}
