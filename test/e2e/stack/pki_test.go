package stack

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestWritePKI: every certificate chains to the CA for its use, carries the identity the API
// server's authorizers key on, and the serving ones name the addresses they are reached at; the
// kubeconfigs point at the API server with their client's files.
func TestWritePKI(t *testing.T) {
	p := NewClusterPaths(t.TempDir())
	id := ClusterIdentity{NodeName: "node-a", NodeIP: net.ParseIP("10.237.60.1"), ServiceIP: net.ParseIP("10.96.0.1")}
	if err := WritePKI(p, id, "https://127.0.0.1:6443"); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(p.PKIFile("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	tests := []struct {
		name, cn string
		orgs     []string
		server   string // a name it must verify for, "" for a client certificate
	}{
		{"apiserver", "kube-apiserver", nil, "127.0.0.1"},
		{"apiserver", "kube-apiserver", nil, "kubernetes.default.svc"},
		{"apiserver", "kube-apiserver", nil, "10.96.0.1"},
		{"kubelet", "node-a", nil, "10.237.60.1"},
		{"kubelet", "node-a", nil, "node-a"},
		{"admin", "kubernetes-admin", []string{"system:masters"}, ""},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, ""},
		{"controller-manager", "system:kube-controller-manager", nil, ""},
		{"scheduler", "system:kube-scheduler", nil, ""},
		{"kubelet-client", "system:node:node-a", []string{"system:nodes"}, ""},
	}
	for _, tt := range tests {
		pair, err := tls.LoadX509KeyPair(p.PKIFile(tt.name+".crt"), p.PKIFile(tt.name+".key"))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != tt.cn || !slices.Equal(cert.Subject.Organization, tt.orgs) {
			t.Errorf("%s: subject %v, want CN %s O %v", tt.name, cert.Subject, tt.cn, tt.orgs)
		}
		opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if tt.server != "" {
			opts = x509.VerifyOptions{Roots: roots, DNSName: tt.server}
		}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("%s (for %q): %v", tt.name, tt.server, err)
		}
	}
	for _, f := range []string{"sa.key", "sa.pub"} {
		if fi, err := os.Stat(p.PKIFile(f)); err != nil || fi.Size() == 0 {
			t.Errorf("service-account key %s: %v", f, err)
		}
	}
	if fi, err := os.Stat(p.PKIFile("admin.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.key mode %v (%v), want 0600", fi.Mode(), err)
	}

	data, err := os.ReadFile(p.Kubeconfig("kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `json:"server"`
				CA     string `json:"certificate-authority"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			User struct {
				Cert string `json:"client-certificate"`
				Key  string `json:"client-key"`
			} `json:"user"`
		} `json:"users"`
		Current string `json:"current-context"`
	}
	if err := yaml.Unmarshal(data, &kc); err != nil {
		t.Fatalf("kubelet kubeconfig: %v\n%s", err, data)
	}
	if len(kc.Clusters) != 1 || kc.Clusters[0].Cluster.Server != "https://127.0.0.1:6443" || kc.Clusters[0].Cluster.CA != p.PKIFile("ca.crt") ||
		len(kc.Users) != 1 || kc.Users[0].User.Cert != p.PKIFile("kubelet-client.crt") || kc.Users[0].User.Key != p.PKIFile("kubelet-client.key") || kc.Current == "" {
		t.Errorf("kubelet kubeconfig = %+v", kc)
	}
	for _, name := range []string{"admin", "controller-manager", "scheduler"} {
		if _, err := os.Stat(p.Kubeconfig(name)); err != nil {
			t.Errorf("kubeconfig %s: %v", name, err)
		}
	}
}
