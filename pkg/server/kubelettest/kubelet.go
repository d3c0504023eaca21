// Package kubelettest is an in-process stand-in for the kubelet's device manager, for tests of
// device plugins over real unix sockets and gRPC. Like the real kubelet it serves the Registration
// service on <dir>/kubelet.sock, and on Register dials the plugin's socket, asks for its options
// and keeps a ListAndWatch stream open; in plugin-watcher mode it watches a plugins_registry folder,
// calls GetInfo and NotifyRegistrationStatus. Restart behaves as a kubelet restart does: every
// socket in the device-plugin folder is deleted and a new kubelet.sock appears.
package kubelettest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Kubelet is the stand-in. Its zero value is not usable; call Start.
type Kubelet struct {
	pluginapi.UnimplementedRegistrationServer

	dir string

	// Reject, when set, is asked on every registration; an error refuses it (both modes).
	Reject func(resource string) error
	// Logf, when set, hears what the real kubelet would log: errors of the registry watcher.
	// Set it before WatchRegistry.
	Logf func(format string, args ...any)

	mu       sync.Mutex
	srv      *grpc.Server
	plugins  map[string]*Plugin // latest registration per resource
	attempts map[string]int     // registrations tried per resource, refused ones included
	changed  chan struct{}      // closed and replaced on every registration
	watchers []*fsnotify.Watcher
	closed   bool
}

// Plugin is one registered device plugin as the kubelet sees it.
type Plugin struct {
	Resource   string
	Endpoint   string // socket path the kubelet dialled
	Mode       string // "kubelet.sock" or "plugin watcher"
	Registered time.Time
	Options    *pluginapi.DevicePluginOptions
	Client     pluginapi.DevicePluginClient

	conn   *grpc.ClientConn
	cancel context.CancelFunc

	mu        sync.Mutex
	devices   []*pluginapi.Device
	updates   int
	streamErr error
	changed   chan struct{}
}

// Start serves the Registration service on <dir>/kubelet.sock.
func Start(dir string) (*Kubelet, error) {
	k := &Kubelet{dir: dir, plugins: map[string]*Plugin{}, attempts: map[string]int{}, changed: make(chan struct{})}
	if err := k.listen(); err != nil {
		return nil, err
	}
	return k, nil
}

// SocketPath is the kubelet.sock path.
func (k *Kubelet) SocketPath() string { return filepath.Join(k.dir, "kubelet.sock") }

func (k *Kubelet) listen() error {
	lis, err := net.Listen("unix", k.SocketPath())
	if err != nil {
		return fmt.Errorf("kubelettest: listen on %s: %w", k.SocketPath(), err)
	}
	srv := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(srv, k)
	go func() { _ = srv.Serve(lis) }()
	k.mu.Lock()
	k.srv = srv
	k.mu.Unlock()
	return nil
}

// Register is the kubelet's Registration service: it connects to the plugin before answering.
func (k *Kubelet) Register(ctx context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	if req.Version != pluginapi.Version {
		return nil, fmt.Errorf("kubelettest: unsupported device-plugin API version %q", req.Version)
	}
	if req.ResourceName == "" || !strings.Contains(req.ResourceName, "/") {
		return nil, fmt.Errorf("kubelettest: invalid resource name %q", req.ResourceName)
	}
	if err := k.connect(ctx, req.ResourceName, filepath.Join(k.dir, req.Endpoint), "kubelet.sock"); err != nil {
		return nil, err
	}
	return &pluginapi.Empty{}, nil
}

// connect dials a plugin, asks its options and starts its ListAndWatch stream.
func (k *Kubelet) connect(ctx context.Context, resource, endpoint, mode string) error {
	k.mu.Lock()
	k.attempts[resource]++
	reject := k.Reject
	k.mu.Unlock()
	if reject != nil {
		if err := reject(resource); err != nil {
			return err
		}
	}
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("kubelettest: dial plugin %s at %s: %w", resource, endpoint, err)
	}
	client := pluginapi.NewDevicePluginClient(conn)
	octx, cancelOpts := context.WithTimeout(ctx, 5*time.Second)
	defer cancelOpts()
	opts, err := client.GetDevicePluginOptions(octx, &pluginapi.Empty{})
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("kubelettest: GetDevicePluginOptions of %s at %s: %w", resource, endpoint, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := client.ListAndWatch(sctx, &pluginapi.Empty{})
	if err != nil {
		cancel()
		_ = conn.Close()
		return fmt.Errorf("kubelettest: ListAndWatch of %s at %s: %w", resource, endpoint, err)
	}
	p := &Plugin{Resource: resource, Endpoint: endpoint, Mode: mode, Registered: time.Now(), Options: opts,
		Client: client, conn: conn, cancel: cancel, changed: make(chan struct{})}
	go p.watch(stream)
	k.mu.Lock()
	old := k.plugins[resource]
	k.plugins[resource] = p
	close(k.changed)
	k.changed = make(chan struct{})
	k.mu.Unlock()
	if old != nil {
		old.close()
	}
	return nil
}

