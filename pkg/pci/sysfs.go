package pci

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysDir is an open sysfs folder whose attributes are read relative to it (openat, readlinkat).
// On the 1,032-function benchmark tree this took about half the time of os.Open on full paths: the
// kernel does not walk the whole path (and the bus/pci/devices symlink) for every file, and Go's
// poller does not try to register every sysfs file with epoll.
type sysDir struct {
	fd     int
	parent *sysDir // nil for a folder opened by path
	name   string  // path relative to parent, or the whole path; for error messages only
	buf    *scratch
}

// scratch is the reusable buffer space of one Scan (of each of its goroutines).
type scratch struct {
	attr   [256]byte // the attributes read here are under 100 bytes; a longer one is an error
	link   [unix.PathMax]byte
	path   [unix.PathMax]byte // a relative path, NUL-terminated, for the system calls
	dirent [8192]byte
}

// cpath is name NUL-terminated in the scratch space: what openat and readlinkat take, without the
// allocation golang.org/x/sys/unix makes for every path (a dozen per function, every scan).
func (b *scratch) cpath(name string) (*byte, error) {
	if len(name) >= len(b.path) || strings.IndexByte(name, 0) >= 0 {
		return nil, unix.EINVAL
	}
	n := copy(b.path[:], name)
	b.path[n] = 0
	return &b.path[0], nil
}

// openAt is openat(2) of a path relative to dirfd, retried on EINTR.
func (b *scratch) openAt(dirfd int, name string, flags int) (int, error) {
	p, err := b.cpath(name)
	if err != nil {
		return -1, err
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags|unix.O_LARGEFILE), 0, 0, 0)
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return -1, e
	}
}

// readlinkAt is readlinkat(2) into the scratch link buffer.
func (b *scratch) readlinkAt(dirfd int, name string) ([]byte, error) {
	p, err := b.cpath(name)
	if err != nil {
		return nil, err
	}
	r, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&b.link[0])), uintptr(len(b.link)), 0, 0)
	if e != 0 {
		return nil, e
	}
	return b.link[:r], nil
}

func openSysDir(path string, buf *scratch) (sysDir, error) {
	fd, err := openRetry(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return sysDir{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return sysDir{fd: fd, name: path, buf: buf}, nil
}

// sub opens the folder rel below d; d must stay in place while the result is used.
func (d *sysDir) sub(rel string) (sysDir, error) {
	fd, err := d.buf.openAt(d.fd, rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return sysDir{}, &fs.PathError{Op: "open", Path: d.join(rel), Err: err}
	}
	return sysDir{fd: fd, parent: d, name: rel, buf: d.buf}, nil
}

func (d *sysDir) close() { unix.Close(d.fd) }

// join is the path of name inside d, built only for error messages.
func (d *sysDir) join(name string) string {
	if d.parent == nil {
		return d.name + "/" + name
	}
	return d.parent.join(d.name + "/" + name)
}

// names lists the folder once, unsorted, without "." and "..".
func (d *sysDir) names() ([]string, error) {
	return d.keptNames(func(name []byte) (string, bool) {
		if string(name) == "." || string(name) == ".." {
			return "", false
		}
		return string(name), true
	})
}

// keptNames lists the folder once, unsorted, keeping only the names keep accepts, as keep returns
// them: most entries of a PCI function's folder (config, resource, power, ...) are never looked at,
// and are never made strings.
func (d *sysDir) keptNames(keep func(name []byte) (string, bool)) ([]string, error) {
	names := make([]string, 0, 8)
	for {
		n, err := unix.ReadDirent(d.fd, d.buf.dirent[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "readdirent", Path: d.join(""), Err: err}
		}
		if n <= 0 {
			return names, nil
		}
		// struct linux_dirent64: ino (8), off (8), reclen (2), type (1), NUL-terminated name.
		for b := d.buf.dirent[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s, ok := keep(name); ok {
				names = append(names, s)
			}
			b = b[reclen:]
		}
	}
}

// attr reads an attribute file without its trailing newline.
func (d *sysDir) attr(name string) (string, error) {
	b, err := d.attrBytes(name)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// attrBytes is attr in d's buffer, valid until the next read through d.
func (d *sysDir) attrBytes(name string) ([]byte, error) {
	fd, err := d.buf.openAt(d.fd, name, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.join(name), Err: err}
	}
	defer unix.Close(fd)
	n, err := readRetry(fd, d.buf.attr[:])
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: d.join(name), Err: err}
	}
	return bytes.TrimSpace(d.buf.attr[:n]), nil
}

