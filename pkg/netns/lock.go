package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// errLocked reports that another process holds a device's lock (tryLock only).
var errLocked = errors.New("device lock held by another process")

// lockDevice takes the device's exclusive flock, waiting for the holder. The kernel drops a flock
// when its holder dies, so a crashed hook never leaves a device locked. Lock files are never
// deleted: deleting one while another process waits on it would let two holders in.
func lockDevice(dir, key string) (unlock func(), err error) {
	return flockDevice(dir, key, unix.LOCK_EX)
}

// tryLockDevice is lockDevice without waiting: errLocked when the device is busy.
func tryLockDevice(dir, key string) (unlock func(), err error) {
	return flockDevice(dir, key, unix.LOCK_EX|unix.LOCK_NB)
}

func flockDevice(dir, key string, how int) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	path := filepath.Join(dir, key+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil // closing the last descriptor drops the flock
}
