package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// Image references of the local images; pods use them with imagePullPolicy: Never.
const (
	PodImage     = "localhost/netdevice-e2e/agnhost:e2e"
	SandboxImage = "localhost/netdevice-e2e/pause:e2e"
)

// Options configure a stack. Zero fields take the defaults below.
type Options struct {
	Work     string // private work folder (created); required
	Bins     Binaries
	NodeName string // default "netdevice-e2e"
	Bridge   string // CNI bridge name, default "ndpe2e0"
	Subnet   string // pod network, default "10.237.61.0/24"
	Ports    Ports  // default DefaultPorts
	// KubeletVerbosity is the kubelet's -v (default 2).
	KubeletVerbosity int
	Logf             func(format string, args ...any) // progress lines; default: discard

	// Cluster brings up a control plane (etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, all on loopback) and joins the kubelet to it as node NodeName, on the host's
	// default kubelet root and CDI folder (NewClusterPaths); pods come from the API, not manifests.
	Cluster  bool
	NodeLink string // cluster: the link holding the node's address, default "ndpe2enode"
	NodeIP   string // cluster: the node's address (InternalIP), default 10.237.60.1
}

// WithDefaults returns the options with every zero field set to its default.
func (o Options) WithDefaults() Options {
	o.defaults()
	return o
}

