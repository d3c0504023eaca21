// Package server serves each pool to the kubelet as an extended resource: one device-plugin gRPC
// server (k8s.io/kubelet deviceplugin v1beta1) per pool on its own unix socket, registered either
// through kubelet.sock or, when the kubelet's plugins_registry folder exists, through the plugin
// watcher. It notices kubelet restarts (fsnotify on the socket folder, a slow poll as fallback)
// and serves and registers again, retrying failures with backoff.
package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/netdevice-plugin/netdevice-plugin/pkg/config"
)

// Defaults of the kubelet's folders and of the manager's timing.
const (
	DefaultDevicePluginDir    = "/var/lib/kubelet/device-plugins"
	DefaultPluginsRegistryDir = "/var/lib/kubelet/plugins_registry"
	KubeletSocketName         = "kubelet.sock"
	DefaultPollInterval       = 5 * time.Second
	DefaultRegisterTimeout    = 5 * time.Second
	maxUnixPath               = 107 // sun_path holds 108 bytes with the NUL
)

// DefaultBackoff spaces registration retries: 100 ms doubling to 30 s, with 10 % jitter so that
// many pools do not retry in lockstep. Steps only needs to outlast the doubling up to Cap.
var DefaultBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 32, Cap: 30 * time.Second}

// Mode is how the servers make themselves known to the kubelet.
type Mode string

// Registration modes.
const (
	ModeKubeletSocket Mode = "kubelet.sock"   // sockets in the device-plugin folder, Register call
	ModePluginWatcher Mode = "plugin watcher" // sockets in plugins_registry, kubelet calls GetInfo
)

// Options configure a Manager. Zero values take the defaults above.
type Options struct {
	DevicePluginDir    string
	PluginsRegistryDir string // plugin-watcher mode when this folder exists; "" never
	PollInterval       time.Duration
	RegisterTimeout    time.Duration
	Backoff            wait.Backoff // registration retries; Duration 0 takes DefaultBackoff
	Observer           Observer
	Recorder           Recorder // hears allocations (the daemon's ledger); nil records nothing
}

// Manager runs one device-plugin server per pool.
type Manager struct {
	opts        Options
	mode        Mode
	sockDir     string
	kubeletSock string
	watcher     *fsnotify.Watcher
	cancel      context.CancelFunc
	ctx         context.Context
	loopDone    chan struct{}

	mu      sync.Mutex
	servers map[string]*server // by resource full name
	closed  bool
}

// server is the running side of one Plugin. Fields below kick are owned by its keeper goroutine,
// and by Remove/Close once that goroutine has ended.
type server struct {
	plugin *Plugin
	path   string
	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	grpc      *grpc.Server
	sock      fileID // the socket we bound; zero = not serving
	kubeletID fileID // the kubelet.sock we registered with; zero = not registered
	everReg   bool
	reserve   bool // serve a fresh socket at the next try (the watcher refused the old one)
}