// interned reads an attribute whose few values repeat across functions (a driver's name, "up",
// "0x020000"): one string per value for the whole node.
func (d *sysDir) interned(name string) (string, error) {
	b, err := d.attrBytes(name)
	if err != nil {
		return "", err
	}
	return intern(b), nil
}

// integer reads a decimal attribute.
func (d *sysDir) integer(name string) (int, error) {
	b, err := d.attrBytes(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(b)) // no allocation: the conversion does not escape
	if err != nil {
		return 0, &fs.PathError{Op: "parse", Path: d.join(name), Err: err}
	}
	return n, nil
}

// Values that repeat across a node's functions and netdevs, shared: a few dozen strings in all.
var (
	internMu sync.Mutex
	interns  = map[string]string{}
)

// maxInterned bounds the table: past it (garbage in sysfs?) values are plain strings.
const maxInterned = 1024

// intern returns the one string of b's value.
func intern(b []byte) string {
	internMu.Lock()
	defer internMu.Unlock()
	if s, ok := interns[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(interns) < maxInterned {
		interns[s] = s
	}
	return s
}

// linkBase is the last element of a symlink's target: the driver of `driver`, the group of
// `iommu_group`, the address of `physfn` and `virtfnN`.
func (d *sysDir) linkBase(name string) (string, error) {
	target, err := d.buf.readlinkAt(d.fd, name)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: d.join(name), Err: err}
	}
	return filepath.Base(string(target)), nil
}

// linkBaseInterned is linkBase for links whose targets repeat across functions (driver).
func (d *sysDir) linkBaseInterned(name string) (string, error) {
	target, err := d.buf.readlinkAt(d.fd, name)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: d.join(name), Err: err}
	}
	b := bytes.TrimRight(target, "/")
	if i := bytes.LastIndexByte(b, '/'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) == 0 {
		return filepath.Base(string(target)), nil
	}
	return intern(b), nil
}

// isDir reports whether name is a folder itself, not a symlink to one.
func (d *sysDir) isDir(name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// resolves reports whether name, followed through symlinks, exists.
func (d *sysDir) resolves(name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, 0); err != nil {
		return &fs.PathError{Op: "stat", Path: d.join(name), Err: err}
	}
	return nil
}

func openRetry(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// readRetry reads a sysfs attribute, which the kernel hands over whole in the first read: one read
// call, not a read-until-EOF loop that costs a second call per file.
func readRetry(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err == nil && n == len(buf) {
			return n, unix.EFBIG
		}
		return n, err
	}
}

// readAttr reads one attribute file by path.
func readAttr(path string) (string, error) {
	d, err := openSysDir(filepath.Dir(path), &scratch{})
	if err != nil {
		return "", err
	}
	defer d.close()
	return d.attr(filepath.Base(path))
}

func notExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// hexID turns "0x8086" into "8086".
func hexID(s string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"))
}

// classFromModalias returns "0x020000" from the "bc02sc00i00" tail of a PCI modalias.
func classFromModalias(m string) (string, bool) {
	i := strings.LastIndex(m, "bc")
	if i < 0 || len(m) < i+11 || m[i+4:i+6] != "sc" || m[i+8] != 'i' {
		return "", false
	}
	return "0x" + strings.ToLower(m[i+2:i+4]+m[i+6:i+8]+m[i+9:i+11]), true
}