func (p *Plugin) watch(stream pluginapi.DevicePlugin_ListAndWatchClient) {
	for {
		resp, err := stream.Recv()
		p.mu.Lock()
		if err != nil {
			p.streamErr = err
		} else {
			p.devices = resp.Devices
			p.updates++
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *Plugin) close() {
	p.cancel()
	_ = p.conn.Close()
}

// Devices returns the latest ListAndWatch list and how many lists arrived so far.
func (p *Plugin) Devices() ([]*pluginapi.Device, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.devices, p.updates
}

// WaitDevices waits until the latest ListAndWatch list satisfies ok, and returns it.
func (p *Plugin) WaitDevices(ctx context.Context, ok func([]*pluginapi.Device) bool) ([]*pluginapi.Device, error) {
	for {
		p.mu.Lock()
		devs, n, err, ch := p.devices, p.updates, p.streamErr, p.changed
		p.mu.Unlock()
		if n > 0 && ok(devs) {
			return devs, nil
		}
		if err != nil {
			return devs, fmt.Errorf("kubelettest: ListAndWatch of %s ended: %w", p.Resource, err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return devs, fmt.Errorf("kubelettest: waiting for devices of %s (last list %s): %w", p.Resource, Describe(devs), ctx.Err())
		}
	}
}

// Describe formats a device list as "id:Healthy[numa] ...", for test messages.
func Describe(devs []*pluginapi.Device) string {
	parts := make([]string, 0, len(devs))
	for _, d := range devs {
		s := d.ID + ":" + d.Health
		if d.Topology != nil {
			for _, n := range d.Topology.Nodes {
				s += fmt.Sprintf("[numa%d]", n.ID)
			}
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Plugin returns the latest registration of resource, or nil.
func (k *Kubelet) Plugin(resource string) *Plugin {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.plugins[resource]
}

// Resources lists the registered resources, sorted.
func (k *Kubelet) Resources() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]string, 0, len(k.plugins))
	for r := range k.plugins {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Attempts is how many registrations of resource were tried, refused ones included.
func (k *Kubelet) Attempts(resource string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.attempts[resource]
}

// WaitPlugin waits for a registration of resource made after since, and returns it.
func (k *Kubelet) WaitPlugin(ctx context.Context, resource string, since time.Time) (*Plugin, error) {
	for {
		k.mu.Lock()
		p, ch := k.plugins[resource], k.changed
		k.mu.Unlock()
		if p != nil && p.Registered.After(since) {
			return p, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("kubelettest: waiting for %s to register: %w", resource, ctx.Err())
		}
	}
}

// Restart acts out a kubelet restart: the registration server stops, plugin connections drop,
// every socket in the device-plugin folder is deleted, and a new kubelet.sock is served. Plugins
// must notice and register again.
func (k *Kubelet) Restart() error {
	k.stop()
	if err := k.removeSockets(); err != nil {
		return err
	}
	return k.listen()
}

// ReplaceSocket acts out a kubelet that comes back without clearing its folder: the registration
// server stops, plugin connections drop and a new kubelet.sock is served, while the plugins'
// sockets stay. Only the new kubelet.sock tells plugins to register again.
func (k *Kubelet) ReplaceSocket() error {
	k.stop()
	if err := os.Remove(k.SocketPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kubelettest: remove %s: %w", k.SocketPath(), err)
	}
	return k.listen()
}

// stop ends the registration server and every plugin connection.
func (k *Kubelet) stop() {
	k.mu.Lock()
	srv := k.srv
	plugins := k.plugins
	k.plugins = map[string]*Plugin{}
	k.mu.Unlock()
	srv.Stop()
	for _, p := range plugins {
		p.close()
	}
}

// removeSockets deletes every socket in the device-plugin folder, as a starting kubelet does.
func (k *Kubelet) removeSockets() error {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("kubelettest: read %s: %w", k.dir, err)
	}
	for _, e := range entries {
		if e.Type()&os.ModeSocket != 0 {
			if err := os.Remove(filepath.Join(k.dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("kubelettest: remove %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// WatchRegistry adds plugin-watcher mode: sockets appearing in dir (and those already there) are
// asked GetInfo; device plugins are connected and told NotifyRegistrationStatus.
func (k *Kubelet) WatchRegistry(dir string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("kubelettest: watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return fmt.Errorf("kubelettest: watch %s: %w", dir, err)
	}
	k.mu.Lock()
	k.watchers = append(k.watchers, w)
	logf := k.Logf
	k.mu.Unlock()
	if logf == nil {
		logf = func(string, ...any) {}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("kubelettest: read %s: %w", dir, err)
	}
	for _, e := range entries {
		k.registerFromWatcher(filepath.Join(dir, e.Name()))
	}
	// Errors must be read too: fsnotify blocks on an unread error (an overflow, say) and then
	// delivers no more events. Like the kubelet, log it and go on.
	go func() {
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Create) {
					k.registerFromWatcher(ev.Name)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				logf("kubelettest: watching %s: %v", dir, err)
			}
		}
	}()
	return nil
}

// registerFromWatcher does what the kubelet's plugin watcher and device-manager handler do with a
// new socket. Errors are reported to the plugin, as the kubelet does.
func (k *Kubelet) registerFromWatcher(path string) {
	if strings.HasPrefix(filepath.Base(path), ".") {
		return
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	reg := registerapi.NewRegistrationClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The socket file appears at bind(), a moment before listen(): wait for it to accept.
	info, err := reg.GetInfo(ctx, &registerapi.InfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return
	}
	err = validateInfo(info)
	if err == nil {
		endpoint := info.Endpoint
		if endpoint == "" {
			endpoint = path
		}
		err = k.connect(ctx, info.Name, endpoint, "plugin watcher")
	}
	st := &registerapi.RegistrationStatus{PluginRegistered: err == nil}
	if err != nil {
		st.Error = err.Error()
	}
	_, _ = reg.NotifyRegistrationStatus(ctx, st)
}

func validateInfo(info *registerapi.PluginInfo) error {
	if info.Type != registerapi.DevicePlugin {
		return fmt.Errorf("kubelettest: plugin %q has type %q, not %s", info.Name, info.Type, registerapi.DevicePlugin)
	}
	if !slices.Contains(info.SupportedVersions, pluginapi.Version) {
		return fmt.Errorf("kubelettest: plugin %q supports %v, not %s", info.Name, info.SupportedVersions, pluginapi.Version)
	}
	if !strings.Contains(info.Name, "/") {
		return fmt.Errorf("kubelettest: plugin name %q is not an extended resource name", info.Name)
	}
	return nil
}

// Close stops everything.
func (k *Kubelet) Close() {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return
	}
	k.closed = true
	srv, plugins, watchers := k.srv, k.plugins, k.watchers
	k.plugins = map[string]*Plugin{}
	k.mu.Unlock()
	srv.Stop()
	for _, w := range watchers {
		_ = w.Close()
	}
	for _, p := range plugins {
		p.close()
	}
	_ = os.Remove(k.SocketPath())
}

// Overflow renames a file in dir back and forth often enough to overflow the inotify event queue
// of a watcher of dir that is not reading: the kernel then drops further events and queues an
// overflow. Tests use it to check that watchers survive lost events.
func Overflow(dir string) error {
	limit := 16384 // the kernel's default fs.inotify.max_queued_events
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			limit = n
		}
	}
	a, b := filepath.Join(dir, "overflow-a"), filepath.Join(dir, "overflow-b")
	if err := os.WriteFile(a, nil, 0o600); err != nil {
		return fmt.Errorf("kubelettest: overflow %s: %w", dir, err)
	}
	// Two events (moved from, moved to) per rename; the margin covers what fsnotify itself has
	// read (4096 at most).
	for range limit/2 + 4096 {
		if err := os.Rename(a, b); err != nil {
			return fmt.Errorf("kubelettest: overflow %s: %w", dir, err)
		}
		a, b = b, a
	}
	if err := os.Remove(a); err != nil {
		return fmt.Errorf("kubelettest: overflow %s: %w", dir, err)
	}
	return nil
}