// NewManager picks the registration mode, watches the socket folder and starts the fallback
// poll. Servers start with Update.
func NewManager(opts Options) (*Manager, error) {
	if opts.DevicePluginDir == "" {
		opts.DevicePluginDir = DefaultDevicePluginDir
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.RegisterTimeout <= 0 {
		opts.RegisterTimeout = DefaultRegisterTimeout
	}
	if opts.Backoff.Duration <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.Observer == nil {
		opts.Observer = NopObserver{}
	}
	m := &Manager{
		opts:        opts,
		mode:        ModeKubeletSocket,
		sockDir:     opts.DevicePluginDir,
		kubeletSock: filepath.Join(opts.DevicePluginDir, KubeletSocketName),
		servers:     map[string]*server{},
		loopDone:    make(chan struct{}),
	}
	if opts.PluginsRegistryDir != "" {
		if fi, err := os.Stat(opts.PluginsRegistryDir); err == nil && fi.IsDir() {
			m.mode = ModePluginWatcher
			m.sockDir = opts.PluginsRegistryDir
		}
	}
	if err := os.MkdirAll(m.sockDir, 0o750); err != nil {
		return nil, fmt.Errorf("create socket folder %s: %w", m.sockDir, err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch socket folder %s: %w", m.sockDir, err)
	}
	if err := w.Add(m.sockDir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watch socket folder %s: %w", m.sockDir, err)
	}
	m.watcher = w
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.loop()
	klog.InfoS("Device-plugin servers ready", "mode", m.mode, "socketDir", m.sockDir)
	return m, nil
}

// Mode is the registration mode in use.
func (m *Manager) Mode() Mode { return m.mode }

// SocketPath is where the pool's server listens.
// A name that would not fit a unix socket path (long prefixes and names are valid resource names)
// becomes "netdevice-<hash>.sock": still unique per pool and stable across restarts.
func (m *Manager) SocketPath(res config.Resource) string {
	path := filepath.Join(m.sockDir, SocketName(res))
	if len(path) <= maxUnixPath {
		return path
	}
	sum := sha256.Sum256([]byte(res.FullName()))
	return filepath.Join(m.sockDir, "netdevice-"+hex.EncodeToString(sum[:8])+".sock")
}

var unsafeSocketChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// SocketName is the pool's socket file name: "netdevice-<prefix>-<name>.sock", with characters
// other than letters, digits, '_', '.', '-' turned into '_'.
func SocketName(res config.Resource) string {
	return unsafeSocketChars.ReplaceAllString("netdevice-"+res.Prefix+"-"+res.Name, "_") + ".sock"
}

// Update hands a pool its devices, starting its server (and registration, in the background) when
// the pool is new. It fails only when the pool cannot be served at all.
func (m *Manager) Update(res config.Resource, devs []Device) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("pool %s: server manager is closed", res.FullName())
	}
	name := res.FullName()
	if s, ok := m.servers[name]; ok {
		s.plugin.Update(res, devs)
		return nil
	}
	path := m.SocketPath(res)
	if len(path) > maxUnixPath {
		return fmt.Errorf("pool %s: socket path %s is longer than %d bytes", name, path, maxUnixPath)
	}
	p := NewPlugin(res, m.opts.Observer, m.opts.Recorder)
	p.endpoint = path
	p.Update(res, devs)
	s := &server{plugin: p, path: path, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if err := m.serve(s); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(m.ctx)
	s.cancel = cancel
	m.servers[name] = s
	klog.InfoS("Pool added", "pool", name, "socket", path, "devices", len(devs))
	go m.keep(ctx, s)
	s.poke()
	return nil
}

// Remove stops the pool's server and removes its socket.
func (m *Manager) Remove(res config.Resource) error {
	m.mu.Lock()
	s, ok := m.servers[res.FullName()]
	delete(m.servers, res.FullName())
	m.mu.Unlock()
	if !ok {
		return nil
	}
	klog.InfoS("Pool removed", "pool", res.FullName(), "socket", s.path)
	return m.stop(s)
}

// Health counts the pool's devices as its server reports them to the kubelet now: all of them,
// and the healthy ones (a gone software link inside its pod is healthy, see Plugin.Update).
// ok is false when the pool is not served.
func (m *Manager) Health(res config.Resource) (total, healthy int, ok bool) {
	m.mu.Lock()
	s, ok := m.servers[res.FullName()]
	m.mu.Unlock()
	if !ok {
		return 0, 0, false
	}
	total, healthy = s.plugin.Health()
	return total, healthy, true
}

// Resources lists the pools being served.
func (m *Manager) Resources() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.servers))
	for name := range m.servers {
		out = append(out, name)
	}
	return out
}

// Close stops every server and removes their sockets.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	servers := m.servers
	m.servers = map[string]*server{}
	m.mu.Unlock()
	var errs []error
	for _, s := range servers {
		errs = append(errs, m.stop(s))
	}
	m.cancel()
	errs = append(errs, m.watcher.Close())
	<-m.loopDone
	klog.InfoS("Device-plugin servers stopped", "pools", len(servers))
	return errors.Join(errs...)
}

func (m *Manager) stop(s *server) error {
	s.cancel()
	<-s.done
	if s.grpc != nil {
		s.grpc.Stop()
	}
	return removeOwnSocket(s.path, s.sock)
}

// removeOwnSocket removes path if it is still the socket we bound (id), so that a socket another
// process put there survives.
func removeOwnSocket(path string, id fileID) error {
	if id == (fileID{}) {
		return nil
	}
	if cur, err := identify(path); err != nil || cur != id {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove socket %s: %w", path, err)
	}
	return nil
}

func (s *server) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (m *Manager) pokeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.servers {
		s.poke()
	}
}

// loop turns folder events and the poll into kicks: kubelet.sock created (a kubelet started)
// kicks every server, one of our sockets removed kicks its server, a watcher error (events lost)
// kicks every server. It reads Errors as well as Events: fsnotify blocks on an unread error.
func (m *Manager) loop() {
	defer close(m.loopDone)
	tick := time.NewTicker(m.opts.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
			m.pokeAll()
		case ev, ok := <-m.watcher.Events:
			if !ok {
				return
			}
			m.onEvent(ev)
		case err, ok := <-m.watcher.Errors:
			if !ok {
				return
			}
			// Events may be lost (an overflow drops them): check every pool now rather than at
			// the next poll.
			klog.ErrorS(err, "Watching the socket folder failed; checking every pool", "dir", m.sockDir)
			m.pokeAll()
		}
	}
}

func (m *Manager) onEvent(ev fsnotify.Event) {
	klog.V(5).InfoS("Socket folder event", "event", ev.String())
	if ev.Name == m.kubeletSock && ev.Has(fsnotify.Create) && m.mode == ModeKubeletSocket {
		klog.InfoS("Kubelet socket created: the kubelet (re)started; registering again", "socket", ev.Name)
		m.pokeAll()
		return
	}
	if !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.servers {
		if s.path == ev.Name {
			klog.InfoS("Our socket was removed (kubelet restart?); serving it again", "pool", s.plugin.name, "socket", ev.Name)
			s.poke()
		}
	}
}