func (o *Options) defaults() {
	if o.NodeName == "" {
		o.NodeName = "netdevice-e2e"
	}
	if o.Bridge == "" {
		o.Bridge = "ndpe2e0"
	}
	if o.Subnet == "" {
		o.Subnet = "10.237.61.0/24"
	}
	if o.Ports.Kubelet == 0 {
		o.Ports = DefaultPorts
	}
	if o.NodeLink == "" {
		o.NodeLink = defaultNodeLink
	}
	if o.NodeIP == "" {
		o.NodeIP = defaultNodeIP
	}
	if o.KubeletVerbosity == 0 {
		o.KubeletVerbosity = 2
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// State is everything a teardown needs, saved as JSON in the work folder after every change.
type State struct {
	Work    string
	Cluster bool     // the paths are NewClusterPaths's
	Before  Snapshot // the host when the stack started: what existed then is never the stack's
	Owned   Owned    // what the stack created outside the work folder, recorded as it goes
	Shim    string   // containerd shim binary: shims outlive containerd and are found by it
	Crictl  string   // crictl, to remove the pods while containerd still runs
	Procs   []Proc   // in start order
}

// Paths returns the stack's paths.
func (st State) Paths() Paths {
	if st.Cluster {
		return NewClusterPaths(st.Work)
	}
	return NewPaths(st.Work)
}

// StateFile is the state's file name inside the work folder.
const StateFile = "state.json"

// Stack is a running containerd + kubelet.
type Stack struct {
	Opts  Options
	Paths Paths

	mu         sync.Mutex
	state      State
	procs      map[string]*running
	startTimes []StartTime
	down       bool
	stop       chan struct{} // closed at teardown: ends the recorder
	done       chan struct{} // closed when the recorder has ended
}

// recordEvery is how often a running stack records what its processes created on the host.
const recordEvery = time.Second

// New checks the options and returns a stack that is not started yet.
func New(opts Options) (*Stack, error) {
	opts.defaults()
	if opts.Work == "" || !filepath.IsAbs(opts.Work) {
		return nil, fmt.Errorf("stack work folder %q: want an absolute path", opts.Work)
	}
	if err := opts.Bins.Check(); err != nil {
		return nil, err
	}
	p := NewPaths(opts.Work)
	if opts.Cluster {
		if err := opts.Bins.CheckCluster(); err != nil {
			return nil, err
		}
		if net.ParseIP(opts.NodeIP).To4() == nil {
			return nil, fmt.Errorf("node address %q: want an IPv4 address", opts.NodeIP)
		}
		p = NewClusterPaths(opts.Work)
	}
	if d := p.PluginsRegistryDir(); len(d) > MaxSocketDirLen {
		return nil, fmt.Errorf("stack work folder %q is too long: plugin sockets in %s would pass the 108-byte unix socket limit (keep it under %d bytes)",
			opts.Work, d, MaxSocketDirLen-len(d)+len(opts.Work))
	}
	return &Stack{Opts: opts, Paths: p, procs: map[string]*running{}}, nil
}

// Start checks the host (Preflight), snapshots it, then brings up containerd (with the local images
// imported) and the kubelet; for a cluster first the node's link and the control plane, and at the
// end it waits for the node to be Ready. Whatever it returns, Teardown undoes what it did.
func (s *Stack) Start(ctx context.Context) error { return s.start(ctx) }

func (s *Stack) start(ctx context.Context) error {
	p := s.Paths
	if err := Preflight(s.Opts); err != nil {
		return err
	}
	if err := os.MkdirAll(p.Work, 0o755); err != nil {
		return fmt.Errorf("create work folder: %w", err)
	}
	before, err := TakeSnapshot()
	if err != nil {
		return fmt.Errorf("snapshot host: %w", err)
	}
	s.mu.Lock()
	s.state = State{
		Work:    p.Work,
		Cluster: s.Opts.Cluster,
		Before:  before,
		Owned:   Owned{Bridge: s.Opts.Bridge}, // Preflight saw no link of that name
		Shim:    s.Opts.Bins.Shim(),
		Crictl:  s.Opts.Bins.Crictl,
	}
	err = s.saveLocked()
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
	if err != nil {
		return err
	}
	go s.recordLoop()
	// containerd's CDI cache watches its folder: it must exist before containerd starts (for a
	// cluster, the host's: the recorder sees it appear and so owns it).
	dirs := []string{p.Logs, p.ContainerdRoot, p.ContainerdState, p.ContainerdOpt, p.RuncRoot, p.CDIDir,
		p.CNIConfDir, p.CNIDataDir, p.KubeletRoot, p.KubeletCertDir, p.KubeletPodLogs, p.KubeletVolPlugins, p.Images}
	var node *ClusterIdentity
	if s.Opts.Cluster {
		id := s.identity()
		node = &id
		dirs = append(dirs, p.EtcdData, filepath.Join(p.Home, "tmp"))
	} else {
		dirs = append(dirs, p.Manifests)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}

	ctrdConf, err := ContainerdConfig(p, SandboxImage, s.Opts.Bins.Runc, s.Opts.Bins.CNIBinDir)
	if err != nil {
		return err
	}
	kubeletConf, err := KubeletConfig(p, s.Opts.Ports, node)
	if err != nil {
		return err
	}
	cniConf, err := CNIConfig(p, s.Opts.Bridge, s.Opts.Subnet)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{p.ContainerdConfig, ctrdConf},
		{p.KubeletConfig, kubeletConf},
		{filepath.Join(p.CNIConfDir, "10-netdevice-e2e.conflist"), cniConf},
		{p.CrictlConfig, CrictlConfig(p)},
	} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}

	images, err := BuildImages(p.Images, s.Opts.Bins)
	if err != nil {
		return err
	}
	if s.Opts.Cluster {
		if err := WritePKI(p, *node, s.APIServerURL()); err != nil {
			return err
		}
		if err := s.addNodeLink(); err != nil {
			return err
		}
		if err := s.startControlPlane(ctx); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := s.startContainerd(ctx); err != nil {
		return err
	}
	for _, img := range images {
		if err := s.ImportImage(ctx, img); err != nil {
			return err
		}
	}
	s.timed("containerd_ms", t0)
	t0 = time.Now()
	if err := s.StartKubelet(ctx); err != nil {
		return err
	}
	s.timed("kubelet_ms", t0)
	if s.Opts.Cluster {
		if err := s.waitNodeReady(ctx); err != nil {
			return err
		}
	}
	return s.record()
}

// ImportImage imports an OCI layout tar into the stack's containerd, where the kubelet finds it.
func (s *Stack) ImportImage(ctx context.Context, file string) error {
	out, err := exec.CommandContext(ctx, s.Opts.Bins.Ctr(), "-a", s.Paths.ContainerdSocket, "-n", criNamespace,
		"images", "import", "--platform", "linux/amd64", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import image %s: %w: %s", file, err, out)
	}
	return nil
}

// recordLoop records what the stack's processes create on the host until the teardown begins.
func (s *Stack) recordLoop() {
	defer close(s.done)
	t := time.NewTicker(recordEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.record(); err != nil {
				s.Opts.Logf("record host changes: %v", err)
			}
		}
	}
}

