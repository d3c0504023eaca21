// Package safefile reads the files the plugin is handed (its config, its own state file) without
// trusting them: only regular files, never more than a limit, and never blocking. A FIFO, a device
// such as /dev/zero, a socket or a folder put where a file should be is refused at once with an
// error that says what it is, instead of hanging the daemon or filling its memory.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// ErrTooLarge is wrapped by the error of a file above the limit.
var ErrTooLarge = errors.New("file too large")

// Options tune Read.
type Options struct {
	// NoFollow refuses a symlink as the last path element (the daemon's own state file is never a
	// link). Config files are links (a ConfigMap's key is config.yaml -> ..data/config.yaml), so the
	// default follows them.
	NoFollow bool
}

// Read returns the whole content of the regular file at path, which must hold at most limit bytes.
// The open is non-blocking, so a FIFO with no writer fails at once instead of waiting; a file that
// grows past limit while it is read fails too. Errors name the path once.
func Read(path string, limit int64, o Options) ([]byte, error) {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	if o.NoFollow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(path, flags, 0)
	}
	if err != nil {
		if o.NoFollow && errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s: is a symbolic link, which is not accepted here", path)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if what := kind(st.Mode); what != "" {
		return nil, fmt.Errorf("%s: is %s, not a regular file", path, what)
	}
	if st.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes: %w (at most %d)", path, st.Size, ErrTooLarge, limit)
	}
	// The descriptor is non-blocking, which a regular file ignores; reading to limit+1 catches a file
	// that grew since the stat.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: grew past %d bytes while read: %w", path, limit, ErrTooLarge)
	}
	return data, nil
}

// kind names a file type that is not a regular file, or "" for a regular file.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return ""
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return "not a regular file"
}