// keep serves and registers one pool until its context ends: on every kick it checks the socket
// and the registration and repairs what is missing; failures retry with backoff.
func (m *Manager) keep(ctx context.Context, s *server) {
	defer close(s.done)
	b := m.opts.Backoff // a copy: Step grows it, a success starts over
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-retry:
		case msg := <-s.plugin.regFailed:
			s.reserve = true
			d := b.Step()
			klog.InfoS("Serving a fresh socket after the refusal", "pool", s.plugin.name, "reason", msg, "retryIn", d)
			retry = time.After(d)
			continue
		}
		retry = nil
		if err := m.ensure(ctx, s); err != nil {
			if ctx.Err() != nil {
				return
			}
			d := b.Step()
			klog.ErrorS(err, "Device-plugin server not registered; retrying", "pool", s.plugin.name, "retryIn", d)
			m.opts.Observer.Registration(s.plugin.name, err)
			retry = time.After(d)
			continue
		}
		b = m.opts.Backoff
	}
}

// ensure serves the socket if it is gone or replaced, and registers with the kubelet behind the
// current kubelet.sock if not yet done.
func (m *Manager) ensure(ctx context.Context, s *server) error {
	if id, err := identify(s.path); s.reserve || err != nil || id != s.sock {
		if err := m.serve(s); err != nil {
			return err
		}
		s.reserve = false
	}
	if m.mode == ModePluginWatcher {
		return nil
	}
	kid, err := identify(m.kubeletSock)
	if err != nil {
		return fmt.Errorf("pool %s: kubelet socket %s: %w", s.plugin.name, m.kubeletSock, err)
	}
	if kid == s.kubeletID {
		return nil
	}
	if err := m.register(ctx, s); err != nil {
		return err
	}
	s.kubeletID = kid
	if s.everReg {
		klog.InfoS("Re-registered with the kubelet", "pool", s.plugin.name, "socket", s.path)
	} else {
		klog.InfoS("Registered with the kubelet", "pool", s.plugin.name, "socket", s.path)
	}
	s.everReg = true
	m.opts.Observer.Registration(s.plugin.name, nil)
	return nil
}

// serve (re)binds the pool's socket and starts a gRPC server on it. Whatever sits at the path (a
// socket of a previous run, or ours that the kubelet replaced) is removed first.
func (m *Manager) serve(s *server) error {
	if s.grpc != nil {
		s.grpc.Stop()
		s.grpc = nil
	}
	s.sock, s.kubeletID = fileID{}, fileID{}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pool %s: remove stale socket %s: %w", s.plugin.name, s.path, err)
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("pool %s: listen on %s: %w", s.plugin.name, s.path, err)
	}
	lis.SetUnlinkOnClose(false) // we remove it ourselves, and only if it is still ours
	id, err := identify(s.path)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("pool %s: stat socket %s: %w", s.plugin.name, s.path, err)
	}
	g := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(g, s.plugin)
	if m.mode == ModePluginWatcher {
		registerapi.RegisterRegistrationServer(g, s.plugin)
	}
	go func() {
		if err := g.Serve(lis); err != nil {
			klog.ErrorS(err, "Device-plugin server stopped", "pool", s.plugin.name, "socket", s.path)
		}
	}()
	s.grpc, s.sock = g, id
	klog.V(2).InfoS("Serving device plugin", "pool", s.plugin.name, "socket", s.path)
	return nil
}

// register calls the kubelet's Register, which dials our socket before it answers.
func (m *Manager) register(ctx context.Context, s *server) error {
	conn, err := grpc.NewClient("unix://"+m.kubeletSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("pool %s: connect to kubelet socket %s: %w", s.plugin.name, m.kubeletSock, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, m.opts.RegisterTimeout)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(s.path),
		ResourceName: s.plugin.name,
		Options:      &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true},
	})
	if err != nil {
		return fmt.Errorf("pool %s: register socket %s with kubelet at %s: %w", s.plugin.name, filepath.Base(s.path), m.kubeletSock, err)
	}
	return nil
}

// fileID tells one file from another that later takes its name. The inode number alone does not:
// ext4 hands a freed number to the next file at once, so a new kubelet.sock often has the old
// one's. The change time is set when the file is created, so a new file is a new (ino, ctime).
// A metadata change (chmod, relabel) moves ctime too: that costs one needless Register or
// re-serve, never a missed one.
type fileID struct {
	dev, ino uint64
	ctime    syscall.Timespec
}

func identify(path string) (fileID, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no inode", path)
	}
	return fileID{dev: st.Dev, ino: st.Ino, ctime: st.Ctim}, nil
}