// record adds what the running stack owns now (collect) to its state, and saves it when it grew.
func (s *Stack) record() error {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	found := collect(st, host, true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.state.Owned.merge(found) {
		return nil
	}
	return s.saveLocked()
}

func (s *Stack) startContainerd(ctx context.Context) error {
	env := []string{"PATH=" + filepath.Dir(s.Opts.Bins.Containerd) + ":" + os.Getenv("PATH")}
	r, err := s.startTracked("containerd", s.Opts.Bins.Containerd, []string{"--config", s.Paths.ContainerdConfig}, env)
	if err != nil {
		return err
	}
	return s.waitFor(ctx, r, 30*time.Second, "containerd CRI answering", func() error {
		_, err := s.Crictl(ctx, "info")
		return err
	})
}

// StartKubelet starts the kubelet and waits for its /healthz.
func (s *Stack) StartKubelet(ctx context.Context) error {
	args := []string{
		"--config=" + s.Paths.KubeletConfig,
		"--root-dir=" + s.Paths.KubeletRoot,
		"--cert-dir=" + s.Paths.KubeletCertDir,
		"--hostname-override=" + s.Opts.NodeName,
		fmt.Sprintf("--v=%d", s.Opts.KubeletVerbosity),
	}
	if s.Opts.Cluster {
		args = append(args, "--kubeconfig="+s.Paths.Kubeconfig("kubelet"), "--node-ip="+s.Opts.NodeIP)
	}
	r, err := s.startTracked("kubelet", s.Opts.Bins.Kubelet, args, nil)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", s.Opts.Ports.Healthz)
	return s.waitFor(ctx, r, 60*time.Second, "kubelet /healthz", func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
		}
		return nil
	})
}

// StopKubelet stops the kubelet (SIGTERM, then SIGKILL).
func (s *Stack) StopKubelet() error { return s.StopProcess("kubelet") }

// RestartKubelet stops the kubelet and starts it again with the same configuration.
func (s *Stack) RestartKubelet(ctx context.Context) error {
	if err := s.StopKubelet(); err != nil {
		return err
	}
	return s.StartKubelet(ctx)
}

// StartProcess starts a daemon (the device plugin) whose teardown the stack owns; its output goes to
// logs/<name>.log.
func (s *Stack) StartProcess(name, exe string, args ...string) (Proc, error) {
	r, err := s.startTracked(name, exe, args, nil)
	if err != nil {
		return Proc{}, err
	}
	return r.Proc, nil
}

// Exited returns a channel closed when the named process exits, and its wait error after that.
func (s *Stack) Exited(name string) (<-chan struct{}, func() error) {
	s.mu.Lock()
	r := s.procs[name]
	s.mu.Unlock()
	if r == nil {
		c := make(chan struct{})
		close(c)
		return c, func() error { return fmt.Errorf("%s was never started", name) }
	}
	return r.exited, func() error { return r.err }
}

// StopProcess stops a process the stack started, by PID.
func (s *Stack) StopProcess(name string) error {
	s.mu.Lock()
	r := s.procs[name]
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("stop %s: not started", name)
	}
	if err := stopProc(r.Proc, 10*time.Second); err != nil {
		return err
	}
	<-r.exited
	return nil
}

func (s *Stack) startTracked(name, exe string, args, env []string) (*running, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, fmt.Errorf("start %s: the stack is torn down", name)
	}
	if old := s.procs[name]; old != nil && old.Alive() {
		return nil, fmt.Errorf("start %s: already running as pid %d", name, old.PID)
	}
	r, err := startProc(name, exe, args, env, filepath.Join(s.Paths.Logs, name+".log"))
	if err != nil {
		return nil, err
	}
	s.procs[name] = r
	s.state.Procs = append(s.state.Procs, r.Proc)
	return r, s.saveLocked()
}

// waitFor polls check until it succeeds, the process exits, or the timeout passes.
func (s *Stack) waitFor(ctx context.Context, r *running, timeout time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("%s exited (%v) while waiting for %s; log tail:\n%s", r.Name, r.err, what, Tail(r.Log, 30))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v); %s log tail:\n%s", what, ctx.Err(), last, r.Name, Tail(r.Log, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ExistedBefore reports whether a host path below one of WatchedPaths was there when the stack
// started (a path below none of them counts as existing: the snapshot cannot tell).
func (s *Stack) ExistedBefore(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Before.existedBefore(host.Roots, path)
}

