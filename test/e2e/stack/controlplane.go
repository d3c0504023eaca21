package stack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// The cluster's fixed names and addresses. All of the control plane listens on loopback; the
// kubelet serves on the node's own address, which lives on a link of the stack's (NodeLink): a
// kubelet refuses a loopback node IP, and the API server reaches a kubelet at its node's InternalIP
// (kubeadm's --kubelet-preferred-address-types), so a loopback-only node cannot serve kubectl exec.
const (
	ServiceCIDR      = "10.96.0.0/16"
	serviceIP        = "10.96.0.1" // the "kubernetes" service, the first address of ServiceCIDR
	saIssuer         = "https://kubernetes.default.svc.cluster.local"
	etcdName         = "netdevice-e2e"
	defaultNodeLink  = "ndpe2enode"
	defaultNodeIP    = "10.237.60.1"
	controlPlaneHost = "127.0.0.1"
)

// APIServerURL is the API server's address, for kubeconfigs.
func (s *Stack) APIServerURL() string {
	return fmt.Sprintf("https://%s:%d", controlPlaneHost, s.Opts.Ports.APIServer)
}

// identity is the node's name and addresses, for its certificates and the kubelet's config.
func (s *Stack) identity() ClusterIdentity {
	return ClusterIdentity{NodeName: s.Opts.NodeName, NodeIP: net.ParseIP(s.Opts.NodeIP), ServiceIP: net.ParseIP(serviceIP)}
}

// addNodeLink creates the link that holds the node's address: an ifb (this kernel has no dummy
// type; any link type that can be up holds a local address), up, with NodeIP/32. It is recorded
// before it exists, so that every teardown deletes it.
func (s *Stack) addNodeLink() error {
	if err := s.TrackLink(s.Opts.NodeLink); err != nil {
		return err
	}
	if err := netlink.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: s.Opts.NodeLink}}); err != nil {
		return fmt.Errorf("create the node's link %s: %w", s.Opts.NodeLink, err)
	}
	l, err := netlink.LinkByName(s.Opts.NodeLink)
	if err != nil {
		return fmt.Errorf("node link %s: %w", s.Opts.NodeLink, err)
	}
	addr, err := netlink.ParseAddr(s.Opts.NodeIP + "/32")
	if err != nil {
		return fmt.Errorf("node address %s: %w", s.Opts.NodeIP, err)
	}
	if err := netlink.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("add the node's address %s to %s: %w", addr, s.Opts.NodeLink, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", s.Opts.NodeLink, err)
	}
	return nil
}

// startControlPlane starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler, each
// once the one before answers, and times each.
func (s *Stack) startControlPlane(ctx context.Context) error {
	p, ports, b := s.Paths, s.Opts.Ports, s.Opts.Bins
	url := func(port int) string { return fmt.Sprintf("http://%s:%d", controlPlaneHost, port) }
	t0 := time.Now()
	etcd, err := s.startTracked("etcd", b.Etcd, []string{
		"--name=" + etcdName,
		"--data-dir=" + p.EtcdData,
		"--listen-client-urls=" + url(ports.Etcd),
		"--advertise-client-urls=" + url(ports.Etcd),
		"--listen-peer-urls=" + url(ports.EtcdPeer),
		"--initial-advertise-peer-urls=" + url(ports.EtcdPeer),
		"--initial-cluster=" + etcdName + "=" + url(ports.EtcdPeer),
		"--initial-cluster-state=new",
		"--unsafe-no-fsync", // a test cluster: nothing to keep across a power cut
		"--log-level=warn",
	}, nil)
	if err != nil {
		return err
	}
	if err := s.waitFor(ctx, etcd, 30*time.Second, "etcd /health", func() error {
		return httpCheck(ctx, http.DefaultClient, url(ports.Etcd)+"/health", `"health":"true"`)
	}); err != nil {
		return err
	}
	s.timed("etcd_ms", t0)

	t0 = time.Now()
	pki := p.PKIFile
	api, err := s.startTracked("kube-apiserver", b.APIServer, []string{
		"--etcd-servers=" + url(ports.Etcd),
		"--bind-address=" + controlPlaneHost,
		fmt.Sprintf("--secure-port=%d", ports.APIServer),
		"--advertise-address=" + controlPlaneHost,
		"--endpoint-reconciler-type=none", // no kube-proxy: the kubernetes service's endpoints serve nobody
		"--cert-dir=" + pki("apiserver-generated"),
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + pki("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		// the aggregation layer's front proxy, as kubeadm sets it up (the controller manager and the
		// scheduler read its CA for their delegated authentication)
		"--requestheader-client-ca-file=" + pki("ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pki("front-proxy-client.crt"),
		"--proxy-client-key-file=" + pki("front-proxy-client.key"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=2",
	}, nil)
	if err != nil {
		return err
	}
	admin, err := s.adminClient()
	if err != nil {
		return err
	}
	if err := s.waitFor(ctx, api, 90*time.Second, "kube-apiserver /readyz", func() error {
		return httpCheck(ctx, admin, s.APIServerURL()+"/readyz", "ok")
	}); err != nil {
		return err
	}
	s.timed("apiserver_ms", t0)

	// Their /healthz is served without authentication (--authorization-always-allow-paths), with a
	// self-signed certificate each makes in its --cert-dir.
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	for _, c := range []struct {
		name, exe, kubeconfig string
		port                  int
		extra                 []string
	}{
		{"kube-controller-manager", b.ControllerManager, p.Kubeconfig("controller-manager"), ports.ControllerManager, []string{
			"--service-account-private-key-file=" + pki("sa.key"),
			"--root-ca-file=" + pki("ca.crt"),
			"--use-service-account-credentials=true",
			"--cluster-name=netdevice-e2e",
			"--flex-volume-plugin-dir=" + filepath.Join(p.Work, "kcm-volume-plugins"), // not /usr/libexec/kubernetes
		}},
		{"kube-scheduler", b.Scheduler, p.Kubeconfig("scheduler"), ports.Scheduler, nil},
	} {
		t0 = time.Now()
		args := append([]string{
			"--kubeconfig=" + c.kubeconfig,
			"--authentication-kubeconfig=" + c.kubeconfig,
			"--authorization-kubeconfig=" + c.kubeconfig,
			"--bind-address=" + controlPlaneHost,
			fmt.Sprintf("--secure-port=%d", c.port),
			"--cert-dir=" + pki(c.name+"-generated"),
			"--leader-elect=false",
			"--v=2",
		}, c.extra...)
		r, err := s.startTracked(c.name, c.exe, args, nil)
		if err != nil {
			return err
		}
		healthz := fmt.Sprintf("https://%s:%d/healthz", controlPlaneHost, c.port)
		if err := s.waitFor(ctx, r, 60*time.Second, c.name+" /healthz", func() error {
			return httpCheck(ctx, insecure, healthz, "ok")
		}); err != nil {
			return err
		}
		s.timed(strings.TrimPrefix(c.name, "kube-")+"_ms", t0)
	}
	return nil
}

// adminClient is an HTTP client with the administrator's certificate that trusts the cluster CA.
func (s *Stack) adminClient() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(s.Paths.PKIFile("admin.crt"), s.Paths.PKIFile("admin.key"))
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}
	caPEM, err := os.ReadFile(s.Paths.PKIFile("ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster CA %s: no certificate", s.Paths.PKIFile("ca.crt"))
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
	}}, nil
}

