package netns

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// errLocked reports that another process holds a device's lock (tryLock only).
var errLocked = errors.New("device lock held by another process")

// deviceLock is a device's exclusive flock in the lock directory, held for a whole hook run. The
// directory also holds the device's record (see record.go); both are reached through the
// directory's descriptor and never through a symlink.
type deviceLock struct {
	dir  *os.File // the lock directory
	file *os.File // <key>.lock, flocked
	key  string
}

// lockDevice takes the device's exclusive flock, waiting for the holder. The kernel drops a flock
// when its holder dies, so a crashed hook never leaves a device locked. Lock files are never
// deleted: deleting one while another process waits on it would let two holders in.
func lockDevice(dir, key string) (*deviceLock, error) {
	return flockDevice(dir, key, unix.LOCK_EX)
}

// tryLockDevice is lockDevice without waiting: errLocked when the device is busy.
func tryLockDevice(dir, key string) (*deviceLock, error) {
	return flockDevice(dir, key, unix.LOCK_EX|unix.LOCK_NB)
}

func flockDevice(dir, key string, how int) (*deviceLock, error) {
	d, err := openLockDir(dir)
	if err != nil {
		return nil, err
	}
	name := key + ".lock"
	f, err := openAt(d, name, unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		_ = d.Close()
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
		_ = d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return &deviceLock{dir: d, file: f, key: key}, nil
}

// unlock drops the flock (closing the last descriptor does).
func (l *deviceLock) unlock() {
	_ = l.file.Close()
	_ = l.dir.Close()
}

// openLockDir creates the lock directory if needed and opens it, refusing a symlink in its place.
func openLockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("lock directory %s is a symlink or no directory: refusing it", Clip(dir))
	}
	if err != nil {
		return nil, fmt.Errorf("lock directory %s: %w", Clip(dir), err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// openAt opens name in the directory d without following a symlink (O_NOFOLLOW) and without
// blocking on a FIFO planted there (O_NONBLOCK), and refuses anything but a regular file.
func openAt(d *os.File, name string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Openat(int(d.Fd()), name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, mode)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symlink: refusing to follow it", name)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file: refusing it", name)
	}
	return os.NewFile(uintptr(fd), name), nil
}