// TrackLink records a host link the test is about to create, so that the teardown deletes it whatever
// happens and the host check expects it gone. A link that exists already is not the test's: refused.
func (s *Stack) TrackLink(name string) error {
	if _, err := netlink.LinkByName(name); err == nil {
		return fmt.Errorf("link %s already exists on the host: not the test's to create, use or delete", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Owned.Links = union(s.state.Owned.Links, []string{name})
	return s.saveLocked()
}

// TrackPath records a host path outside the work folder that the test is about to create, so that
// the teardown removes it whatever happens (a file; a folder once it is empty) and the host check
// expects it gone: whereabouts' plugin in /opt/cni/bin, its configuration folder and files. The
// path must be new below one of WatchedPaths, whose snapshot proves it the stack's; an existing one
// is not the test's to create: refused.
func (s *Stack) TrackPath(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := trackable(s.state.Before, host.Roots, path); err != nil {
		return err
	}
	s.state.Owned.Paths = union(s.state.Owned.Paths, []string{path})
	return s.saveLocked()
}

// trackable says why the stack could not own path, nil when it can.
func trackable(before Snapshot, roots []string, path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("host path %q: want a clean absolute path", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists on the host: not the test's to create, use or remove", path)
	}
	if before.existedBefore(roots, path) {
		return fmt.Errorf("%s is below none of the watched folders (or was there when the stack started): the teardown could not tell it is the stack's", path)
	}
	return nil
}

// WriteManifest writes a static pod manifest atomically (a hidden temporary file, which the kubelet
// ignores, renamed into place) and returns when it appeared.
func (s *Stack) WriteManifest(file string, data []byte) (time.Time, error) {
	tmp := filepath.Join(s.Paths.Manifests, "."+file+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return time.Time{}, fmt.Errorf("write manifest %s: %w", file, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Paths.Manifests, file)); err != nil {
		return time.Time{}, fmt.Errorf("write manifest %s: %w", file, err)
	}
	return time.Now(), nil
}

// RemoveManifest deletes a static pod manifest and returns when it was removed.
func (s *Stack) RemoveManifest(file string) (time.Time, error) {
	if err := os.Remove(filepath.Join(s.Paths.Manifests, file)); err != nil {
		return time.Time{}, fmt.Errorf("remove manifest %s: %w", file, err)
	}
	return time.Now(), nil
}

// LogFiles returns the log file of every process started, by name.
func (s *Stack) LogFiles() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, p := range s.state.Procs {
		out[p.Name] = p.Log
	}
	return out
}

// LogTails returns the last n lines of every process's log, kubelet and containerd first.
func (s *Stack) LogTails(n int) string {
	files := s.LogFiles()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	rank := func(n string) int {
		switch n {
		case "kubelet":
			return 0
		case "containerd":
			return 1
		}
		return 2
	}
	sort.Slice(names, func(i, j int) bool {
		if rank(names[i]) != rank(names[j]) {
			return rank(names[i]) < rank(names[j])
		}
		return names[i] < names[j]
	})
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "===== %s log (%s), last %d lines =====\n%s\n", name, files[name], n, Tail(files[name], n))
	}
	return b.String()
}

// Tail returns the last n lines of a file.
func Tail(file string, n int) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", file, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Teardown stops everything, restores the host and checks it against the snapshot taken at start.
// keepLogs leaves the logs folder in the work folder (for a failed run); everything else there goes.
// It runs once; later calls return nil.
func (s *Stack) Teardown(keepLogs bool) error {
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return nil
	}
	s.down = true
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if stop == nil { // nothing was recorded: the start failed before touching the host
		return nil
	}
	close(stop)
	<-done
	// The processes still run: a last look records what they created since the last tick.
	if err := s.record(); err != nil {
		s.Opts.Logf("record host changes: %v", err)
	}
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	return TeardownState(st, s.Paths, keepLogs, true, s.Opts.Logf)
}

func (s *Stack) saveLocked() error { return saveState(s.state) }

// saveState writes the state file into the state's work folder, atomically.
func saveState(st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode stack state: %w", err)
	}
	file := filepath.Join(st.Work, StateFile)
	if err := os.WriteFile(file+".tmp", data, 0o600); err != nil {
		return fmt.Errorf("save stack state: %w", err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		return fmt.Errorf("save stack state: %w", err)
	}
	return nil
}

// LoadState reads a state file written by a stack (for a teardown from another process).
func LoadState(file string) (State, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return State{}, fmt.Errorf("load stack state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("load stack state %s: %w", file, err)
	}
	if st.Work == "" || len(st.Before.Sysctls) == 0 {
		return State{}, errors.New("load stack state " + file + ": no work folder or host snapshot recorded")
	}
	return st, nil
}