// httpCheck GETs url and wants 200 with want in the body.
func httpCheck(ctx context.Context, c *http.Client, url, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// waitNodeReady waits until the kubelet registered the node and reports it Ready, then until the
// controller manager made the default namespace's service account (pods need it).
func (s *Stack) waitNodeReady(ctx context.Context) error {
	r := s.proc("kubelet")
	t0 := time.Now()
	err := s.waitFor(ctx, r, 90*time.Second, "node "+s.Opts.NodeName+" Ready", func() error {
		out, err := s.Kubectl(ctx, "get", "node", s.Opts.NodeName, "-o", "json")
		if err != nil {
			return err
		}
		var node struct {
			Status struct {
				Conditions []struct{ Type, Status, Reason, Message string }
			}
		}
		if err := json.Unmarshal([]byte(out), &node); err != nil {
			return fmt.Errorf("decode node: %w", err)
		}
		for _, c := range node.Status.Conditions {
			if c.Type == "Ready" {
				if c.Status == "True" {
					return nil
				}
				return fmt.Errorf("node %s Ready=%s: %s: %s", s.Opts.NodeName, c.Status, c.Reason, c.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", s.Opts.NodeName)
	})
	if err != nil {
		return err
	}
	s.timed("node_ready_ms", t0)
	t0 = time.Now()
	kcm := s.proc("kube-controller-manager")
	err = s.waitFor(ctx, kcm, 60*time.Second, "service account default/default", func() error {
		_, err := s.Kubectl(ctx, "-n", "default", "get", "serviceaccount", "default", "-o", "name")
		return err
	})
	if err == nil {
		s.timed("default_sa_ms", t0)
	}
	return err
}

// KubectlEnv is the environment kubectl runs with: the administrator's kubeconfig, and HOME and
// TMPDIR in the work folder (kubectl's discovery cache, kubectl edit's files), kubectl first on PATH.
func (s *Stack) KubectlEnv() []string {
	return []string{
		"KUBECONFIG=" + s.Paths.AdminKubeconfig(),
		"HOME=" + s.Paths.Home,
		"TMPDIR=" + filepath.Join(s.Paths.Home, "tmp"),
		"PATH=" + filepath.Dir(s.Opts.Bins.Kubectl) + ":" + os.Getenv("PATH"),
	}
}

// Kubectl runs kubectl as the cluster administrator and returns its stdout; an error carries stderr.
func (s *Stack) Kubectl(ctx context.Context, args ...string) (string, error) {
	return s.KubectlIn(ctx, nil, args...)
}

// KubectlIn is Kubectl with stdin.
func (s *Stack) KubectlIn(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.Opts.Bins.Kubectl, args...)
	cmd.Env = append(os.Environ(), s.KubectlEnv()...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// Shell runs one command line with bash in dir, with KubectlEnv and extra variables, and returns
// its stdout and stderr together, as a terminal would show them.
func (s *Stack) Shell(ctx context.Context, dir, line string, extra ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", line)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), s.KubectlEnv()...), extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", line, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// proc returns the running process of that name (nil when never started).
func (s *Stack) proc(name string) *running {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// timed records how long a step of Start took since t0.
func (s *Stack) timed(name string, t0 time.Time) {
	d := time.Since(t0)
	s.mu.Lock()
	s.startTimes = append(s.startTimes, StartTime{Name: name, D: d})
	s.mu.Unlock()
	s.Opts.Logf("%s: %v", name, d.Round(time.Millisecond))
}

// StartTime is how long one step of Start took.
type StartTime struct {
	Name string
	D    time.Duration
}

// StartTimes returns the steps of Start with how long each took, in order.
func (s *Stack) StartTimes() []StartTime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StartTime(nil), s.startTimes...)
}
